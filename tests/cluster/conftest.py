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

import os

import pytest

from shoal.lab import Lab
from tests.support.labs import lab_name, require_lab_host


@pytest.fixture(scope="module")
def lab_factory(request: pytest.FixtureRequest):
    """`make(managers=3, workers=2, cluster=True) -> Lab`: builds a lab named after the module."""
    require_lab_host()
    made: list[Lab] = []

    def make(managers: int = 3, workers: int = 2, cluster: bool = True, **up_options) -> Lab:
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


@pytest.fixture(scope="module")
def image(lab: Lab) -> str:
    """The busybox image the lab pushed to its registry (shoal/lab/registry.py)."""
    return f"{lab.registry}/shoal/busybox:latest"
