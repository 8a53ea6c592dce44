"""deploy/provision.sh, the script that provisions a real server (and every Vagrant VM), run inside
lab hosts: install from a local wheel directory, form the swarm with tokens passed through a
directory, and a second run that changes nothing. The systemd step is the only one skipped
(--no-daemons: the lab runs the daemons); the VM test (`make vagrant-test`) runs that one."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "deploy" / "provision.sh"


@pytest.fixture(scope="module")
def lab(lab_factory):
    # Daemons running, no swarm: two fresh "servers".
    return lab_factory(managers=1, workers=1, form=False)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """The project's wheel and its pinned dependencies, built here where the package index is
    reachable; lab hosts have no route to it, as a server behind a firewall."""
    out = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    constraints = REPO / "constraints.txt"
    extra = ["-c", str(constraints)] if constraints.exists() else []
    subprocess.run([*pip, "wheel", "-w", str(out), *extra, str(REPO)], check=True, timeout=600)
    subprocess.run([*pip, "download", "-d", str(out), "setuptools>=61", "wheel"], check=True, timeout=300)
    return out


def provision(lab, host: str, root: Path, wheels: Path, *extra: str) -> subprocess.CompletedProcess:
    role = "manager" if host.startswith("manager") else "worker"
    argv = ["bash", str(PROVISION), "--role", role, "--address", lab.address(host),
            "--join", lab.address("manager1"), "--source", str(REPO), "--tokens", str(root / "tokens"),
            "--prefix", str(root / host / "opt"), "--bin-dir", str(root / host / "bin"),
            "--socket", str(lab.host(host).socket), "--wheels", str(wheels), "--no-daemons", *extra]
    return lab.exec(host, argv, timeout=900)


def test_provision_forms_the_swarm_and_a_second_run_changes_nothing(lab, wheels, tmp_path_factory):
    root = tmp_path_factory.mktemp("provision")
    first = provision(lab, "manager1", root, wheels, "--first")
    assert "swarm init" in first.stdout
    tokens = root / "tokens"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o700
    assert stat.S_IMODE((tokens / "worker").stat().st_mode) == 0o600, "join tokens must not be world-readable"
    assert (tokens / "worker").read_text().startswith("SHTKN-1-")

    joined = provision(lab, "worker1", root, wheels)
    assert "swarm join as worker" in joined.stdout
    # The installed CLI (not the test's) answers from the host's own daemon.
    installed = root / "worker1" / "opt" / ".venv" / "bin" / "shoal"
    assert installed.exists() and os.access(installed, os.X_OK)
    nodes = lab.nodes("manager1")
    assert sorted(n["Hostname"] for n in nodes) == ["manager1", "worker1"]

    again = provision(lab, "worker1", root, wheels)
    assert "already in the swarm" in again.stdout and "swarm join" not in again.stdout
    assert [n["ID"] for n in lab.nodes("manager1")] == [n["ID"] for n in nodes]
    # A server install carries no test tools.
    site = next((root / "worker1" / "opt" / ".venv" / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("pytest*")) and not list(site.glob("hypothesis*"))


def test_provision_refuses_bad_arguments_and_changes_nothing(lab, tmp_path):
    result = lab.exec("manager1", ["bash", str(PROVISION), "--role", "boss", "--address", "x", "--join", "y"],
                      check=False)
    assert result.returncode == 1 and "--role must be manager or worker" in result.stderr
    result = lab.exec("manager1", ["bash", str(PROVISION), "--bogus"], check=False)
    assert result.returncode == 1 and "unknown argument --bogus" in result.stderr
