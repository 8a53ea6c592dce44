"""The files a production install uses, checked by the tools that consume them: the systemd units
(systemd-analyze verify, and its offline security score for shoald) and the Vagrantfile (vagrant
validate, for libvirt and for VirtualBox's provider-independent settings). `make install` installs
both tools; they need no running systemd, libvirt or VirtualBox."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "deploy" / "systemd").glob("*.service"))


@pytest.fixture
def units(tmp_path) -> Path:
    """The units with /opt/shoal replaced by this checkout, as provision.sh does for --prefix, so the
    ExecStart programs exist (verify checks that)."""
    prefix = Path(sys.prefix).parent
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/shoal", str(prefix)))
    return tmp_path


def test_there_are_two_units():
    assert [u.name for u in UNITS] == ["shoal-runtimed.service", "shoald.service"]


def test_units_pass_systemd_analyze_verify(units):
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: make install installs the systemd package"
    result = subprocess.run([tool, "verify", "--man=no", *(str(units / u.name) for u in UNITS)],
                            capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values too: its warnings are the verdict.
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_units_are_type_notify_and_shoald_restarts_never_touch_containers():
    runtimed, shoald = (u.read_text() for u in UNITS)
    for text in (runtimed, shoald):
        assert "Type=notify" in text and re.search(r"^Restart=always$", text, re.M)
    assert "KillMode=process" in runtimed and "Delegate=yes" in runtimed
    assert "Requires=shoal-runtimed" not in shoald  # a runtime restart must not stop shoald


def test_shoald_unit_is_hardened(units):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(units / "shoald.service")],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for shoald.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 3.0, result.stdout


@pytest.mark.parametrize("provider,extra", [("libvirt", []), ("virtualbox", ["--ignore-provider"])])
def test_vagrantfile_validates(provider, extra, tmp_path):
    tool = shutil.which("vagrant")
    assert tool, "vagrant is missing: make install installs it"
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path), "VAGRANT_DEFAULT_PROVIDER": provider,
           "VAGRANT_CHECKPOINT_DISABLE": "1"}
    result = subprocess.run([tool, "validate", *extra], cwd=REPO / "deploy", env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "validated successfully" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("env,message", [({"SHOAL_MANAGERS": "0"}, "SHOAL_MANAGERS must be 1..9"),
                                         ({"SHOAL_SUBNET": "10.0"}, "SHOAL_SUBNET must be three octets")])
def test_vagrantfile_refuses_bad_settings(env, message, tmp_path):
    result = subprocess.run(["vagrant", "validate"], cwd=REPO / "deploy",
                            env={**os.environ, "VAGRANT_HOME": str(tmp_path), "VAGRANT_DEFAULT_PROVIDER": "libvirt",
                                 "VAGRANT_CHECKPOINT_DISABLE": "1", **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and message in result.stdout + result.stderr
