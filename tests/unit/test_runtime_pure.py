"""Pure parts of agent_runtime: mount plan, capability sets, spec JSON and validation, image config merge."""

import pytest

from agent_runtime import capabilities
from agent_runtime.errors import InvalidArgument
from agent_runtime.imageconfig import DEFAULT_PATH, merge_process
from agent_runtime.mounts import MASKED_PATHS, READONLY_PATHS, UserMount, plan_mounts
from agent_runtime.spec import ContainerSpec, Mount, Resources, signal_number, validate_spec


def targets(ops, kind=None):
    return [op["target"] for op in ops if kind is None or op["kind"] == kind]


def test_docker_default_caps_match_dockers_capeff():
    assert capabilities.cap_mask(capabilities.effective_caps([], [])) == 0xA80425FB


@pytest.mark.parametrize("add,drop,privileged,expect_in,expect_out", [
    (["NET_ADMIN"], [], False, ["NET_ADMIN", "CHOWN"], ["SYS_ADMIN"]),
    ([], ["chown", "CAP_KILL"], False, ["SETUID"], ["CHOWN", "KILL"]),
    (["NET_BIND_SERVICE"], ["ALL"], False, ["NET_BIND_SERVICE"], ["CHOWN", "SETUID"]),
    ([], [], True, ["SYS_ADMIN", "BPF"], []),
])
def test_effective_caps(add, drop, privileged, expect_in, expect_out):
    got = capabilities.names(capabilities.cap_mask(capabilities.effective_caps(add, drop, privileged)))
    assert all(c in got for c in expect_in) and not any(c in got for c in expect_out)


def test_unknown_capability_is_refused():
    with pytest.raises(InvalidArgument, match="NET_FOO"):
        capabilities.effective_caps(["NET_FOO"], [])


def test_mount_plan_order_and_masks():
    ops = plan_mounts([UserMount("bind", "/data/sub", "/h/sub"), UserMount("bind", "/data", "/h/d", read_only=True),
                       UserMount("tmpfs", "/run", tmpfs_size_bytes=1 << 20)])
    ts = targets(ops)
    assert ts[:2] == ["/proc", "/dev"]
    assert ts.index("/data") < ts.index("/data/sub")          # parents first
    assert ts.index("/sys") < ts.index("/data")               # kernel filesystems before user mounts
    assert min(ts.index(p) for p in MASKED_PATHS) > ts.index("/data/sub")  # masks last
    data = next(op for op in ops if op["target"] == "/data")
    assert data["flags"] == ["bind", "rec", "ro"]
    run = next(op for op in ops if op["target"] == "/run")
    assert run["fstype"] == "tmpfs" and "size=1048576" in run["data"]
    sysfs = next(op for op in ops if op["target"] == "/sys")
    assert "ro" in sysfs["flags"]
    assert set(targets(ops, "readonly")) == set(READONLY_PATHS)
    assert "/dev/null" in targets(ops, "mknod")


def test_privileged_mount_plan_has_rw_sys_and_no_masks():
    ops = plan_mounts([], privileged=True)
    assert not targets(ops, "mask") and not targets(ops, "readonly")
    assert "ro" not in next(op for op in ops if op["target"] == "/sys")["flags"]


def test_spec_json_round_trip_uses_docker_names():
    spec = ContainerSpec(image="x", command=["a"], mounts=[Mount("tmpfs", "/t", tmpfs_size_bytes=5)],
                         resources=Resources(nano_cpus=500_000_000, memory_bytes=64 << 20), cap_add=["NET_ADMIN"])
    data = spec.to_json()
    assert data["Cmd"] == ["a"] and data["Resources"]["Memory"] == 64 << 20 and data["Resources"]["NanoCpus"]
    assert data["Mounts"][0]["TmpfsSizeBytes"] == 5 and data["CapAdd"] == ["NET_ADMIN"]
    assert ContainerSpec.from_json(data) == spec


@pytest.mark.parametrize("data,field", [
    ({"Image": "x", "Bogus": 1}, "Bogus"),
    ({"Image": "x", "Cmd": "true"}, "Cmd"),
    ({"Image": "x", "Resources": {"Memory": "lots"}}, "Memory"),
])
def test_spec_from_json_names_the_bad_field(data, field):
    with pytest.raises(InvalidArgument, match=field):
        ContainerSpec.from_json(data)


@pytest.mark.parametrize("spec,field", [
    (ContainerSpec(image="x", resources=Resources(memory_bytes=1024)), "Memory"),
    (ContainerSpec(image="x", resources=Resources(memory_bytes=64 << 20, memory_reservation_bytes=128 << 20)),
     "MemoryReservation"),
    (ContainerSpec(image="x", mounts=[Mount("bind", "/t", "relative")]), "Source"),
    (ContainerSpec(image="x", mounts=[Mount("bind", "/t/../etc", "/x")]), "Target"),
    (ContainerSpec(image="x", stop_signal="SIGNOPE"), "signal"),
    (ContainerSpec(image="x", env=["NOEQUALS"]), "Env"),
])
def test_validate_spec_refuses(spec, field):
    with pytest.raises(InvalidArgument, match=field):
        validate_spec(spec)


def test_signal_names():
    assert signal_number("TERM") == signal_number("SIGTERM") == signal_number("15") == 15


IMAGE = {"config": {"Env": ["PATH=/bin", "A=1"], "Entrypoint": ["/ep"], "Cmd": ["c1"], "WorkingDir": "/w",
                    "User": "app", "StopSignal": "SIGQUIT"}}


@pytest.mark.parametrize("spec,args", [
    (ContainerSpec(image="i"), ["/ep", "c1"]),
    (ContainerSpec(image="i", command=["x"]), ["/ep", "x"]),
    (ContainerSpec(image="i", entrypoint=["sh"], command=["-c", "y"]), ["sh", "-c", "y"]),
    (ContainerSpec(image="i", entrypoint=[], command=["z"]), ["z"]),
])
def test_merge_process_follows_docker(spec, args):
    assert merge_process(spec, IMAGE, "f" * 64).args == args


def test_merge_env_workdir_user_and_defaults():
    p = merge_process(ContainerSpec(image="i", env=["A=2", "B=3"]), IMAGE, "a" * 64)
    assert p.env == ["PATH=/bin", "A=2", "B=3"] and p.cwd == "/w" and p.user == "app"
    assert p.stop_signal == "SIGQUIT" and p.hostname == "a" * 12
    bare = merge_process(ContainerSpec(image="i", command=["x"]), {}, "b" * 64)
    assert bare.env == [DEFAULT_PATH] and bare.cwd == "/" and bare.stop_signal == "SIGTERM"
    with pytest.raises(InvalidArgument, match="no command"):
        merge_process(ContainerSpec(image="i"), {}, "c" * 64)
