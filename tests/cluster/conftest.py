"""Fixtures for cluster tests: labs built with shoal-lab, one unique name per test module.

    def test_nodes(lab):                      # 3 managers + 2 workers, swarm formed, all Ready
        assert len(lab.nodes()) == 5

A module that wants another shape overrides `lab` with the factory:

    @pytest.fixture(scope="module")
    def lab(lab_factory):
        return lab_factory(managers=1, workers=1, cluster=False)

Every lab a module made is brought down when the module ends, even if its tests failed.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil

import pytest

from shoal.lab import Lab
from shoal.lab.lab import shoald_available

REQUIRED_PROGRAMS = ("ip", "nsenter", "docker-registry")


def lab_name(module_name: str, index: int) -> str:
    """A lab name unique to this test module and pytest process: a readable hint plus a hash."""
    hint = re.sub(r"[^a-z0-9]+", "-", module_name.rsplit(".", 1)[-1].removeprefix("test_").lower())[:10]
    digest = hashlib.sha1(f"{module_name}:{os.getpid()}:{index}".encode()).hexdigest()[:6]
    return f"t-{hint.strip('-') or 'lab'}-{digest}"


def require_lab_host() -> None:
    """Skip unless this machine can run labs (root, iproute2, nsenter, docker-registry)."""
    if os.geteuid() != 0:
        pytest.skip("shoal-lab needs root")
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.skip(f"shoal-lab needs {', '.join(missing)}")


@pytest.fixture(scope="module")
def lab_factory(request: pytest.FixtureRequest):
    """`make(managers=3, workers=2, cluster=True) -> Lab`: builds a lab named after the module."""
    require_lab_host()
    made: list[Lab] = []

    def make(managers: int = 3, workers: int = 2, cluster: bool = True, **up_options) -> Lab:
        if cluster and not shoald_available():
            pytest.skip("shoald (module shoal.daemon) is not available yet")
        lab = Lab(lab_name(request.module.__name__, len(made)))
        made.append(lab)
        up_options.setdefault("log_level", os.environ.get("SHOAL_LAB_LOG_LEVEL") or None)
        return lab.up(managers, workers, cluster=cluster, **up_options)

    try:
        yield make
    finally:
        errors = []
        if os.environ.get("SHOAL_KEEP_LABS") == "1":  # debugging: keep them; `shoal-lab down --name N` later
            made = []
        for lab in reversed(made):
            try:
                lab.down()
            except Exception as exc:  # bring the others down too, then report
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="module")
def lab(lab_factory) -> Lab:
    """A 3-manager, 2-worker lab with its swarm formed and every node Ready."""
    return lab_factory()
