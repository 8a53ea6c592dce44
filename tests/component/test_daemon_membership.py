"""shoald's membership calls without root: two Daemons in this process on loopback (no runtime,
so no containers), init, join, leave, promotion and demotion, and bad input refused with nothing
changed. Real gRPC, real Raft, real certificates; ports reserved, not guessed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from manager.controlapi import ControlError
from proto import control_pb2, objects_pb2
from proto.ports import MTLS_OFFSET, RAFT_OFFSET
from shoal.daemon import Daemon, DaemonError
from tests.support.ports import reserve_ports

pytestmark = pytest.mark.timeout(120)


async def eventually(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Wait for ``predicate`` (a bound for a hung test, not a timing assert)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def addr() -> str:
    return f"127.0.0.1:{reserve_ports(RAFT_OFFSET, MTLS_OFFSET)}"


@pytest.fixture
async def daemons(tmp_path: Path):
    made: list[Daemon] = []

    def make(name: str) -> Daemon:
        daemon = Daemon(tmp_path / name / "state", tmp_path / name / "shoal.sock", hostname=name)
        made.append(daemon)
        return daemon

    try:
        yield make
    finally:
        for daemon in made:
            await daemon.stop_node()


async def swarm(make) -> tuple[Daemon, control_pb2.SwarmInitResponse, str]:
    manager = make("m1")
    listen = addr()
    init = await manager.init(control_pb2.SwarmInitRequest(listen_addr=listen, advertise_addr="127.0.0.1"))
    await eventually(lambda: manager.info().local_node_state == "active", "the manager's own session")
    return manager, init, listen


def nodes(manager: Daemon) -> dict[str, objects_pb2.Node]:
    assert manager.manager is not None
    return {n.description.hostname: n for n in manager.manager.store.view().nodes()}


async def test_init_join_and_leave(daemons):
    manager, init, remote = await swarm(daemons)
    info = manager.info()
    assert info.control_available and info.managers_count == 1 and info.node_id == init.node_id
    with pytest.raises(DaemonError, match="already part of a swarm"):
        await manager.init(control_pb2.SwarmInitRequest(listen_addr=addr()))

    worker = daemons("w1")
    joined = await worker.join(control_pb2.SwarmJoinRequest(remote_addr=remote, join_token=init.worker_token,
                                                            listen_addr=addr(), advertise_addr="127.0.0.1"))
    assert joined.role == objects_pb2.WORKER
    assert worker.info().local_node_state == "active" and not worker.info().control_available
    await eventually(lambda: nodes(manager).get("w1") is not None
                     and nodes(manager)["w1"].status.state == objects_pb2.NodeStatus.READY, "w1 Ready")

    with pytest.raises(DaemonError, match="participating as a manager") as refused:
        await manager.leave(control_pb2.SwarmLeaveRequest())
    assert refused.value.code == "precondition" and manager.node is not None

    await worker.leave(control_pb2.SwarmLeaveRequest())
    assert worker.node is None and worker.state.load() is None
    assert worker.info().local_node_state == "inactive"


async def test_bad_join_requests_are_refused_and_change_nothing(daemons):
    manager, init, remote = await swarm(daemons)
    worker = daemons("w1")
    cases = [
        (dict(remote_addr=remote, join_token="SWMTKN-1-bogus"), "invalid"),
        (dict(remote_addr="manager-one:2377", join_token=init.worker_token), "invalid"),
        (dict(remote_addr=remote, join_token=init.worker_token, availability="sometimes"), "invalid"),
        (dict(remote_addr=remote, join_token=init.worker_token, listen_addr="127.0.0.1:99999"), "invalid"),
    ]
    for fields, code in cases:
        with pytest.raises(DaemonError) as refused:
            await worker.join(control_pb2.SwarmJoinRequest(advertise_addr="127.0.0.1", **fields))
        assert refused.value.code == code, (fields, refused.value)
        assert worker.node is None and worker.state.load() is None, fields
    assert set(nodes(manager)) == {"m1"}


async def test_promotion_and_demotion_change_the_raft_membership(daemons):
    manager, init, remote = await swarm(daemons)
    worker = daemons("w1")
    await worker.join(control_pb2.SwarmJoinRequest(remote_addr=remote, join_token=init.worker_token,
                                                   listen_addr=addr(), advertise_addr="127.0.0.1"))
    await eventually(lambda: "w1" in nodes(manager), "w1 in the store")
    assert manager.manager is not None
    control = manager.manager.control

    async def set_role(role: int) -> None:
        """What `shoal node promote/demote` sends, read again when the node changed meanwhile."""
        for _ in range(10):
            node = nodes(manager)["w1"]
            spec = objects_pb2.NodeSpec()
            spec.CopyFrom(node.spec)
            spec.desired_role = role
            try:
                await control.update_node(control_pb2.UpdateNodeRequest(node_id=node.id, version=node.meta.version,
                                                                        spec=spec))
                return
            except ControlError as err:
                if err.code != "conflict":
                    raise
        raise AssertionError("the node kept changing under the update")

    await set_role(objects_pb2.MANAGER)
    await eventually(lambda: worker.node is not None and worker.node.role == "manager"
                     and worker.raft is not None and len(manager.manager.raft_members()) == 2,
                     "w1 a manager and a Raft member")
    await eventually(lambda: worker.info().control_available and worker.info().managers_count == 2,
                     "w1 serving the ControlAPI from its own store")

    await set_role(objects_pb2.WORKER)
    await eventually(lambda: worker.node is not None and worker.node.role == "worker" and worker.raft is None
                     and len(manager.manager.raft_members()) == 1, "w1 a worker again, out of Raft")
    assert worker.state.load().role == "worker"


async def test_swarm_init_takes_daemon_json_address_pools_unless_the_request_names_pools(daemons):
    pools = [{"base": "198.18.0.0/16", "size": 26}, {"base": "198.19.0.0/16", "size": 26}]
    configured = daemons("m1")
    configured.default_address_pools = pools
    await configured.init(control_pb2.SwarmInitRequest(listen_addr=addr(), advertise_addr="127.0.0.1",
                                                       subnet_size=24))   # the CLI's default mask length
    assert configured.manager is not None
    spec = configured.manager.store.view().cluster().spec
    assert (list(spec.default_addr_pool), spec.subnet_size) == (["198.18.0.0/16", "198.19.0.0/16"], 26)

    explicit = daemons("m2")
    explicit.default_address_pools = pools
    await explicit.init(control_pb2.SwarmInitRequest(listen_addr=addr(), advertise_addr="127.0.0.1",
                                                     default_addr_pool=["192.0.2.0/24"], subnet_size=28))
    assert explicit.manager is not None
    spec = explicit.manager.store.view().cluster().spec
    assert (list(spec.default_addr_pool), spec.subnet_size) == (["192.0.2.0/24"], 28)
