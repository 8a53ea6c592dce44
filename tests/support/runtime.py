"""Helpers for tests that run shoal-runtimed and containers (tests/privileged): the image, its
rootfs, cgroups, mounts, and running a container to its end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from agent_runtime.api import ContainerSpec

VENV_BIN = Path(sys.executable).parent
IMAGE = "shoal/busybox:latest"


def build_busybox_rootfs(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for d in ("proc", "sys", "dev", "etc", "tmp", "root", "home/app", "var"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if not (root / "bin" / applet).exists():
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
                                     "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n")


def cgroup_dirs(name: str) -> list[Path]:
    """Every directory called ``name`` below the cgroup mounts (any depth up to 3)."""
    found = []
    for base in Path("/sys/fs/cgroup").iterdir():
        for depth in ("*", "*/*", "*/*/*"):
            found += [p for p in base.glob(depth) if p.name == name and p.is_dir()]
    return found


def run_to_exit(client, **kw):
    """Run a container to its end; returns (info, stdout text, stderr text)."""
    cid = client.create(ContainerSpec(image=IMAGE, **kw))
    client.start(cid)
    client.wait(cid)
    logs = list(client.logs(cid))
    out = "".join(r.log for r in logs if r.stream == "stdout")
    err = "".join(r.log for r in logs if r.stream == "stderr")
    return client.inspect(cid), out, err


def cli_env(socket: str) -> dict[str, str]:
    """The environment of a `shoal` CLI process talking to the shoal-runtimed at ``socket``."""
    return dict(os.environ, SHOAL_RUNTIME_HOST=f"unix://{socket}")


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def mounted(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())
