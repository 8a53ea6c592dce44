"""Concurrent creates of one name through several managers (issue 11): three real Raft members,
the ControlAPI on each, ten rounds of the same service / network / secret / config name created
through all three at once. Each name must end up on exactly one object on every member, and the
losers must get Docker's "already exists" answer: the name is checked when the change is applied,
in log order, not only in the proposing manager's (possibly stale) view."""

from __future__ import annotations

import asyncio

from manager.controlapi import ControlError
from manager.controlapi.networks import NetworkControl
from manager.controlapi.secrets import SecretControl
from manager.controlapi.services import ServiceControl
from manager.secretbox import SecretBox
from manager.state import Kind
from proto import control_pb2, objects_pb2 as pb

ROUNDS = 10
KEY = bytes(range(32))


def service_request(name: str) -> control_pb2.CreateServiceRequest:
    spec = pb.ServiceSpec(mode=pb.ServiceSpec.REPLICATED, replicas=1)
    spec.annotations.name = name
    spec.task.container.image = "busybox:1.36"
    return control_pb2.CreateServiceRequest(spec=spec)


def network_request(name: str) -> control_pb2.CreateNetworkRequest:
    spec = pb.NetworkSpec(driver="overlay")
    spec.annotations.name = name
    return control_pb2.CreateNetworkRequest(spec=spec)


def secret_request(name: str) -> control_pb2.CreateSecretRequest:
    spec = pb.SecretSpec(data=b"s3cret")
    spec.annotations.name = name
    return control_pb2.CreateSecretRequest(spec=spec)


def config_request(name: str) -> control_pb2.CreateConfigRequest:
    spec = pb.ConfigSpec(data=b"listen 80;\n")
    spec.annotations.name = name
    return control_pb2.CreateConfigRequest(spec=spec)


async def test_concurrent_same_name_creates_through_three_managers_leave_one_object(cluster_factory):
    cluster = cluster_factory(3)
    cluster.start_all()
    await cluster.leader()
    stores = [cluster.store(i) for i in range(3)]
    root = pb.Cluster(id="cluster")
    root.spec.default_addr_pool.append("198.18.0.0/15")
    root.spec.subnet_size = 24
    await stores[0].update(lambda tx: tx.create(root))
    await cluster.converged()
    kinds = {
        Kind.SERVICE: ([ServiceControl(s).create_service for s in stores], service_request, "service"),
        Kind.NETWORK: ([NetworkControl(s, allocation_timeout=0).create_network for s in stores],
                       network_request, "network"),
        Kind.SECRET: ([SecretControl(s, SecretBox(KEY)).create_secret for s in stores], secret_request, "secret"),
        Kind.CONFIG: ([SecretControl(s, SecretBox(KEY)).create_config for s in stores], config_request, "config"),
    }
    for round_ in range(ROUNDS):
        for kind, (creates, request, word) in kinds.items():
            name = f"{word}-{round_}"
            results = await asyncio.gather(*(create(request(name)) for create in creates),
                                           return_exceptions=True)
            won = [r for r in results if not isinstance(r, BaseException)]
            lost = [r for r in results if isinstance(r, BaseException)]
            assert len(won) == 1, f"{name}: {len(won)} creates succeeded: {results}"
            for err in lost:
                assert isinstance(err, ControlError) and err.code == "conflict", repr(err)
                assert "already exists" in str(err) and name in str(err), str(err)
    await cluster.converged()
    for i in range(3):
        view = cluster.stores[i].view()
        for kind, (_, _, word) in kinds.items():
            names = sorted(o.spec.annotations.name for o in view.list(kind) if o.spec.annotations.name != "ingress")
            assert names == sorted(f"{word}-{r}" for r in range(ROUNDS)), f"member {i}: {kind}: {names}"
