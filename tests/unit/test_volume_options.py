"""The local driver's options (docker volume create -o, --mount volume-opt, Compose driver_opts)
as runtimed checks and stores them; the mounts themselves are
tests/privileged/test_runtime_options_in_container.py (test_local_volume_options_mount_a_device)."""
from __future__ import annotations

import pytest

from agent_runtime.errors import Conflict, InvalidArgument
from agent_runtime.volumes import VolumeStore, check_options, is_mountpoint
from shoal.cli.containers import run_mount


@pytest.mark.parametrize("options, message", [
    ({"type": "tmpfs", "devcie": "tmpfs"}, 'invalid option: "devcie"'),
    ({"type": "tmpfs"}, 'missing required option: "device"'),
    ({"device": "/dev/sdb1"}, 'missing required option: "type"'),
    ({"o": "size=1m", "device": "tmpfs"}, 'missing required option: "type"'),
    ({"type": "xfs", "device": "/dev/sdb1", "size": "10g"}, "quota size requested but no quota support"),
])
def test_options_are_checked_as_dockerd_does(options, message):
    with pytest.raises(InvalidArgument, match=message):
        check_options(options)


def test_options_are_stored_and_a_different_ask_is_a_conflict(tmp_path):
    store = VolumeStore(tmp_path)
    tmpfs = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert store.create("v", {"a": "b"}, tmpfs).options == tmpfs
    assert store.create("v").options == tmpfs                  # by name only: the volume as it is
    assert store.create("v", options=dict(tmpfs)).options == tmpfs
    with pytest.raises(Conflict, match="volume v already exists with different options"):
        store.create("v", options={"type": "tmpfs", "device": "tmpfs", "o": "size=2m"})
    assert store.create("plain").options == {}
    assert not is_mountpoint(tmp_path / "v" / "_data") and is_mountpoint("/proc")


def test_run_mount_takes_volume_opt():
    mount = run_mount("type=volume,source=v,target=/v,volume-opt=type=tmpfs,volume-opt=device=tmpfs")
    assert mount.volume_options == {"type": "tmpfs", "device": "tmpfs"}
