"""``--security-opt`` as docker reads it: seccomp=unconfined|builtin|FILE (the file's compacted
JSON is sent), no-new-privileges, clear errors for anything shoal cannot apply; services carry it
as SwarmKit's Privileges and the worker turns it back into the runtime's ContainerSpec.seccomp."""

from __future__ import annotations

import json

import click
import pytest

from proto import objects_pb2 as pb
from shoal.cli.security import parse_security_opts
from shoal.cli.service_flags import build_spec, update_spec
from worker.executor import container_spec

PROFILE = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}


def test_options(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(PROFILE, indent=4))
    assert parse_security_opts([]).seccomp is None
    assert parse_security_opts(["seccomp=unconfined"]).seccomp == "unconfined"
    assert parse_security_opts(["seccomp:builtin"]).seccomp == ""
    got = parse_security_opts([f"seccomp={path}", "no-new-privileges"])
    assert json.loads(got.seccomp) == PROFILE and "\n" not in got.seccomp and got.no_new_privileges is True
    assert parse_security_opts(["no-new-privileges=false"]).no_new_privileges is False


@pytest.mark.parametrize("opt, match", [
    ("seccomp", "Invalid --security-opt"),
    ("seccomp=/nonexistent.json", r"opening seccomp profile \(/nonexistent.json\) failed"),
    ("apparmor=docker-default", "does not apply AppArmor"),
    ("label=disable", "SELinux"),
    ("bogus=1", "invalid --security-opt"),
    ("no-new-privileges=maybe", "true or false"),
])
def test_bad_options_are_refused(opt, match):
    with pytest.raises(click.BadParameter, match=match):
        parse_security_opts([opt])


def test_bad_profile_file_is_refused(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"defaultAction": "SCMP_ACT_MAYBE"}')
    with pytest.raises(click.BadParameter, match="unknown action"):
        parse_security_opts([f"seccomp={path}"])


def _task(spec: pb.ServiceSpec) -> pb.Task:
    return pb.Task(id="t1", service_id="s1", node_id="n1", spec=spec.task)


def test_service_privileges_reach_the_runtime_spec(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(PROFILE))
    spec = build_spec("busybox", [], {"security_opt": ("seccomp=unconfined",)})
    assert spec.task.container.privileges.seccomp.mode == pb.Privileges.SeccompOpts.UNCONFINED
    assert container_spec(_task(spec)).seccomp == "unconfined"
    spec = update_spec(spec, {"security_opt": (f"seccomp={path}", "no-new-privileges")})
    runtime = container_spec(_task(spec))
    assert json.loads(runtime.seccomp) == PROFILE and runtime.no_new_privileges
    spec = update_spec(spec, {"security_opt": ("seccomp=builtin",)})
    assert container_spec(_task(spec)).seccomp == "" and not spec.task.container.privileges.seccomp.profile
    assert container_spec(_task(build_spec("busybox", [], {}))).seccomp == ""
