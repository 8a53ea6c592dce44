"""Files given by value (swarm secrets and configs) in shoal-runtimed against the real kernel: the
container reads them at their targets, read-only, with their owner and mode; runtimed keeps them
on a per-container tmpfs only (never in its on-disk state), across its own restart; removing the
container unmounts the tmpfs.

Needs root; uses the session runtimed of conftest (temp root, own cgroup parent).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from agent_runtime.api import ContainerSpec, File, InvalidArgument
from tests.support.runtime import IMAGE, mounted

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]

SECRET = b"s3cr3t-for-privileged-test\n"
CONFIG = b"listen 8080;\n"


def files() -> list[File]:
    return [File(target="/run/secrets/db", data=base64.b64encode(SECRET).decode(), uid=1000, gid=2000, mode=0o400),
            File(target="/etc/app/app.conf", data=base64.b64encode(CONFIG).decode())]


def on_disk_without(root: Path, needle: bytes, skip: Path) -> list[Path]:
    """Regular files below ``root`` (not below ``skip``, the tmpfs) that contain ``needle``."""
    found = []
    for path in root.rglob("*"):
        if skip in path.parents or path == skip or not path.is_file() or path.is_symlink():
            continue
        try:
            if needle in path.read_bytes():
                found.append(path)
        except OSError:
            pass
    return found


def test_container_sees_its_files_and_runtimed_never_writes_them_to_disk(client, runtimed):
    cid = client.create(ContainerSpec(image=IMAGE, command=["sleep", "60"], files=files()))
    directory = runtimed.root / "containers" / cid
    tmpfs = directory / "files"
    try:
        assert mounted(tmpfs)
        assert all(f.data == "" for f in client.inspect(cid).config.files)     # inspect shows no data
        assert client.inspect(cid).config.files[0].uid == 1000
        assert on_disk_without(runtimed.root, SECRET.strip(), tmpfs) == []     # config.json etc.
        client.start(cid)
        result = client.exec(cid, ["sh", "-c", "cat /run/secrets/db; stat -c '%u %g %a' /run/secrets/db; "
                                               "cat /etc/app/app.conf; stat -c '%u %g %a' /etc/app/app.conf; "
                                               "echo x > /run/secrets/db 2>/dev/null && echo WRITABLE; "
                                               "grep ' /run/secrets/db ' /proc/mounts"])
        lines = result.stdout.splitlines()
        assert lines[0] == SECRET.decode().strip()
        assert lines[1] == "1000 2000 400"
        assert lines[2] == CONFIG.decode().strip()
        assert lines[3] == "0 0 444"
        assert "WRITABLE" not in result.stdout
        assert " tmpfs " in lines[4] and " ro," in lines[4]

        runtimed.stop()     # a restarted runtimed re-adopts the container with its files in place
        runtimed.start()
        again = runtimed.client().exec(cid, ["cat", "/run/secrets/db"])
        assert again.stdout == SECRET.decode()
    finally:
        runtimed.client().remove(cid, force=True)
    assert not mounted(tmpfs)
    assert not directory.exists()


def test_a_container_that_is_not_started_still_releases_its_files(client, runtimed):
    cid = client.create(ContainerSpec(image=IMAGE, command=["true"], files=files()[:1]))
    tmpfs = runtimed.root / "containers" / cid / "files"
    assert mounted(tmpfs)
    client.remove(cid)
    assert not mounted(tmpfs)


def test_bad_files_are_refused_and_leave_no_mount(client, runtimed):
    before = Path("/proc/self/mountinfo").read_text().count(str(runtimed.root))
    with pytest.raises(InvalidArgument, match="not base64"):
        client.create(ContainerSpec(image=IMAGE, command=["true"], files=[File(target="/a", data="%%%")]))
    with pytest.raises(InvalidArgument, match="absolute file path"):
        client.create(ContainerSpec(image=IMAGE, command=["true"], files=[File(target="a", data="")]))
    assert Path("/proc/self/mountinfo").read_text().count(str(runtimed.root)) == before
