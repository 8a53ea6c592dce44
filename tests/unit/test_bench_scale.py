"""bench/scale.py's report: each figure against issue 10's goal, term changes and Down counted as met only at 0."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("bench_scale", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_scale"]


def result(**changes) -> dict:
    base = {"nodes": 100, "tasks": 5000, "assigned_s": 12.0, "running_s": 30.0, "leader": "manager2",
            "leader_cpu": 40.0, "leader_rss": 512.0, "followers": [("manager1", 10.0, 300.0), ("manager3", 11.0, 301.0)],
            "raft_log": 3 * 1024 * 1024, "raft_snap": 1024 * 1024, "terms": 0, "terms_catchup": 0, "down": 0, "catchup_s": 5.0,
            "ls_s": 0.3, "ps_s": 1.5, "load": 6.0, "cpus": 2}
    base.update(changes)
    return base


def test_figures_against_goals(scale):
    report = scale.format_report(result())
    assert "100 simulated nodes, 5000 tasks" in report
    assert "goal 60 s at goal scale: 0.50x" in report
    assert "RSS   512.0 MiB   goal 1024 MiB: 0.50x" in report
    assert "goal 10 s: 0.50x" in report
    assert "log 3.0 MiB, snapshots 1.0 MiB" in report
    assert "follower manager1" in report and "follower manager3" in report
    assert report.count("goal 0: met") == 2
    assert "service ls                     0.3 s" in report


def test_failed_cli_call_reported(scale):
    report = scale.format_report(result(ps_s="failed: message larger than max"))
    assert "service ps                failed: message larger than max" in report


def test_term_changes_and_down_not_met(scale):
    report = scale.format_report(result(terms=2, terms_catchup=1, down=7))
    assert "term changes                     2   goal 0: NOT met   (and 1 while the killed follower came back)" in report
    assert "nodes seen Down                  7   goal 0: NOT met" in report


def test_raft_bytes_splits_snapshots(scale, tmp_path):
    (tmp_path / "raft.journal").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "raft.dump").write_bytes(b"y" * 4)
    assert scale.raft_bytes(tmp_path) == (10, 4)


def test_not_converged_reported(scale):
    report = scale.format_report(result(running_s="NOT reached: 4000 of 5000 running after 600 s (6000 tasks)"))
    assert "create -> all running     NOT reached: 4000 of 5000 running after 600 s (6000 tasks)" in report
