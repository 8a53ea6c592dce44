"""Issue 6 item 4 as a user sees it: secrets and configs on a 1-manager + 1-worker lab with the
real runtime. A secret created from stdin reaches only the containers of services that ask for
it, at /run/secrets/NAME; it shows nowhere else (inspect, logs of other services, the managers'
Raft journal and dumps, the worker runtime's on-disk state); it can't be removed while in use; a
config lands at its target.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.waiting import wait_for
from tests.support.labs import in_container, shoal_stdin

pytestmark = pytest.mark.cluster

PLAINTEXT = "t0p-s3cret-4c1d-lab-only"
CONFIG = "greeting = hello-from-config"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


def logs(lab, service: str) -> str:
    return lab.shoal("manager1", "service", "logs", service, check=False).stdout


def files_with(root: Path, needle: bytes) -> list[str]:
    """Regular files below ``root`` whose bytes contain ``needle`` (tmpfs mounts are skipped:
    they are memory, which is where the data must be)."""
    found = []
    for path in root.rglob("*"):
        if path.name == "files" and path.is_dir() and path.is_mount():
            continue
        if any(p.name == "files" and p.is_mount() for p in path.parents if p != root):
            continue
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


def test_secret_reaches_only_its_service_and_never_disk(lab, image):
    created = shoal_stdin(lab, "secret", "create", "--label", "env=lab", "db_pass", "-", data=PLAINTEXT)
    secret_id = created.stdout.strip()
    shoal_stdin(lab, "config", "create", "app.conf", "-", data=CONFIG)
    try:
        listed = [json.loads(line) for line in
                  lab.shoal("manager1", "secret", "ls", "--format", "json").stdout.splitlines()]
        assert [(s["ID"], s["Name"], s["Labels"]) for s in listed] == [(secret_id, "db_pass", "env=lab")]
        inspected = lab.shoal("manager1", "secret", "inspect", "db_pass").stdout
        assert json.loads(inspected)[0]["Spec"] == {"Name": "db_pass", "Labels": {"env": "lab"}}
        assert PLAINTEXT not in inspected

        lab.shoal("manager1", "service", "create", "--name", "reader", "--constraint", "node.role==worker",
                  "--secret", "source=db_pass,uid=1000,mode=0400",
                  "--config", "source=app.conf,target=/etc/app.conf", "--stop-signal", "KILL", image,
                  "sleep", "3600", timeout=120)
        lab.shoal("manager1", "service", "create", "--name", "other", "--constraint", "node.role==worker",
                  "--stop-signal", "KILL", image,
                  "sh", "-c", "ls /run/secrets 2>&1; cat /run/secrets/db_pass 2>&1; echo other-done; sleep 3600",
                  timeout=120)
        out = in_container(lab, "reader", "cat /run/secrets/db_pass; echo; "
                                          "stat -c 'owner=%u mode=%a' /run/secrets/db_pass; cat /etc/app.conf")
        assert PLAINTEXT in out
        assert "owner=1000 mode=400" in out
        assert CONFIG in out
        other = wait_for(lambda: (lambda text: text if "other-done" in text else None)(logs(lab, "other")), 30,
                         what="other's output")
        assert PLAINTEXT not in other and "No such file" in other

        service = lab.shoal("manager1", "service", "inspect", "reader").stdout
        assert PLAINTEXT not in service and "db_pass" in service

        refused = lab.shoal("manager1", "secret", "rm", "db_pass", check=False)
        assert refused.returncode == 1
        assert "in use by the following service: reader" in refused.stderr
        assert lab.shoal("manager1", "secret", "ls", "-q").stdout.split() == [secret_id]

        needle = PLAINTEXT.encode()
        manager = lab.host("manager1")
        assert files_with(manager.state_dir / "raft", b"db_pass")  # the scan does see the journal...
        assert files_with(manager.state_dir, needle) == []        # ...which, like the dumps, has no plaintext
        assert files_with(manager.log_dir, needle) == []
        worker = lab.host("worker1")
        assert files_with(worker.runtime_dir, needle) == []       # only on the containers' tmpfs
        assert files_with(worker.state_dir, needle) == []
        assert files_with(worker.log_dir, needle) == []
    finally:
        lab.shoal("manager1", "service", "rm", "reader", "other", check=False)
    wait_for(lambda: lab.shoal("manager1", "secret", "rm", "db_pass", check=False).returncode == 0, 30,
             what="secret removable once its service is gone")
    wait_for(lambda: lab.shoal("manager1", "config", "rm", "app.conf", check=False).returncode == 0, 30,
             what="config removable")
    assert lab.shoal("manager1", "secret", "ls", "-q").stdout.split() == []


def test_unknown_secret_and_duplicate_name_are_refused(lab, image):
    result = lab.shoal("manager1", "service", "create", "--name", "nope", "--secret", "missing", image, "true",
                       check=False)
    assert result.returncode == 1 and "secret missing not found" in result.stderr
    shoal_stdin(lab, "secret", "create", "dup", "-", data="one")
    try:
        again = shoal_stdin(lab, "secret", "create", "dup", "-", data="two", check=False)
        assert again.returncode == 1 and "secret dup already exists" in again.stderr
    finally:
        lab.shoal("manager1", "secret", "rm", "dup", check=False)


def test_a_promoted_manager_gets_the_secrets_key_and_seals_with_it(lab, image):
    """Last in the module: it leaves worker1 a manager."""
    manager_key = lab.host("manager1").state_dir / "secrets.key"
    worker_key = lab.host("worker1").state_dir / "secrets.key"
    assert manager_key.stat().st_mode & 0o777 == 0o600 and len(manager_key.read_bytes()) == 32
    assert not worker_key.exists()                      # workers never get it
    lab.shoal("manager1", "node", "promote", "worker1")
    wait_for(lambda: worker_key.exists() and worker_key.read_bytes() == manager_key.read_bytes(), 30,
             what="the secrets key on the promoted manager")
    wait_for(lambda: shoal_stdin(lab, "secret", "create", "promoted", "-", data=PLAINTEXT, on="worker1",
                                 check=False).returncode == 0, 30, what="secret created on the new manager")
    try:
        # Sealed by worker1, opened by the leader's dispatcher: one key for the whole cluster.
        lab.shoal("manager1", "service", "create", "--name", "late", "--constraint", "node.hostname==worker1",
                  "--secret", "promoted", "--stop-signal", "KILL", image, "sleep", "3600", timeout=120)
        assert in_container(lab, "late", "cat /run/secrets/promoted") == PLAINTEXT
    finally:
        lab.shoal("manager1", "service", "rm", "late", check=False)
