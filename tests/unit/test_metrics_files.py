"""deploy/grafana-dashboard.json and deploy/prometheus.yml only use series Shoal exports, and the
manager's histogram accumulator gives Prometheus-shaped buckets."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from manager.stats import Histogram

REPO = Path(__file__).resolve().parents[2]
SOURCES = [REPO / "shoal" / "metrics.py", REPO / "agent_runtime" / "metrics.py"]
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "count", "time", "le",
                "up", "without", "avg"}


def exported() -> set[str]:
    names = set()
    for source in SOURCES:
        names.update(re.findall(r'"(shoal_[a-z0-9_]+)"', source.read_text()))
    # Counters gain _total on the wire; histograms _bucket/_sum/_count.
    return names | {n + "_total" for n in names} | {n + s for n in names for s in ("_bucket", "_sum", "_count")}


def test_every_dashboard_series_is_exported():
    dashboard = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text())
    known = exported()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    used = {name for e in exprs for name in re.findall(r"\b(shoal_[a-z0-9_]+)", e)}
    assert used and used <= known, sorted(used - known)
    titles = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert titles == {"Cluster", "Services", "Nodes and containers", "Raft and dispatcher"}


def test_prometheus_config_is_file_discovered():
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["file_sd_configs"][0]["files"] == ["/etc/prometheus/shoal-targets/*.json"]


def test_histogram_buckets_are_cumulative_with_inf():
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 7):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert h.count == 4 and abs(h.total - 7.65) < 1e-9
