"""Figures the manager measures as it works, read by shoald's /metrics at scrape time.

Plain accumulators (the manager imports no metrics library): ``PASS_SECONDS[component]`` for every
leader component's pass (manager.storeloop), ``SCHEDULING_SECONDS[stage]`` from a task's creation
to its being assigned and running (fed from every manager's event stream, so each manager has the
same figures), ``COUNTERS`` for discrete things (leader changes seen, heartbeat misses). All are
updated on the manager's event loop and read from the metrics thread: a read may see one
observation half-applied, never a broken structure.
"""
from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field

PASS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCHEDULING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)   # per bucket (not cumulative), plus +Inf
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound, observations <= it), +Inf last."""
        out, running = [], 0
        for bound, n in zip([*map(str, self.buckets), "+Inf"], self.counts):
            running += n
            out.append((bound, running))
        return out


PASS_SECONDS: defaultdict[str, Histogram] = defaultdict(lambda: Histogram(PASS_BUCKETS))
SCHEDULING_SECONDS: defaultdict[str, Histogram] = defaultdict(lambda: Histogram(SCHEDULING_BUCKETS))
COUNTERS: Counter[str] = Counter()
HEARTBEAT_WAIT = Histogram((0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
