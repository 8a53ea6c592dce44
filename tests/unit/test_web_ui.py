"""The web page's pure parts: the board built from nodes, services and tasks; a service's page;
`shoal ui`'s listen-address and Host checks."""
from __future__ import annotations

import pytest

from proto import control_pb2, objects_pb2 as pb
from shoal.ui import bridge, snapshot


def node(node_id, hostname, manager=False, state=pb.NodeStatus.READY, availability=pb.NodeSpec.ACTIVE, leader=False):
    n = pb.Node(id=node_id, role=pb.MANAGER if manager else pb.WORKER)
    n.description.hostname = hostname
    n.status.state = state
    n.spec.availability = availability
    if manager:
        n.manager_status.leader = leader
        n.manager_status.reachability = pb.ManagerStatus.REACHABLE
    return n


def service(service_id, name, mode=pb.ServiceSpec.REPLICATED, replicas=1):
    s = pb.Service(id=service_id)
    s.spec.annotations.name = name
    s.spec.mode = mode
    s.spec.replicas = replicas
    s.spec.task.container.image = "busybox"
    return s


def task(task_id, service_id, slot, node_id, state=pb.RUNNING, desired=pb.RUNNING, when=0.0, err=""):
    t = pb.Task(id=task_id, service_id=service_id, slot=slot, node_id=node_id, desired_state=desired)
    t.status.state = state
    t.status.timestamp = when
    t.status.err = err
    return t


NODES = [node("w1", "worker1"), node("m2", "manager2", manager=True),
         node("m1", "manager1", manager=True, leader=True), node("w2", "worker2", state=pb.NodeStatus.DOWN,
                                                                   availability=pb.NodeSpec.DRAIN)]
SERVICES = [service("s-web", "web", replicas=3), service("s-agent", "agent", mode=pb.ServiceSpec.GLOBAL)]
STATUSES = [control_pb2.ServiceStatus(service_id="s-web", running_tasks=2, desired_tasks=3)]


def test_nodes_are_columns_managers_first_with_their_current_tasks():
    tasks = [task("t1", "s-web", 1, "w1"), task("t2", "s-web", 2, "m1", state=pb.STARTING),
             task("t3", "s-web", 3, "", state=pb.PENDING),                                 # not placed yet
             task("old", "s-web", 1, "w1", state=pb.FAILED, desired=pb.SHUTDOWN, err="exit 1"),   # history
             task("g1", "s-agent", 0, "w2"),
             task("gone", "s-web", 4, "w9")]                                              # its node was removed
    board = snapshot.cluster(NODES, SERVICES, STATUSES, tasks)
    assert [(n["hostname"], n["role"], n["status"], n["availability"], n["leader"]) for n in board["nodes"]] == [
        ("manager1", "manager", "ready", "active", True), ("manager2", "manager", "ready", "active", False),
        ("worker1", "worker", "ready", "active", False), ("worker2", "worker", "down", "drain", False)]
    cards = {n["hostname"]: [(t["name"], t["state"]) for t in n["tasks"]] for n in board["nodes"]}
    assert cards == {"manager1": [("web.2", "starting")], "manager2": [], "worker1": [("web.1", "running")],
                     "worker2": [("agent.w2", "running")]}
    assert [t["id"] for t in board["unassigned"]] == ["t3", "gone"]
    assert [(s["name"], s["mode"], s["running"], s["desired"]) for s in board["services"]] == [
        ("agent", "global", 0, 0), ("web", "replicated", 2, 3)]


def test_a_task_of_an_unknown_service_is_shown_by_its_service_id():
    board = snapshot.cluster([node("w1", "worker1")], [], [], [task("t1", "s-gone", 1, "w1")])
    assert board["nodes"][0]["tasks"][0]["name"] == "s-gone.1"


def test_empty_cluster():
    assert snapshot.cluster([], [], [], []) == {"nodes": [], "unassigned": [], "services": []}


def test_service_page_has_current_tasks_first_then_history_newest_first_and_its_events():
    web = SERVICES[0]
    tasks = [task("old1", "s-web", 1, "w1", state=pb.FAILED, desired=pb.SHUTDOWN, when=10, err="exit 1"),
             task("old2", "s-web", 1, "w1", state=pb.SHUTDOWN, desired=pb.SHUTDOWN, when=20),
             task("t1", "s-web", 1, "m1", when=30), task("other", "s-agent", 0, "w1")]
    events = [{"Type": "service", "Action": "create", "Actor": {"ID": "s-web", "Attributes": {"name": "web"}}},
              {"Type": "service", "Action": "create", "Actor": {"ID": "s-agent", "Attributes": {"name": "agent"}}},
              {"Type": "task", "Action": "create", "Actor": {"ID": "t1", "Attributes": {"service": "s-web"}}},
              {"Type": "node", "Action": "update", "Actor": {"ID": "w1", "Attributes": {}}}]
    page = snapshot.service_page(web, STATUSES[0], tasks, NODES, snapshot.service_events(events, "s-web"))
    assert [(t["id"], t["current"], t["node"]) for t in page["tasks"]] == [
        ("t1", True, "manager1"), ("old2", False, "worker1"), ("old1", False, "worker1")]
    assert page["tasks"][2]["error"] == "exit 1"
    assert [e["Actor"]["ID"] for e in page["events"]] == ["s-web", "t1"]
    assert page["service"] == {"id": "s-web", "name": "web", "image": "busybox", "mode": "replicated",
                               "running": 2, "desired": 3}


def test_service_events_keeps_the_newest():
    events = [{"Type": "task", "Action": "update", "Actor": {"ID": f"t{i}", "Attributes": {"service": "s"}}}
              for i in range(10)]
    assert [e["Actor"]["ID"] for e in snapshot.service_events(events, "s", limit=3)] == ["t7", "t8", "t9"]


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("8080", ("127.0.0.1", 8080)), ("[::1]:0", ("::1", 0)),
    ("127.1.2.3:9000", ("127.1.2.3", 9000))])
def test_loopback_listen_addresses(text, expected):
    assert bridge.parse_listen(text, allow_non_loopback=False) == expected


@pytest.mark.parametrize("text", ["0.0.0.0:8080", "192.0.2.10:8080", "[::]:8080"])
def test_other_listen_addresses_are_refused_unless_allowed(text):
    with pytest.raises(bridge.BridgeError, match="not a loopback address.*--allow-non-loopback"):
        bridge.parse_listen(text, allow_non_loopback=False)
    assert bridge.parse_listen(text, allow_non_loopback=True)[1] == 8080


@pytest.mark.parametrize("text", ["localhost:8080", "127.0.0.1:http", "127.0.0.1:70000", ""])
def test_bad_listen_addresses_name_the_problem(text):
    with pytest.raises(bridge.BridgeError, match="invalid listen address"):
        bridge.parse_listen(text, allow_non_loopback=False)


def test_only_the_listen_address_is_an_accepted_host():
    assert bridge.allowed_hosts("127.0.0.1", 8080) == {"127.0.0.1:8080", "[127.0.0.1]:8080", "localhost:8080"}
    assert "localhost:8080" not in bridge.allowed_hosts("192.0.2.10", 8080)


def test_a_missing_socket_is_named(tmp_path):
    with pytest.raises(bridge.BridgeError, match=f"unix://{tmp_path}/ui.sock.*shoald running"):
        bridge.check_socket(tmp_path / "ui.sock")


def test_shoal_ui_refuses_a_public_listen_address_before_touching_the_socket(tmp_path):
    from click.testing import CliRunner

    from shoal.cli.main import cli
    result = CliRunner().invoke(cli, ["-H", f"unix://{tmp_path}/shoal.sock", "ui", "--listen", "0.0.0.0:8080"])
    assert result.exit_code == 1
    assert "not a loopback address" in result.output and "--allow-non-loopback" in result.output


def test_shoal_ui_finds_the_page_socket_next_to_the_daemon_socket(tmp_path):
    from click.testing import CliRunner

    from shoal.cli.main import cli
    result = CliRunner().invoke(cli, ["-H", f"unix://{tmp_path}/shoal.sock", "ui"])
    assert result.exit_code == 1
    assert f"unix://{tmp_path}/ui.sock" in result.output and "Is shoald running" in result.output
