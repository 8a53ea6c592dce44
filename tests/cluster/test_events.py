"""`shoal events` as an operator uses it: a scale, a task killed from outside, a node killed and
started again, seen live and in order; replayed with --since/--until and filtered."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


def tasks(lab, service):
    out = lab.shoal("manager1", "service", "ps", "--format", "json", service).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


class Events:
    """`shoal events --format json` running on manager1; lines collected as they come."""

    def __init__(self, lab, *args):
        self.proc = subprocess.Popen(lab.exec_argv("manager1", ["shoal", "events", "--format", "json", *args]),
                                     env=lab.host_env("manager1"), stdout=subprocess.PIPE, text=True)
        self.seen: list[dict] = []

    def stop(self) -> list[dict]:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def index_of(events, start, pred, what):
    for i in range(start, len(events)):
        if pred(events[i]):
            return i
    raise AssertionError(f"no {what} after event {start}; events: "
                         + "; ".join(f"{e['Type']} {e['Action']} {e['Actor']['Attributes']}" for e in events))


def test_scale_kill_and_node_loss_show_in_order_and_replay_filtered(lab):
    image = f"{lab.registry}/shoal/busybox:latest"
    start = time.time()
    live = Events(lab, "--since", f"{start:.3f}")   # replays what happens before it has connected
    try:
        lab.shoal("manager1", "service", "create", "--name", "ev", "--replicas", "1",
                  "--constraint", "node.role==manager", image, "sleep", "1d", timeout=120)
        lab.shoal("manager1", "service", "scale", "ev=2", timeout=120)
        wait_for(lambda: sum(t["CurrentState"].startswith("Running") for t in tasks(lab, "ev")) == 2, 60,
                 what="2 tasks running")
        containers = [json.loads(line) for line in
                      lab.shoal("manager1", "container", "ls", "--format", "json").stdout.splitlines() if line]
        victim = next(c for c in containers if "ev." in json.dumps(c))
        lab.shoal("manager1", "container", "kill", victim["ID"])
        wait_for(lambda: any(t["CurrentState"].startswith(("Failed", "Complete")) for t in tasks(lab, "ev")), 60,
                 what="the killed task to end")
        lab.kill("worker1")
        wait_for(lambda: {n["Hostname"]: n["Status"] for n in lab.nodes()}["worker1"] == "Down", 60,
                 what="worker1 Down")
        lab.start("worker1")
        wait_for(lambda: {n["Hostname"]: n["Status"] for n in lab.nodes()}["worker1"] == "Ready", 60,
                 what="worker1 Ready")
        until = time.time()
    finally:
        events = live.stop()
        lab.shoal("manager1", "service", "rm", "ev", check=False)

    i = index_of(events, 0, lambda e: (e["Type"], e["Action"]) == ("service", "create")
                 and e["Actor"]["Attributes"]["name"] == "ev", "service create")
    i = index_of(events, i, lambda e: e["Type"] == "service" and e["Action"] == "update"
                 and e["Actor"]["Attributes"].get("replicas.new") == "2", "scale to 2")
    i = index_of(events, i, lambda e: e["Type"] == "container" and e["Action"] == "die"
                 and e["Actor"]["ID"].startswith(victim["ID"]), "the killed container's die")
    i = index_of(events, i, lambda e: e["Type"] == "task" and e["Action"] == "update"
                 and e["Actor"]["Attributes"].get("state.new") in ("failed", "complete"), "the task ending")
    i = index_of(events, i, lambda e: e["Type"] == "node" and e["Actor"]["Attributes"].get("name") == "worker1"
                 and e["Actor"]["Attributes"].get("state.new") == "down", "worker1 down")
    index_of(events, i, lambda e: e["Type"] == "node" and e["Actor"]["Attributes"].get("name") == "worker1"
             and e["Actor"]["Attributes"].get("state.new") == "ready", "worker1 ready")
    times = [e["timeNano"] for e in events if e["scope"] == "swarm"]
    assert times == sorted(times)

    # Replayed: --since/--until ends by itself; a filter keeps only node events.
    replay = lab.shoal("manager1", "events", "--since", f"{start:.3f}", "--until", f"{until:.3f}",
                       "--filter", "type=node", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
                       timeout=30).stdout.splitlines()
    assert replay and all(line.startswith("node update") for line in replay), replay
    assert "node update worker1" in replay

    # The default line: TIME TYPE ACTION ID (attributes sorted).
    plain = lab.shoal("manager1", "events", "--since", f"{start:.3f}", "--until", f"{until:.3f}",
                      "--filter", "type=service", "--filter", "event=create", timeout=30).stdout.splitlines()
    assert len(plain) == 1 and " service create " in plain[0] and plain[0].endswith("(name=ev)"), plain


def test_bad_filters_are_refused_in_dockers_words(lab):
    result = lab.shoal("manager1", "events", "--filter", "bogus=1", "--until", "0s", check=False)
    assert result.returncode == 1 and "invalid filter 'bogus'" in result.stderr
