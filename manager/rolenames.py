"""Mapping between the proto NodeRole, the certificate OU and the CLI's words."""

from proto import objects_pb2

MANAGER_OU = "swarm-manager"
WORKER_OU = "swarm-worker"


def role_to_ou(role: int) -> str:
    return MANAGER_OU if role == objects_pb2.MANAGER else WORKER_OU


def ou_to_role(ou: str) -> int:
    return objects_pb2.MANAGER if ou == MANAGER_OU else objects_pb2.WORKER


def role_name(role: int) -> str:
    return "manager" if role == objects_pb2.MANAGER else "worker"
