"""Bounds on what users give the ControlAPI (issue 11): an absurd number or size is refused with an
error naming the bound, nothing is written, and the error reaches a gRPC client as a status it can
show (a 10,000-character name used to come back as a raw "Stream removed" transport error)."""

from __future__ import annotations

import grpc
import pytest

from common.limits import MAX_REPLICAS
from manager.controlapi import GRPC_STATUS, ControlError
from manager.controlapi.limits import MAX_ERROR_CHARS, MAX_LABEL_VALUE_BYTES, MAX_SERVICE_SPEC_BYTES
from manager.controlapi.networks import NetworkControl
from manager.controlapi.secrets import SecretControl
from manager.controlapi.services import ServiceControl
from manager.secretbox import SecretBox
from manager.state import LocalProposer, MemoryStore, Store
from proto import control_pb2, control_pb2_grpc, objects_pb2 as pb


@pytest.fixture
def store():
    memory = MemoryStore()
    return Store(memory, LocalProposer(memory))


def spec(name="web", replicas=1) -> pb.ServiceSpec:
    out = pb.ServiceSpec(mode=pb.ServiceSpec.REPLICATED, replicas=replicas)
    out.annotations.name = name
    out.task.container.image = "busybox:1.36"
    return out


async def refused(store, coro, *words) -> ControlError:
    before = store.memory_store.snapshot()
    with pytest.raises(ControlError) as caught:
        await coro
    err = caught.value
    assert err.code == "invalid", err
    for word in words:
        assert word in str(err), str(err)
    assert len(str(err)) <= MAX_ERROR_CHARS
    assert store.memory_store.snapshot() == before, "a refused request changes nothing"
    return err


async def test_a_trillion_replicas_are_refused_on_create_and_on_scale_and_nothing_changes(store):
    control = ServiceControl(store)
    await refused(store, control.create_service(control_pb2.CreateServiceRequest(spec=spec(replicas=10**12))),
                  "--replicas 1000000000000", f"at most {MAX_REPLICAS} replicas")
    web = (await control.create_service(control_pb2.CreateServiceRequest(spec=spec(replicas=2)))).service
    await refused(store, control.update_service(control_pb2.UpdateServiceRequest(
        service_id=web.id, version=web.meta.version, spec=spec(replicas=10**12))), f"at most {MAX_REPLICAS}")
    huge_per_node = spec()
    huge_per_node.task.placement.max_replicas = 10**9
    await refused(store, control.create_service(control_pb2.CreateServiceRequest(spec=huge_per_node)),
                  "--max-replicas")
    await control.create_service(control_pb2.CreateServiceRequest(spec=spec("api", replicas=MAX_REPLICAS)))


async def test_long_names_oversized_labels_and_specs_are_refused_with_short_errors(store):
    control = ServiceControl(store)
    err = await refused(store, control.create_service(control_pb2.CreateServiceRequest(spec=spec("a" * 10_000))),
                        "invalid --name", "10000 characters")
    assert len(str(err)) < 400
    labelled = spec()
    labelled.annotations.labels["big"] = "x" * (MAX_LABEL_VALUE_BYTES + 1)
    await refused(store, control.create_service(control_pb2.CreateServiceRequest(spec=labelled)),
                  "--label", f"at most {MAX_LABEL_VALUE_BYTES} bytes")
    fat = spec()
    fat.task.container.env.extend(f"V{i}={'x' * 1000}" for i in range(MAX_SERVICE_SPEC_BYTES // 1000 + 1))
    await refused(store, control.create_service(control_pb2.CreateServiceRequest(spec=fat)),
                  f"over the limit of {MAX_SERVICE_SPEC_BYTES}")
    network = pb.NetworkSpec(driver="overlay")
    network.annotations.name = "n" * 10_000
    await refused(store, NetworkControl(store, allocation_timeout=0).create_network(
        control_pb2.CreateNetworkRequest(spec=network)), "name must be 63 characters or fewer")
    secret = pb.SecretSpec(data=b"x" * (10 << 20))
    secret.annotations.name = "big"
    await refused(store, SecretControl(store, SecretBox(bytes(32))).create_secret(
        control_pb2.CreateSecretRequest(spec=secret)), "secret data must be larger than 0 and less than 500 KiB")


class Edge(control_pb2_grpc.ControlServicer):
    """The ControlAPI behind gRPC as shoald serves it: a ControlError becomes its status code."""

    def __init__(self, store) -> None:
        self.services = ServiceControl(store)

    async def CreateService(self, request, context):
        try:
            return await self.services.create_service(request)
        except ControlError as err:
            await context.abort(GRPC_STATUS[err.code], str(err))


async def test_a_ten_thousand_character_name_gets_a_clear_status_over_grpc(store, tmp_path):
    server = grpc.aio.server()
    control_pb2_grpc.add_ControlServicer_to_server(Edge(store), server)
    address = f"unix:{tmp_path}/control.sock"
    server.add_insecure_port(address)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = control_pb2_grpc.ControlStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreateService(control_pb2.CreateServiceRequest(spec=spec("a" * 10_000)), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
        assert "invalid --name" in caught.value.details()
    finally:
        await server.stop(None)
