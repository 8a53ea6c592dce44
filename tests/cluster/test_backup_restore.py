"""Issue 12 item 5 as an operator sees it, on a 1-manager + 1-worker lab: a backup taken while
writes go on, the manager's disk lost (state directory wiped, shoald restarted on an empty one),
``swarm init --restore`` on it: every object the backup holds is back, every write acknowledged
before the backup started is in it, the worker comes back with its task, and a new service
reads the restored secret (so the key that opens secrets travelled with the backup).
"""

from __future__ import annotations

import json
import shutil
import stat
import threading

import pytest

from tests.support.labs import shoal_stdin
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

PLAINTEXT = "restored-and-still-secret"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


def names(lab, *command: str) -> set[str]:
    out = lab.shoal("manager1", *command, "--format", "json").stdout
    return {json.loads(line)["Name"] for line in out.splitlines() if line.strip()}


def read_in_container(lab, service: str, path: str) -> str | None:
    for line in lab.shoal("worker1", "container", "ls", "--format", "json").stdout.splitlines():
        if f"{service}." in line:
            container = json.loads(line)["ID"]
            return lab.shoal("worker1", "container", "exec", container, "--", "cat", path).stdout
    return None


class ConfigWriter:
    """Creates configs load-0, load-1, ... on manager1 until stopped; remembers which were acknowledged."""

    def __init__(self, lab):
        self.lab = lab
        self.acked: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            name = f"load-{n}"
            if shoal_stdin(self.lab, "config", "create", name, "-", data=str(n), check=False).returncode == 0:
                self.acked.append(name)
            n += 1


def test_backup_under_writes_then_restore_onto_an_empty_manager(lab, image):
    lab.wait_ready()
    lab.shoal("manager1", "network", "create", "--driver", "overlay", "backend")
    shoal_stdin(lab, "secret", "create", "db_pass", "-", data=PLAINTEXT)
    shoal_stdin(lab, "config", "create", "app.conf", "-", data="setting=1")
    lab.shoal("manager1", "service", "create", "--name", "app", "--network", "backend",
              "--constraint", "node.role==worker", "--secret", "db_pass", "--config", "app.conf",
              "--stop-signal", "KILL", image, "sleep", "3600", timeout=120)
    wait_for(lambda: read_in_container(lab, "app", "/run/secrets/db_pass") == PLAINTEXT, 60,
             what="app running with its secret")

    writer = ConfigWriter(lab)
    writer.thread.start()
    wait_for(lambda: len(writer.acked) >= 3, 60, what="a few writes acknowledged")
    acked_before = list(writer.acked)
    backup = lab.plan.directory / "swarm.bak"
    out = lab.shoal("manager1", "swarm", "backup", str(backup)).stdout
    wait_for(lambda: len(writer.acked) >= len(acked_before) + 3, 60, what="writes going on after the backup")
    writer.stop.set()
    writer.thread.join(60)
    assert "written to" in out and "keep it as safe" in out
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600

    # The manager's disk is lost: shoald restarts on an empty state directory.
    lab.kill("manager1")
    state = lab.host("manager1").state_dir
    shutil.rmtree(state)
    state.mkdir(mode=0o700)
    lab.start("manager1")
    assert json.loads(lab.shoal("manager1", "info", "--format", "json").stdout)["localNodeState"] == "inactive"

    out = lab.shoal("manager1", "swarm", "init", "--restore", str(backup),
                    "--advertise-addr", lab.address("manager1"), timeout=90).stdout
    assert "is now a manager" in out
    assert names(lab, "service", "ls") == {"app"}
    assert names(lab, "secret", "ls") == {"db_pass"}
    assert "backend" in names(lab, "network", "ls")
    configs = names(lab, "config", "ls")
    assert "app.conf" in configs
    assert set(acked_before) <= configs                       # acknowledged before the backup: kept
    assert configs - {"app.conf"} <= set(writer.acked) | {f"load-{len(writer.acked) + i}" for i in range(3)}

    # The worker finds the manager at the same address and keeps its task; the restored secret
    # opens for a new service too.
    wait_for(lambda: {n["Hostname"]: n["Status"] for n in lab.nodes()}.get("worker1") == "Ready", 60,
             what="worker1 Ready under the restored manager")
    assert read_in_container(lab, "app", "/run/secrets/db_pass") == PLAINTEXT
    lab.shoal("manager1", "service", "create", "--name", "late", "--constraint", "node.role==worker",
              "--secret", "db_pass", "--stop-signal", "KILL", image, "sleep", "3600", timeout=120)
    wait_for(lambda: read_in_container(lab, "late", "/run/secrets/db_pass") == PLAINTEXT, 60,
             what="a new service reading the restored secret")
    managers = [n for n in lab.nodes() if n["ManagerStatus"]]
    assert [(n["Hostname"], n["ManagerStatus"]) for n in managers] == [("manager1", "Leader")]
