"""Seccomp in shoal-runtimed against the real kernel: Docker's default profile confines every
container that is not privileged (filter mode 2, no user namespaces, no mount even for a user
namespace's root), ``unconfined`` and ``privileged`` run without a filter, a custom profile in
Docker's format is applied, and ordinary workloads still run. The filter covers exec too.

Needs root; uses the session runtimed of conftest.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from agent_runtime.api import ContainerSpec, InvalidArgument
from tests.support.runtime import IMAGE, VENV_BIN, run_to_exit, sh

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]

STATUS = "grep '^Seccomp:' /proc/self/status"


def test_default_profile_filters_and_blocks_user_namespaces(client):
    info, out, err = run_to_exit(client, command=sh(
        f"{STATUS}; unshare -U -r -m sh -c 'mount -t tmpfs none /mnt && echo MOUNTED' 2>&1; echo unshare=$?; "
        "unshare -U true 2>&1; echo plain=$?"))
    assert info.state.exit_code == 0, (out, err)
    assert "Seccomp:\t2" in out
    assert "MOUNTED" not in out
    assert "unshare=0" not in out and "plain=0" not in out
    assert "Operation not permitted" in out


def test_benign_workload_runs_under_the_filter(client):
    info, out, err = run_to_exit(client, init=True, command=sh(
        "sleep 0.1 & wait; echo hi | wc -c; wget -q -O- http://127.0.0.1:1/ 2>&1 | head -c0; "
        "ps -o pid,comm | wc -l; date +%Y >/dev/null && echo done"))
    assert info.state.exit_code == 0, (out, err)
    assert out.split()[0] == "3" and out.strip().endswith("done")


def test_unconfined_and_privileged_have_no_filter(client):
    _, out, _ = run_to_exit(client, seccomp="unconfined", command=sh(STATUS))
    assert "Seccomp:\t0" in out
    info, out, _ = run_to_exit(client, privileged=True, command=sh(
        f"{STATUS}; unshare -U -r true && echo USERNS"))
    assert "Seccomp:\t0" in out and "USERNS" in out, out


def test_exec_runs_under_the_containers_filter(client):
    cid = client.create(ContainerSpec(image=IMAGE, command=["sleep", "60"]))
    client.start(cid)
    result = client.exec(cid, ["sh", "-c", f"{STATUS}; unshare -U true || echo DENIED"])
    assert "Seccomp:\t2" in result.stdout and "DENIED" in result.stdout


def test_no_new_privileges_with_the_filter(client):
    info, out, _ = run_to_exit(client, no_new_privileges=True, user="app",
                               command=sh(f"{STATUS}; grep NoNewPrivs /proc/self/status"))
    assert info.state.exit_code == 0
    assert "Seccomp:\t2" in out and "NoNewPrivs:\t1" in out


def test_custom_profile_in_dockers_format(client):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    info, out, _ = run_to_exit(client, seccomp=json.dumps(profile), command=sh(
        f"{STATUS}; mkdir /tmp/x 2>&1; echo rc=$?; touch /tmp/y && echo TOUCHED"))
    assert "Seccomp:\t2" in out and "Permission denied" in out and "rc=1" in out and "TOUCHED" in out


def test_profile_too_large_for_the_kernel_is_refused_at_create(client):
    rules = [{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": i, "op": "SCMP_CMP_EQ"}]}
             for i in range(5000)]
    before = {c.id for c in client.list(all=True)}
    with pytest.raises(InvalidArgument, match="BPF instructions; the kernel takes at most 4096"):
        client.create(ContainerSpec(image=IMAGE, command=["true"], seccomp=json.dumps(
            {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules})))
    assert {c.id for c in client.list(all=True)} == before


@pytest.mark.parametrize("profile, match", [
    ("not json", "neither 'unconfined' nor a JSON profile"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "unknown action"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
     '"args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}', "index"),
])
def test_bad_profile_is_refused_at_create(client, profile, match):
    before = {c.id for c in client.list(all=True)}
    with pytest.raises(InvalidArgument, match=match):
        client.create(ContainerSpec(image=IMAGE, command=["true"], seccomp=profile))
    assert {c.id for c in client.list(all=True)} == before


def _shoal_run(runtimed, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SHOAL_RUNTIME_HOST=f"unix://{runtimed.socket}")
    return subprocess.run([str(VENV_BIN / "shoal"), "run", "--rm", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_shoal_run_security_opt_and_privileged(runtimed, tmp_path):
    assert "Seccomp:\t2" in _shoal_run(runtimed, IMAGE, "sh", "-c", STATUS).stdout
    assert "Seccomp:\t0" in _shoal_run(runtimed, "--security-opt", "seccomp=unconfined", IMAGE,
                                       "sh", "-c", STATUS).stdout
    done = _shoal_run(runtimed, "--privileged", IMAGE, "sh", "-c", f"{STATUS}; unshare -U -r true && echo USERNS")
    assert done.returncode == 0 and "Seccomp:\t0" in done.stdout and "USERNS" in done.stdout, done.stderr
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    done = _shoal_run(runtimed, "--security-opt", f"seccomp={profile}", IMAGE, "mkdir", "/tmp/x")
    assert done.returncode == 1 and "Operation not permitted" in done.stderr
    bad = _shoal_run(runtimed, "--security-opt", "seccomp=/nonexistent.json", IMAGE, "true")
    assert bad.returncode != 0 and "opening seccomp profile (/nonexistent.json) failed" in bad.stderr
