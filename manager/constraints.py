"""Placement constraints: ``node.labels.zone==east``, ``node.role!=manager`` and friends.

Grammar (Docker's): ``KEY OP VALUE`` with OP ``==`` or ``!=``. Keys:

    node.id  node.hostname  node.role  node.platform.os  node.platform.arch
    node.labels.<label>     engine.labels.<label>

Keys are case-insensitive (label names are not); values compare case-insensitively, as SwarmKit
does. A label the node does not carry never equals anything, so ``node.labels.x!=y`` holds on a
node without the label. ``node.platform.arch`` treats Docker's aliases (x86_64/amd64,
aarch64/arm64) as equal.

``parse_constraints`` is what the ControlAPI calls to validate a spec; the scheduler and the
orchestrators call ``constraints_of`` (parse, cached) and ``matches`` on each node. It lives
outside both so that the orchestrator and the scheduler stay independent of each other.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable

from proto import objects_pb2

EQ = "=="
NE = "!="


class InvalidConstraint(ValueError):
    """A placement constraint expression is malformed or names an unknown key.

    ``expression`` is the text as the user wrote it; the message says what is wrong with it
    (the ControlAPI turns it into INVALID_ARGUMENT).
    """

    def __init__(self, expression: str, problem: str) -> None:
        self.expression = expression
        self.problem = problem
        super().__init__(f"invalid constraint {expression!r}: {problem}")

_KEY_RE = re.compile(r"^[a-z_][a-z0-9\-_.]*$", re.IGNORECASE)
_VALUE_RE = re.compile(r"^[a-z0-9:\-_\s.*()?+\[\]\\^$|/@=]+$", re.IGNORECASE)
_FIXED_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
_LABEL_PREFIXES = ("node.labels.", "engine.labels.")
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armv7l": "arm"}


@dataclass(frozen=True, slots=True)
class Constraint:
    """One parsed constraint. ``key`` is lower-cased except for the label name it may end with."""

    key: str
    operator: str
    value: str
    expression: str

    def matches(self, node: objects_pb2.Node) -> bool:
        """Whether ``node`` satisfies this constraint (pure; any thread)."""
        actual = _node_value(node, self.key)
        equal = actual is not None and _normalise(self.key, actual) == _normalise(self.key, self.value)
        return equal if self.operator == EQ else not equal


def parse_constraint(expression: str) -> Constraint:
    """Parse one expression; InvalidConstraint names it and says what is wrong."""
    for operator in (EQ, NE):
        if operator in expression:
            key, _, value = expression.partition(operator)
            break
    else:
        raise InvalidConstraint(expression, "expected KEY==VALUE or KEY!=VALUE")
    key, value = key.strip(), value.strip()
    if not key:
        raise InvalidConstraint(expression, "the key is empty")
    if not value:
        raise InvalidConstraint(expression, "the value is empty")
    if not _KEY_RE.match(key):
        raise InvalidConstraint(expression, f"{key!r} is not a valid key")
    if not _VALUE_RE.match(value):
        raise InvalidConstraint(expression, f"{value!r} contains characters a value cannot hold")
    lowered = key.lower()
    for prefix in _LABEL_PREFIXES:
        if lowered.startswith(prefix):
            label = key[len(prefix):]
            if not label:
                raise InvalidConstraint(expression, f"{prefix}<name> needs a label name")
            return Constraint(prefix + label, operator, value, expression)
    if lowered not in _FIXED_KEYS:
        known = ", ".join(_FIXED_KEYS + tuple(p + "<name>" for p in _LABEL_PREFIXES))
        raise InvalidConstraint(expression, f"unknown key {key!r} (known keys: {known})")
    if lowered == "node.role" and value.lower() not in ("manager", "worker"):
        raise InvalidConstraint(expression, "node.role is 'manager' or 'worker'")
    return Constraint(lowered, operator, value, expression)


def parse_constraints(expressions: Iterable[str]) -> list[Constraint]:
    """Parse every expression in order; the first bad one raises InvalidConstraint."""
    return [parse_constraint(e) for e in expressions]


@functools.lru_cache(maxsize=4096)
def _cached(expressions: tuple[str, ...]) -> tuple[Constraint, ...]:
    return tuple(parse_constraints(expressions))


def constraints_of(placement: objects_pb2.Placement) -> tuple[Constraint, ...]:
    """The parsed constraints of a placement (cached by text). A spec that slipped past validation
    with a bad expression raises InvalidConstraint here; callers treat that as "matches no node"."""
    return _cached(tuple(placement.constraints))


def matches(constraints: Iterable[Constraint], node: objects_pb2.Node) -> bool:
    """Whether ``node`` satisfies every constraint."""
    return all(c.matches(node) for c in constraints)


def first_unmet(constraints: Iterable[Constraint], node: objects_pb2.Node) -> Constraint | None:
    """The first constraint ``node`` does not satisfy, or None."""
    for c in constraints:
        if not c.matches(node):
            return c
    return None


def _node_value(node: objects_pb2.Node, key: str) -> str | None:
    if key == "node.id":
        return node.id
    if key == "node.hostname":
        return node.description.hostname
    if key == "node.role":
        return "manager" if node.role == objects_pb2.MANAGER else "worker"
    if key == "node.platform.os":
        return node.description.platform.os
    if key == "node.platform.arch":
        return node.description.platform.architecture
    if key.startswith("node.labels."):
        return node.spec.annotations.labels.get(key[len("node.labels."):])
    if key.startswith("engine.labels."):
        return node.description.engine.labels.get(key[len("engine.labels."):])
    return None


def _normalise(key: str, value: str) -> str:
    value = value.lower()
    if key == "node.platform.arch":
        return _ARCH_ALIASES.get(value, value)
    return value
