"""Store changes as Docker events: which changes are events, their attributes, filters, the log."""
from __future__ import annotations

import asyncio

import pytest

from manager.events import (EventLog, FilterError, from_store_event, leader_event, matches, parse_filters)
from manager.state.events import ObjectCreated, ObjectDeleted, ObjectUpdated
from manager.state.kinds import Kind
from proto import objects_pb2


def service(replicas=3, image="busybox", name="web"):
    s = objects_pb2.Service(id="svc1")
    s.spec.annotations.name = name
    s.spec.replicas = replicas
    s.spec.task.container.image = image
    return s


def task(state=objects_pb2.RUNNING, desired=objects_pb2.RUNNING, err=""):
    t = objects_pb2.Task(id="task1", service_id="svc1", node_id="node1", slot=2, desired_state=desired)
    t.annotations.name = "web.2.task1"
    t.status.state = state
    t.status.err = err
    return t


def test_a_scale_is_a_service_update_with_replicas_old_and_new():
    ev = from_store_event(ObjectUpdated(Kind.SERVICE, service(6), service(3)), when_ns=5 * 10**9 + 7)
    assert ev == {"Type": "service", "Action": "update", "scope": "swarm", "time": 5, "timeNano": 5 * 10**9 + 7,
                  "Actor": {"ID": "svc1", "Attributes": {"name": "web", "replicas.old": "3", "replicas.new": "6"}}}


def test_create_and_remove():
    assert from_store_event(ObjectCreated(Kind.SERVICE, service()))["Action"] == "create"
    gone = from_store_event(ObjectDeleted(Kind.NETWORK, objects_pb2.Network(id="n1")))
    assert (gone["Type"], gone["Action"], gone["Actor"]["ID"]) == ("network", "remove", "n1")


def test_a_task_update_is_an_event_only_when_a_state_changes():
    quiet = task()
    bumped = task()
    bumped.meta.version = 9
    assert from_store_event(ObjectUpdated(Kind.TASK, bumped, quiet)) is None
    failed = from_store_event(ObjectUpdated(Kind.TASK, task(objects_pb2.FAILED, err="exit 1"), task()))
    attrs = failed["Actor"]["Attributes"]
    assert attrs["state.old"] == "running" and attrs["state.new"] == "failed"
    assert attrs["error"] == "exit 1" and attrs["service"] == "svc1" and attrs["node"] == "node1"
    assert "desired.old" not in attrs


def test_node_updates_name_what_changed():
    old, new = objects_pb2.Node(id="n"), objects_pb2.Node(id="n")
    new.description.hostname = old.description.hostname = "worker1"
    old.status.state, new.status.state = objects_pb2.NodeStatus.READY, objects_pb2.NodeStatus.DOWN
    new.spec.availability = objects_pb2.NodeSpec.DRAIN
    attrs = from_store_event(ObjectUpdated(Kind.NODE, new, old))["Actor"]["Attributes"]
    assert attrs == {"name": "worker1", "state.old": "ready", "state.new": "down",
                     "availability.old": "active", "availability.new": "drain"}
    assert leader_event("n", "manager2", True)["Actor"]["Attributes"] == {
        "name": "manager2", "leader.old": "false", "leader.new": "true"}


def test_the_cluster_object_and_volumes_make_no_events():
    assert from_store_event(ObjectUpdated(Kind.CLUSTER, objects_pb2.Cluster(), objects_pb2.Cluster())) is None


def test_filters_follow_docker():
    ev = from_store_event(ObjectUpdated(Kind.SERVICE, service(6), service(3)))
    assert matches(ev, parse_filters(["type=service"]))
    assert matches(ev, parse_filters(["type=node", "type=service"]))           # values of a key: OR
    assert not matches(ev, parse_filters(["type=service", "event=create"]))   # keys: AND
    assert matches(ev, parse_filters(["service=web"])) and matches(ev, parse_filters(["service=svc1"]))
    t = from_store_event(ObjectCreated(Kind.TASK, task()))
    assert matches(t, parse_filters(["service=svc1"])) and matches(t, parse_filters(["node=node1"]))
    assert not matches(t, parse_filters(["network=svc1"]))


@pytest.mark.parametrize("bad,message", [("bogus=1", "invalid filter 'bogus'"), ("type", "bad format of filter"),
                                         ("type=planet", "invalid filter 'type=planet'")])
def test_bad_filters_are_refused_in_dockers_words(bad, message):
    with pytest.raises(FilterError, match=message):
        parse_filters([bad])


async def test_the_log_replays_since_and_streams_new_events():
    log = EventLog(capacity=3)
    for i in range(5):
        log.publish({"timeNano": i, "Type": "service"})
    assert [e["timeNano"] for e in log.since(0)] == [2, 3, 4]          # bounded
    assert [e["timeNano"] for e in log.since(3, until_ns=3)] == [3]
    queue = log.subscribe()
    log.publish({"timeNano": 9})
    assert (await asyncio.wait_for(queue.get(), 1))["timeNano"] == 9
    log.unsubscribe(queue)
    assert log.subscribers == 0


async def test_a_reader_that_stops_reading_is_cut_off_not_buffered_forever():
    log = EventLog(max_backlog=2)
    queue = log.subscribe()
    for i in range(3):
        log.publish({"timeNano": i})
    assert [queue.get_nowait() for _ in range(3)] == [{"timeNano": 0}, {"timeNano": 1}, None]
    assert log.subscribers == 0
