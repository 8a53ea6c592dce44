"""bench/converge.py's report: medians, ranges, the Shoal/Docker ratio, recorded figures marked."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "converge.py"


@pytest.fixture(scope="module")
def converge():
    spec = importlib.util.spec_from_file_location("bench_converge", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_converge"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_converge"]


def test_summary_is_median_and_range(converge):
    assert converge.summary([3.0, 1.0, 2.0]) == "2.000 (1.000-3.000)"
    assert converge.summary([0.4567]) == "0.457"
    assert converge.summary([]) == "-"


def test_ratio_is_shoal_median_over_docker_median(converge):
    assert converge.ratio([1.0, 2.0, 9.0], [4.0, 4.0, 1.0]) == "0.50"
    assert converge.ratio([6.0], [2.0]) == "3.00"
    assert converge.ratio([], [1.0]) == "-"
    assert converge.ratio([1.0], []) == "-"
    assert converge.ratio([1.0], [0.0]) == "-"


def test_report_measured_side_by_side(converge):
    figures = [converge.Figure("create 1", [0.5, 0.4, 0.6], [1.0, 1.0, 1.0]),
               converge.Figure("create 500", [20.0], [])]
    lines = converge.report(figures).splitlines()
    assert lines[0].split() == ["what", "shoal", "s", "docker", "swarm", "s", "shoal/docker"]
    assert lines[1].split() == ["create", "1", "0.500", "(0.400-0.600)", "1.000", "(1.000-1.000)", "0.50"]
    assert lines[2].split() == ["create", "500", "20.000", "-", "-"]
    assert len(lines) == 3  # nothing marked as recorded


def test_report_without_docker_uses_recorded_figures_marked(converge):
    figures = [converge.Figure("create 10", [2.898]), converge.Figure("create 100", [9.0])]
    lines = converge.report(figures, {"create 10": 1.449}).splitlines()
    assert lines[1].split() == ["create", "10", "2.898", "1.449*", "2.00"]
    assert lines[2].split() == ["create", "100", "9.000", "-", "-"]
    assert lines[-1].startswith("* recorded earlier")


def test_state_changes_blame_docker_only_for_its_own(converge):
    before = {"links": {"lo", "eth0"}, "nft": set(), "mounts": set()}
    after = {"links": {"lo", "eth0", "docker_gwbridge", "t-lab-veth1"}, "nft": {"table ip shoal"},
             "mounts": {"/tmp/shoal-bench-docker-x/exec/netns/abc"}}
    ours, others = converge.state_changes(before, after, "/tmp/shoal-bench-docker-x")
    assert ours == ["new links: docker_gwbridge", "new mounts: /tmp/shoal-bench-docker-x/exec/netns/abc"]
    assert others == ["new links: t-lab-veth1", "new nft: table ip shoal"]
