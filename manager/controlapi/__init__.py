"""The ControlAPI on managers: validate requests, read the store view, propose changes."""

from manager.controlapi.api import GRPC_STATUS, ControlAPI, ControlError
from manager.controlapi.nodes import resolve_node

__all__ = ["GRPC_STATUS", "ControlAPI", "ControlError", "resolve_node"]
