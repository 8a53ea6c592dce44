"""Deploy order from `depends_on`: waves of services, each wave after every earlier one.

Swarm ignores depends_on; Shoal's `stack deploy` honours it at deploy time, so it needs an order
and must refuse cycles, naming them.
"""

from __future__ import annotations

from collections.abc import Mapping

from shoal.stack.model import ServiceDef


def deploy_waves(services: Mapping[str, ServiceDef]) -> tuple[tuple[str, ...], ...]:
    """Services grouped in waves: a service's dependencies are all in earlier waves; names sorted
    within a wave. Raises ValueError naming a cycle ("a -> b -> a") if there is one."""
    remaining = {name: {d.service for d in s.depends_on if d.service in services}
                 for name, s in services.items()}
    waves: list[tuple[str, ...]] = []
    done: set[str] = set()
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if deps <= done)
        if not ready:
            raise ValueError(f"dependency cycle: {' -> '.join(find_cycle(remaining))}")
        waves.append(tuple(ready))
        done.update(ready)
        for name in ready:
            del remaining[name]
    return tuple(waves)


def find_cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """One cycle of `graph` (every node of which has an unfinished dependency), as a closed path
    starting at its alphabetically first service: ["a", "b", "a"]."""
    start = min(graph)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(d for d in graph[node] if d in graph)
    cycle = path[seen[node]:]
    first = cycle.index(min(cycle))
    cycle = cycle[first:] + cycle[:first]
    return cycle + [cycle[0]]
