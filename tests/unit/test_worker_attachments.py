"""worker/attachments.py: a one-off container's address is released when its container goes, and
at a start of shoald the assigned attachments no container carries (leaked when a client or shoald
died between allocating and creating) are released, once; releases are retried until they succeed."""
from __future__ import annotations

import asyncio

from agent_runtime.api import ATTACHMENT_LABEL
from worker.attachments import Attachments
from worker.events import REMOVED, ContainerEvents, Observed, observed_from_event
from worker.testing import FakeRuntime


class Manager:
    """Stands for the managers' DetachNetwork: fails ``failures`` times, then records."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.released: list[str] = []
        self.changed = asyncio.Event()

    async def detach(self, attachment_id: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("no manager answered")
        self.released.append(attachment_id)
        self.changed.set()


def test_event_carries_the_attachment():
    obs = observed_from_event({"Type": "container", "Action": "destroy",
                               "Actor": {"ID": "c1", "Attributes": {ATTACHMENT_LABEL: "att1"}}})
    assert obs is not None and obs.status == REMOVED and obs.attachment_id == "att1"


async def test_a_removed_container_releases_its_attachment_with_retries():
    events = ContainerEvents(runtime=None)
    manager = Manager(failures=2)
    keeper = Attachments(events, manager.detach, retry=(0.001, 0.001))
    events.apply(Observed("c1", attachment_id="att1"))
    events.apply(Observed("c2"))
    events.apply(Observed("c2", status=REMOVED))       # no attachment: nothing to release
    events.apply(Observed("c1", status=REMOVED))
    await asyncio.wait_for(manager.changed.wait(), 10)
    assert manager.released == ["att1"]
    await keeper.close()


async def test_a_start_releases_only_leaked_attachments_once():
    events = ContainerEvents(runtime=None)
    manager = Manager()
    keeper = Attachments(events, manager.detach)
    keeper.assigned |= {"leaked", "in-use", "being-made"}
    keeper.ours.add("being-made")                      # this shoald is creating its container now
    events.apply(Observed("c1", attachment_id="in-use"))
    keeper.reconcile(complete=True)                    # the runtime's list is not known yet: wait
    assert not keeper.reconciled
    events.connected.set()
    keeper.reconcile(complete=False)                   # nor the full assignment set
    assert not keeper.reconciled
    keeper.reconcile(complete=True)
    await asyncio.wait_for(manager.changed.wait(), 10)
    assert manager.released == ["leaked"]
    keeper.assigned.add("later")                       # after the first reconcile: never guessed at
    keeper.reconcile(complete=True)
    await asyncio.sleep(0)
    assert manager.released == ["leaked"]
    await keeper.close()


async def test_assignments_before_the_event_stream_still_release_a_leak():
    """shoald's restart under load: the full assignment set came before the runtime's event
    stream connected, so the worker's sweep found no index; the stream's first resync must then
    reconcile (its callbacks used to run before the index counted as connected: never released)."""
    events = ContainerEvents(FakeRuntime())
    manager = Manager()
    keeper = Attachments(events, manager.detach)
    events.on_resync(lambda: keeper.reconcile(complete=True))     # as the worker's sweep does
    keeper.assigned.add("leaked")
    keeper.reconcile(complete=True)                    # the assignments first: no index yet
    assert not keeper.reconciled
    stream = asyncio.create_task(events.run())
    try:
        await asyncio.wait_for(manager.changed.wait(), 10)
        assert manager.released == ["leaked"]
    finally:
        stream.cancel()
        await asyncio.gather(stream, return_exceptions=True)
        await keeper.close()


async def test_a_permanent_refusal_is_not_retried_forever():
    class NotInSwarm(Exception):
        code = "precondition"
    calls = []

    async def detach(attachment_id: str) -> None:
        calls.append(attachment_id)
        raise NotInSwarm("this node is not part of a swarm")
    events = ContainerEvents(runtime=None)
    keeper = Attachments(events, detach, retry=(0.001, 0.001))
    keeper.release("att1", "test")
    await asyncio.gather(*keeper._releases.values())
    assert calls == ["att1"]
