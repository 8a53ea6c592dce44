"""The configuration file as the daemons use it: refused at start with the reason, reloaded on SIGHUP."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from agent_runtime.logformat import parse_logfmt


@pytest.mark.parametrize("module", ["shoal.daemon", "agent_runtime.server"])
def test_a_bad_file_stops_the_daemon_before_it_starts_anything(module, tmp_path):
    config = tmp_path / "daemon.json"
    config.write_text('{"log-level": "info", "storage-driver": "overlay2"}')
    result = subprocess.run([sys.executable, "-m", module, "--config-file", str(config),
                             "--socket", str(tmp_path / "s.sock")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"unable to configure the daemon with file {config}" in result.stderr
    assert "storage-driver" in result.stderr
    assert not (tmp_path / "s.sock").exists()


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


def test_shoald_takes_data_root_and_log_settings_from_the_file_and_reloads_on_sighup(tmp_path):
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"data-root": str(tmp_path / "root"), "log-level": "warning"}))
    sock, log = tmp_path / "shoald.sock", tmp_path / "shoald.log"
    env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_LOG_LEVEL", "SHOAL_LOG_FORMAT")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shoal.daemon", "--config-file", str(config),
                                 "--socket", str(sock)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(sock.exists, "shoald's socket")
        # A broken file on SIGHUP is reported and changes nothing.
        config.write_text("{broken")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration not reloaded" in log.read_text(), "the refusal of a broken file")
        # A good one applies: info level and JSON lines from now on.
        config.write_text(json.dumps({"data-root": str(tmp_path / "root"), "log-level": "info",
                                      "log-format": "json", "insecure-registries": ["192.0.2.1:5000"]}))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text(), "the reload")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    lines = log.read_text().splitlines()
    refusal = parse_logfmt(next(line for line in lines if "configuration not reloaded" in line))
    assert refusal["level"] == "error" and "invalid JSON" in refusal["msg"]
    reloaded = json.loads(next(line for line in lines if "configuration reloaded" in line))
    assert reloaded["insecure_registries"] == "192.0.2.1:5000"
    assert (tmp_path / "root" / "state").is_dir()
