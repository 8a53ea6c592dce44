"""``shoal run`` end to end against a real shoal-runtimed: the container's output and exit code
pass through, ``--rm`` leaves nothing behind by the time the CLI returns (as ``docker run --rm``:
the next ``ps -a`` does not list it), and the whole command, calls included, loads none of the
heavy modules, nor click and the typed runtime API when shoal.cli.run_fast takes the command line
(its start-up is most of its time: docs/front-door.md). The click command (an option the fast path does not take) prints
and exits the same.

Needs root; uses the session runtimed of conftest.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.cli_imports import heavy_in
from tests.support.runtime import IMAGE, VENV_BIN, cli_env

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]

# The CLI as its entry point runs it, noting at exit which modules it loaded.
RECORDING = ("import atexit, json, sys\n"
             "path = sys.argv.pop(1)\n"
             "atexit.register(lambda: open(path, 'w').write(json.dumps(sorted(sys.modules))))\n"
             "from shoal.cli.entry import main\n"
             "main()\n")


def _run(runtimed, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "shoal"), "run", *args], env=cli_env(runtimed.socket), capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("click_path", [[], ["--cpu-shares", "0"]], ids=["fast", "click"])
def test_run_rm_passes_output_and_exit_code_and_is_gone_when_it_returns(runtimed, client, click_path):
    before = {c.id for c in client.list(all=True)}
    done = _run(runtimed, "--rm", *click_path, IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert {c.id for c in client.list(all=True)} == before


@pytest.mark.parametrize("click_path", [[], ["--cpu-shares", "0"]], ids=["fast", "click"])
def test_run_of_a_missing_command_is_dockers_127_and_leaves_nothing(runtimed, client, click_path):
    before = {c.id for c in client.list(all=True)}
    done = _run(runtimed, "--rm", *click_path, IMAGE, "no-such-command")
    assert done.returncode == 127 and done.stdout == ""
    assert done.stderr.startswith("Error: cannot start container ") and "no-such-command" in done.stderr
    assert {c.id for c in client.list(all=True)} == before


def test_run_detached_prints_the_id(runtimed, client):
    done = _run(runtimed, "-d", "--rm", "--name", "fast-detached", IMAGE, "sleep", "30")
    assert done.returncode == 0, done.stderr
    cid = done.stdout.strip()
    assert client.inspect("fast-detached").id == cid
    client.remove(cid, force=True)


def test_run_without_rm_keeps_the_exited_container(runtimed, client):
    before = {c.id for c in client.list(all=True)}
    done = subprocess.run([str(VENV_BIN / "shoal"), "run", IMAGE, "true"], env=cli_env(runtimed.socket),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (left,) = [c for c in client.list(all=True) if c.id not in before]
    assert left.state.status == "exited" and left.state.exit_code == 0
    client.remove(left.id)


def test_run_loads_nothing_heavy(runtimed, tmp_path):
    record = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", RECORDING, str(record), "run", "--rm", IMAGE, "true"],
                          env=cli_env(runtimed.socket), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    modules = json.loads(record.read_text())
    assert "agent_runtime.blocking" in modules      # it did call runtimed
    assert not heavy_in(modules) and not {"click", "agent_runtime.api", "dataclasses", "typing"} & set(modules)
