"""One shoal-runtimed for the privileged runtime tests: temp root, unique cgroup parent, stopped by PID.

Also builds a busybox root filesystem and imports it as ``shoal/busybox:latest`` into that
runtimed's image store. Everything is removed at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.support.runtime import IMAGE, VENV_BIN, build_busybox_rootfs, cgroup_dirs


class Runtimed:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.socket = str(base / "runtimed.sock")
        self.parent = f"shoal-test-{os.getpid()}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.base / "runtimed.log", "ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "shoal-runtimed"), "--root", str(self.root), "--socket", self.socket,
             "--cgroup-parent", self.parent, "--log-level", "INFO"], stdout=log, stderr=log)
        from agent_runtime.api import RuntimeClient, ShoalRuntimeError
        for _ in range(200):
            try:
                RuntimeClient(self.socket).version()
                return
            except ShoalRuntimeError:
                time.sleep(0.05)
        raise RuntimeError("shoal-runtimed did not come up; see " + str(self.base / "runtimed.log"))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
            self.proc = None

    def client(self):
        from agent_runtime.api import RuntimeClient
        return RuntimeClient(self.socket)


@pytest.fixture(scope="session")
def runtimed(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = tmp_path_factory.mktemp("runtimed")
    rootfs = base / "rootfs"
    build_busybox_rootfs(rootfs)
    with tarfile.open(base / "busybox.tar", "w") as tar:
        tar.add(rootfs, arcname=".")
    rt = Runtimed(base)
    rt.rootfs = rootfs
    rt.start()
    rt.client().image_import(str(base / "busybox.tar"), IMAGE)
    try:
        yield rt
    finally:
        if rt.proc is None:
            rt.start()
        client = rt.client()
        for c in client.list(all=True):
            client.remove(c.id, force=True)
        for v in client.volumes():
            client.volume_remove(v.name)
        rt.stop()
        for d in sorted(cgroup_dirs(rt.parent), key=lambda p: len(p.parts), reverse=True):
            d.rmdir()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def client(runtimed):
    c = runtimed.client()
    before = {x.id for x in c.list(all=True)}
    yield c
    for x in c.list(all=True):
        if x.id not in before:
            c.remove(x.id, force=True)
