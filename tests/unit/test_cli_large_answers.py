"""The CLI takes daemon answers over gRPC's default 4 MiB: `service ps` of ~5,000 tasks (found by
bench/scale.py) failed with RESOURCE_EXHAUSTED before."""
from __future__ import annotations

from concurrent import futures

import grpc

from proto import control_pb2, control_pb2_grpc
from shoal.cli.client import Client

TASKS = 12_000


class BigControl(control_pb2_grpc.ControlServicer):
    def ListTasks(self, request, context):
        response = control_pb2.ListTasksResponse()
        for i in range(TASKS):
            task = response.tasks.add(id=f"{i:025d}", service_id="s" * 25, node_id="n" * 25)
            task.spec.container.image = "registry.example:5000/shoal/busybox:latest"
            task.status.message = "started" * 40
        return response


def test_a_list_over_four_mib_reaches_the_cli(tmp_path):
    path = tmp_path / "shoal.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    control_pb2_grpc.add_ControlServicer_to_server(BigControl(), server)
    server.add_insecure_port(f"unix:{path}")
    server.start()
    try:
        response = Client(f"unix://{path}").call("ListTasks", control_pb2.ListTasksRequest())
    finally:
        server.stop(0)
    assert response.ByteSize() > 4 * 1024 * 1024
    assert len(response.tasks) == TASKS
