"""Generic resources, as SwarmKit has them (api/genericresource): what a node offers
(`shoald --node-generic-resource gpu=2` or `SSD=ssd1`, repeatable) and what a task reserves
(`service create --generic-resource gpu=1`, Compose `generic_resources`).

A value that is an integer is a *discrete* resource (a count: gpu=2); any other value is a
*named* one, a unit with an identity (SSD=ssd1; give the flag again, or a comma list, for more of
the kind). Tasks ask only for counts; the scheduler claims named units for them, and the worker
shows what the task got as ``DOCKER_RESOURCE_<KIND>=...`` in its environment (SwarmKit's
``genericresource.EnvFormat``). Pure; the manager, the daemon and the CLI share it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from proto import objects_pb2 as pb

ENV_PREFIX = "DOCKER_RESOURCE"


def _terms(texts: Iterable[str]) -> dict[str, list[str]]:
    tokens: dict[str, list[str]] = defaultdict(list)
    for text in texts:
        for term in text.split(","):
            term = term.strip()
            kind, sep, value = term.partition("=")
            if not sep or not kind.strip() or not value.strip() or "=" in value:
                raise ValueError(f"incorrect term {term}, missing '=' or malformed expression")
            tokens[kind.strip()].append(value.strip())
    return tokens


def _count(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def parse(texts: Iterable[str]) -> list[pb.GenericResource]:
    """`KIND=VALUE` terms (a text may hold several, comma-separated) -> resources, by kind: one
    discrete resource per kind whose values are integers (summed), named ones otherwise."""
    out = []
    for kind, values in _terms(texts).items():
        counts = [_count(v) for v in values]
        if all(c is not None for c in counts):
            total = sum(c for c in counts if c is not None)
            if any(c is not None and c < 0 for c in counts):
                raise ValueError(f"cannot ask for negative resource {kind}")
            out.append(discrete(kind, total))
        elif any(c is not None for c in counts):
            raise ValueError(f"mixed discrete and named resources in {kind}")
        else:
            if len(set(values)) != len(values):
                raise ValueError(f"resource {kind} has the value {_first_duplicate(values)} more than once")
            out.extend(named(kind, v) for v in values)
    return out


def _first_duplicate(values: list[str]) -> str:
    seen = set()
    for v in values:
        if v in seen:
            return v
        seen.add(v)
    return ""


def parse_task(texts: Iterable[str]) -> list[pb.GenericResource]:
    """What a service reserves: discrete resources only (SwarmKit's ValidateTask)."""
    resources = parse(texts)
    for r in resources:
        if r.HasField("named_resource_spec"):
            raise ValueError(f"invalid argument for resource {r.named_resource_spec.kind}: a service "
                             f"reserves a count (KIND=N); named resources are what nodes offer")
        if r.discrete_resource_spec.value < 1:
            raise ValueError(f"invalid argument for resource {r.discrete_resource_spec.kind}: "
                             f"the count must be at least 1")
    return resources


def discrete(kind: str, value: int) -> pb.GenericResource:
    return pb.GenericResource(discrete_resource_spec=pb.GenericResource.DiscreteResource(kind=kind, value=value))


def named(kind: str, value: str) -> pb.GenericResource:
    return pb.GenericResource(named_resource_spec=pb.GenericResource.NamedResource(kind=kind, value=value))


def kind_of(resource: pb.GenericResource) -> str:
    if resource.HasField("named_resource_spec"):
        return resource.named_resource_spec.kind
    return resource.discrete_resource_spec.kind


def requests(resources: Iterable[pb.GenericResource]) -> tuple[tuple[str, int], ...]:
    """A task's reservations as sorted (kind, count) pairs."""
    counts: Counter = Counter()
    for r in resources:
        counts[kind_of(r)] += 1 if r.HasField("named_resource_spec") else r.discrete_resource_spec.value
    return tuple(sorted(counts.items()))


def text(resources: Iterable[pb.GenericResource]) -> list[str]:
    """`KIND=VALUE` terms, as given."""
    return [f"{r.named_resource_spec.kind}={r.named_resource_spec.value}" if r.HasField("named_resource_spec")
            else f"{r.discrete_resource_spec.kind}={r.discrete_resource_spec.value}" for r in resources]


class Pool:
    """What a node offers of each kind and what its tasks hold: counts of discrete resources,
    sets of named ones."""

    def __init__(self, offered: Iterable[pb.GenericResource]):
        self.discrete: Counter = Counter()
        self.named: dict[str, set[str]] = defaultdict(set)
        for r in offered:
            if r.HasField("named_resource_spec"):
                self.named[r.named_resource_spec.kind].add(r.named_resource_spec.value)
            else:
                self.discrete[r.discrete_resource_spec.kind] += r.discrete_resource_spec.value
        self.used_discrete: Counter = Counter()
        self.used_named: dict[str, set[str]] = defaultdict(set)

    def available(self, kind: str) -> int:
        return (self.discrete[kind] - self.used_discrete[kind]
                + len(self.named.get(kind, set()) - self.used_named[kind]))

    def fits(self, wanted: tuple[tuple[str, int], ...]) -> tuple[str, int, int] | None:
        """None if every (kind, count) fits, else the first (kind, wanted, available) that does not."""
        for kind, count in wanted:
            if count > self.available(kind):
                return kind, count, max(self.available(kind), 0)
        return None

    def claim(self, wanted: tuple[tuple[str, int], ...]) -> list[pb.GenericResource]:
        """Take ``wanted`` (which fits): named units first, lowest values first, then counts."""
        out = []
        for kind, count in wanted:
            free = sorted(self.named.get(kind, set()) - self.used_named[kind])[:count]
            out.extend(named(kind, v) for v in free)
            if count > len(free):
                out.append(discrete(kind, count - len(free)))
        self.hold(out)
        return out

    def copy(self) -> Pool:
        """An independent copy (what the node offers is shared: it is never changed)."""
        duplicate = Pool.__new__(Pool)
        duplicate.discrete = self.discrete
        duplicate.named = self.named
        duplicate.used_discrete = Counter(self.used_discrete)
        duplicate.used_named = defaultdict(set, {k: set(v) for k, v in self.used_named.items()})
        return duplicate

    def hold(self, assigned: Iterable[pb.GenericResource]) -> None:
        for r in assigned:
            if r.HasField("named_resource_spec"):
                self.used_named[r.named_resource_spec.kind].add(r.named_resource_spec.value)
            else:
                self.used_discrete[r.discrete_resource_spec.kind] += r.discrete_resource_spec.value


def env(assigned: Iterable[pb.GenericResource]) -> list[str]:
    """SwarmKit's EnvFormat: DOCKER_RESOURCE_<KIND>=v1,v2 (named) or =N (discrete), sorted."""
    values: dict[str, list[str]] = defaultdict(list)
    for r in assigned:
        key = f"{ENV_PREFIX}_{kind_of(r)}".upper()
        values[key].append(r.named_resource_spec.value if r.HasField("named_resource_spec")
                           else str(r.discrete_resource_spec.value))
    return [f"{k}={','.join(v)}" for k, v in sorted(values.items())]
