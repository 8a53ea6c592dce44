"""The five public stack files (tests/stacks/public, origins in ORIGINS.md) deployed on a 1-manager
lab, each unchanged except its image names, with every service converging (`stack deploy
--detach=false` returns only then) and running: one stack at a time (two of them publish port 5000).

Every image becomes the lab's "stub" image: the lab's busybox with ENTRYPOINT `sh -c 'trap ...;
sleep ... & wait'`, which ignores the arguments a file's `command:` passes (the real applications are not in
the lab's registry), so no file's command needs changing. The files were written for nodes that
run Docker: they bind-mount /var/run/docker.sock and /var/lib/docker/volumes, which a node without
Docker does not have (Swarm fails such a task as Shoal does: the bind source does not exist). The
test creates exactly those that are missing, empty, and removes them after. Files the stacks read
(configs, a secret) are written beside the copy with placeholder content.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

HERE = Path(__file__).resolve().parents[1] / "stacks" / "public"
FILES = sorted(p.name for p in HERE.glob("*.yml"))
DOCKER_PATHS = (Path("/var/run/docker.sock"), Path("/var/lib/docker/volumes"))
_IMAGE = re.compile(r"^(\s+image:\s*).*$", re.MULTILINE)      # commented-out lines (#) do not match


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=0)


@pytest.fixture(scope="module")
def stub(lab, tmp_path_factory) -> str:
    """The stub image, imported on manager1 and pushed to the lab registry."""
    from shoal.lab import procs
    spec = importlib.util.spec_from_file_location(
        "build_busybox", Path(__file__).resolve().parents[2] / "deploy" / "images" / "build_busybox.py")
    builder = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_busybox", builder)      # its dataclasses look their module up
    spec.loader.exec_module(builder)
    rootfs = tmp_path_factory.mktemp("stub") / "rootfs.tar"
    rootfs.write_bytes(builder.layer_tar(builder.DEFAULT_BUSYBOX))
    ref = f"{lab.registry}/shoal/stub:latest"
    shoal = procs.program("shoal")
    # pid 1 ignores a signal it has no handler for: the trap lets SIGTERM stop it at once
    entrypoint = 'ENTRYPOINT ["sh", "-c", "trap \'exit 0\' TERM; sleep 2147483647 & wait", "stub"]'
    lab.exec("manager1", [shoal, "image", "import", "-c", entrypoint, str(rootfs), ref], timeout=120)
    lab.exec("manager1", [shoal, "image", "push", "-q", ref], timeout=120)
    return ref


@pytest.fixture(scope="module")
def docker_paths():
    made = []
    for path in DOCKER_PATHS:
        if not os.path.lexists(path):
            if path.suffix == ".sock":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True)
            made.append(path)
    yield
    for path in reversed(made):
        if path.is_dir():
            shutil.rmtree(path)
            if path.parent == Path("/var/lib/docker") and not any(path.parent.iterdir()):
                path.parent.rmdir()
        else:
            path.unlink()


def _project(tmp_path: Path, name: str, image: str) -> Path:
    """A copy of the file with its images replaced, and the files it reads."""
    text = (HERE / name).read_text()
    copy = tmp_path / name
    copy.write_text(_IMAGE.sub(lambda m: m.group(1) + image, text))
    for source in re.findall(r"^\s+file:\s*(\S+)\s*$", text, re.MULTILINE):
        target = tmp_path / source
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("placeholder content\n")
    return copy


@pytest.mark.parametrize("name", FILES)
def test_a_public_stack_converges_with_only_its_images_changed(lab, stub, docker_paths, tmp_path, name):
    from shoal.lab import procs
    stack = Path(name).stem.split("-")[0]
    copy = _project(tmp_path, name, stub)
    changed = [(a, b) for a, b in zip((HERE / name).read_text().splitlines(), copy.read_text().splitlines()) if a != b]
    assert changed and all(re.match(r"^\s+image:", a) for a, _ in changed)      # only image lines differ
    shoal = procs.program("shoal")
    try:
        lab.exec("manager1", [shoal, "stack", "deploy", "--detach=false", "-c", str(copy), stack], timeout=300)
        rows = [json.loads(line) for line in lab.shoal("manager1", "stack", "services", "--format", "json",
                                                       stack).stdout.splitlines()]
        assert rows, f"stack {stack} has no services"
        for row in rows:
            running, _, desired = row["Replicas"].partition("/")
            assert running == desired and int(desired) >= 1, row
        tasks = lab.shoal("manager1", "stack", "ps", "--format", "{{.Name}} {{.CurrentState}}",
                          "-f", "desired-state=running", stack).stdout.splitlines()
        assert tasks and all(" Running " in f"{t} " for t in tasks), tasks
    finally:
        lab.exec("manager1", [shoal, "stack", "rm", stack], check=False, timeout=120)
