"""The orchestrator's error hierarchy.

    OrchestratorError
      WrongServiceMode   a reconcile function was handed a service of another mode
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error the orchestrator package raises."""


class WrongServiceMode(OrchestratorError, ValueError):
    def __init__(self, service_id: str, mode: str, operation: str) -> None:
        super().__init__(f"{operation}: service {service_id} is in {mode} mode")
        self.service_id = service_id
        self.mode = mode
