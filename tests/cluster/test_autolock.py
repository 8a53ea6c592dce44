"""Autolock on a lab: a restarted manager waits for `shoal swarm unlock`; a wrong key is refused;
the manager's state directory holds none of its keys in clear."""

from __future__ import annotations

import json
import re

import pytest

from shoal.lab import procs
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


def unlock(lab, key: str):
    return lab.exec("manager1", [procs.program("shoal"), "swarm", "unlock"], check=False, input=key + "\n", timeout=60)


def every_file(root) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_a_locked_manager_waits_for_its_unlock_key(lab):
    state = lab.host("manager1").state_dir
    secrets = {"tls key": (state / "certificates" / "node.key").read_bytes(),
               "raft password": (state / "raft.key").read_bytes(),
               "secrets key": (state / "secrets.key").read_bytes()}
    assert b"PRIVATE KEY" in secrets["tls key"]                    # in clear before autolock

    out = lab.shoal("manager1", "swarm", "update", "--autolock=true").stdout
    key = re.search(r"SWMKEY-1-\S+", out).group(0)
    assert "shoal swarm unlock" in out
    assert lab.shoal("manager1", "swarm", "unlock-key", "-q").stdout.strip() == key
    wait_for(lambda: (state / "dek.locked").exists(), 30, 0.2, "the manager to lock its key files")

    lab.stop("manager1")
    lab.start("manager1")
    info = json.loads(lab.shoal("manager1", "info", "--format", "json").stdout)
    assert info["localNodeState"] == "locked"
    refused = lab.shoal("manager1", "node", "ls", check=False)
    assert refused.returncode != 0 and "needs to be unlocked" in refused.stderr

    raw = every_file(state)
    for what, value in {**secrets, "unlock key": key.encode()}.items():
        assert value not in raw, f"{what} in clear in the state directory"
    assert b"PRIVATE KEY" not in raw                                 # neither the TLS key nor the CA key

    wrong = unlock(lab, "SWMKEY-1-" + "A" * 43)
    assert wrong.returncode != 0 and "invalid key" in wrong.stderr
    assert json.loads(lab.shoal("manager1", "info", "--format", "json").stdout)["localNodeState"] == "locked"

    assert unlock(lab, key).returncode == 0
    wait_for(lambda: all(n["Status"] == "Ready" for n in lab.nodes("manager1")) and len(lab.nodes("manager1")) == 2,
             60, 0.5, "every node ready after the unlock")
    again = unlock(lab, key)
    assert again.returncode != 0 and "not locked" in again.stderr


def test_rotating_the_key_then_turning_autolock_off(lab):
    old = lab.shoal("manager1", "swarm", "unlock-key", "-q").stdout.strip()
    out = lab.shoal("manager1", "swarm", "unlock-key", "--rotate").stdout
    assert out.startswith("Successfully rotated manager unlock key.")
    new = re.search(r"SWMKEY-1-\S+", out).group(0)
    assert new != old
    lab.shoal("manager1", "swarm", "update", "--autolock=false")
    state = lab.host("manager1").state_dir
    wait_for(lambda: not (state / "dek.locked").exists(), 30, 0.2, "the manager to unlock its key files")
    result = lab.shoal("manager1", "swarm", "unlock-key", check=False)
    assert result.returncode != 0 and "no unlock key is set" in result.stderr
