"""Hypothesis: whatever the store goes through, a worker that applies the dispatcher's Assignments
messages (COMPLETE first, then INCREMENTAL changes) holds exactly the node's full assignment set and
its current network state; the real Dispatcher, its fanout and a LocalProposer store (issue 10)."""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from manager.dispatcher import Dispatcher, assignments, netstate
from manager.state import Kind, LocalProposer, MemoryStore, Store, copy_of
from proto import cluster_pb2, objects_pb2 as pb
from tests.support.dispatcher import Context, Leader, authorize

NODES = ["n1", "n2"]
TASKS = [f"t{i}" for i in range(4)]
STATES = [pb.NEW, pb.ASSIGNED, pb.RUNNING, pb.SHUTDOWN]

step = st.one_of(
    st.tuples(st.just("task"), st.sampled_from(TASKS), st.sampled_from(NODES + [""]), st.sampled_from(STATES),
              st.booleans(), st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(TASKS)),
    st.tuples(st.just("secret"), st.integers(0, 3)),
    st.tuples(st.just("node"), st.sampled_from(NODES), st.booleans()),
)


def initial() -> list:
    out = []
    for i, node_id in enumerate(NODES):
        node = pb.Node(id=node_id)
        node.status.state = pb.NodeStatus.READY
        node.status.addr = f"192.0.2.{11 + i}"
        node.attachments.add(network_id="front", addresses=[f"198.18.1.{241 + i}/24"])
        out.append(node)
    network = pb.Network(id="front", vni=4097)
    network.spec.annotations.name = "front"
    network.ipam.add(subnet="198.18.1.0/24", gateway="198.18.1.1")
    service = pb.Service(id="web")
    service.spec.annotations.name = "web"
    service.spec.task.networks.add(target="front")
    service.endpoint.virtual_ips.add(network_id="front", addr="198.18.1.2/24")
    secret = pb.Secret(id="s1")
    secret.spec.annotations.name = "s1"
    secret.spec.data = b"0"
    return out + [network, service, secret]


def edit(step_):
    def fn(tx):
        kind = step_[0]
        if kind == "task":
            _, task_id, node_id, state, networked, uses_secret = step_
            current = tx.get(Kind.TASK, task_id)
            task = copy_of(current) if current is not None else pb.Task(id=task_id, service_id="web")
            task.node_id, task.status.state = node_id, state
            task.desired_state = pb.RUNNING if state <= pb.RUNNING else pb.SHUTDOWN
            del task.networks[:]
            if networked:
                task.networks.add(network_id="front", addresses=[f"198.18.1.{10 + TASKS.index(task_id)}/24"])
            del task.spec.container.secrets[:]
            if uses_secret:
                task.spec.container.secrets.add(secret_id="s1", secret_name="s1")
            (tx.update if current is not None else tx.create)(task)
        elif kind == "delete":
            if tx.get(Kind.TASK, step_[1]) is not None:
                tx.delete(Kind.TASK, step_[1])
        elif kind == "secret":
            secret = copy_of(tx.get(Kind.SECRET, "s1"))
            secret.spec.data = str(step_[1]).encode()
            tx.update(secret)
        else:
            node = copy_of(tx.get(Kind.NODE, step_[1]))
            node.status.state = pb.NodeStatus.READY if step_[2] else pb.NodeStatus.DOWN
            tx.update(node)
    return fn


def held_form(obj):
    """What a node must hold of ``obj``: a secret's version; a task as it is, but for its status
    once past ASSIGNED (the node's own reports are not sent back to it; assignments.diff)."""
    if not isinstance(obj, pb.Task):
        return obj.meta.version
    if obj.status.state <= pb.ASSIGNED:
        return obj.SerializeToString(deterministic=True)
    stable = copy_of(obj)
    stable.ClearField("meta")
    stable.ClearField("status")
    return stable.SerializeToString(deterministic=True)


def apply_message(held: dict, message: cluster_pb2.AssignmentsMessage) -> None:
    if message.type == cluster_pb2.AssignmentsMessage.COMPLETE:
        held.clear()
    for change in message.changes:
        item = change.assignment.WhichOneof("item")
        obj = getattr(change.assignment, item)
        if change.action == cluster_pb2.AssignmentChange.UPDATE:
            held[(item, obj.id)] = held_form(obj)
        else:
            held.pop((item, obj.id), None)


async def scenario(steps) -> None:
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    objects = initial()
    await store.update(lambda tx: [tx.create(o) for o in objects])
    dispatcher = Dispatcher(store, Leader(), authorize)
    session = dispatcher.Session(cluster_pb2.SessionRequest(), Context())
    session_id = (await anext(session)).session_id
    stream = dispatcher.Assignments(cluster_pb2.AssignmentsRequest(session_id=session_id), Context())
    held: dict = {}
    state = None
    try:
        for step_ in [None, *steps]:
            if step_ is not None:
                await store.update(edit(step_))
            view = store.view()
            want = {k: held_form(o) for k, o in assignments.assigned_objects(view, "n1").items()}
            want_state = netstate.network_state_for(view, "n1")
            while held != want or state != want_state:
                message = await asyncio.wait_for(anext(stream), 5)
                apply_message(held, message)
                if message.network_state:
                    state = json.loads(message.network_state)
    finally:
        await stream.aclose()
        await session.aclose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, max_size=12))
@example(steps=[("task", "t0", "n1", pb.RUNNING, True, False), ("task", "t1", "n2", pb.RUNNING, True, False),
                ("node", "n2", False), ("task", "t1", "n2", pb.SHUTDOWN, True, False)])
def test_applying_the_dispatchers_messages_always_yields_the_full_set(steps):
    asyncio.run(scenario(steps))


async def test_a_commit_wakes_only_the_nodes_it_concerns():
    """The fanout reads each commit once; a task change without networks wakes its own node's
    assignments only (not its network state, not other nodes); one with an address also wakes
    the network state of the nodes carrying that network."""
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    objects = initial()
    await store.update(lambda tx: [tx.create(o) for o in objects])
    fanout = dispatcher_fanout(store)
    n1, n2 = fanout.subscribe("n1"), fanout.subscribe("n2")
    assert n1.take() == (True, True) and n2.take() == (True, True), "a new stream computes everything"
    try:
        await store.update(edit(("task", "t0", "n2", pb.RUNNING, False, False)))
        await wait_until(lambda: fanout.commits == 1)
        assert n2.take() == (True, False), "a task without networks is in no network state"
        assert n1.take() == (False, False), "another node's task does not concern n1"
        n1.networks = frozenset({"front"})     # what n1's stream last sent carried
        await store.update(edit(("task", "t1", "n2", pb.RUNNING, True, False)))
        await wait_until(lambda: fanout.commits == 2)
        assert n2.take() == (True, True), "a task with an address: its node's network state too"
        assert n1.take() == (False, True), "n1 carries the task's network: it is a peer there"
        await store.update(edit(("secret", 1)))
        await wait_until(lambda: fanout.commits == 3)
        assert n1.take() == (True, False) and n2.take() == (True, False), "a secret: assignments only"
    finally:
        fanout.unsubscribe(n1)
        fanout.unsubscribe(n2)


def dispatcher_fanout(store):
    from manager.dispatcher.fanout import Fanout
    return Fanout(store)


async def wait_until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)
