"""``shoal run`` end to end against a real shoal-runtimed: the container's output and exit code
pass through, ``--rm`` leaves nothing behind by the time the CLI returns (as ``docker run --rm``:
the next ``ps -a`` does not list it), and the whole command, calls included, loads none of the
heavy modules (its start-up is most of its time: docs/front-door.md).

Needs root; uses the session runtimed of conftest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.cli_imports import heavy_in
from tests.support.runtime import IMAGE, VENV_BIN

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]

# The CLI as its entry point runs it, noting at exit which modules it loaded.
RECORDING = ("import atexit, json, sys\n"
             "path = sys.argv.pop(1)\n"
             "atexit.register(lambda: open(path, 'w').write(json.dumps(sorted(sys.modules))))\n"
             "from shoal.cli.main import main\n"
             "main()\n")


def _env(runtimed) -> dict:
    return dict(os.environ, SHOAL_RUNTIME_HOST=f"unix://{runtimed.socket}")


def test_run_rm_passes_output_and_exit_code_and_is_gone_when_it_returns(runtimed, client):
    before = {c.id for c in client.list(all=True)}
    done = subprocess.run([str(VENV_BIN / "shoal"), "run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3"],
                          env=_env(runtimed), capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert {c.id for c in client.list(all=True)} == before


def test_run_without_rm_keeps_the_exited_container(runtimed, client):
    before = {c.id for c in client.list(all=True)}
    done = subprocess.run([str(VENV_BIN / "shoal"), "run", IMAGE, "true"], env=_env(runtimed), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (left,) = [c for c in client.list(all=True) if c.id not in before]
    assert left.state.status == "exited" and left.state.exit_code == 0
    client.remove(left.id)


def test_run_loads_nothing_heavy(runtimed, tmp_path):
    record = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", RECORDING, str(record), "run", "--rm", IMAGE, "true"],
                          env=_env(runtimed), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    modules = json.loads(record.read_text())
    assert "agent_runtime.unixhttp" in modules      # it did call runtimed
    assert not heavy_in(modules)
