"""The ControlAPI on managers: validate requests, read the store view, propose changes."""

from manager.controlapi.api import GRPC_STATUS, ControlAPI, ControlError
from manager.controlapi.nodes import decorate_manager_status, resolve_node

__all__ = ["GRPC_STATUS", "ControlAPI", "ControlError", "decorate_manager_status", "resolve_node"]
