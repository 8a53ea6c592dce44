"""constraints.txt pins every Python package Shoal installs, at the version installed.

A dependency added to pyproject.toml (or a new transitive one) without `make constraints` fails
here, naming it, instead of being installed at whatever version the index has that day.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (NAME==VERSION)"
            out[canonicalize_name(name)] = version
    return out


def needed(name: str, extras: frozenset[str] = frozenset(), seen: set[str] | None = None) -> set[str]:
    """``name`` and everything it requires (with ``extras``), as installed here."""
    seen = set() if seen is None else seen
    key = canonicalize_name(name)
    if key in seen:
        return seen
    seen.add(key)
    for text in metadata.requires(name) or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            needed(req.name, frozenset(req.extras), seen)
    return seen


def test_every_installed_dependency_is_pinned_at_its_installed_version():
    pinned = pins()
    wanted = needed("shoal", frozenset({"dev"})) - {"shoal"}
    missing = sorted(n for n in wanted if n not in pinned)
    assert not missing, f"not in constraints.txt (run make constraints): {missing}"
    drift = {n: (pinned[n], metadata.version(n)) for n in wanted if metadata.version(n) != pinned[n]}
    assert not drift, f"installed version differs from constraints.txt (pinned, installed): {drift}"


def test_the_pyproject_ranges_admit_the_pins():
    pinned = pins()
    for text in metadata.requires("shoal") or []:
        req = Requirement(re.sub(r";.*", "", text))
        version = pinned.get(canonicalize_name(req.name))
        assert version is not None and req.specifier.contains(version, prereleases=True), \
            f"pyproject.toml's {req} does not admit the pinned {req.name}=={version}"
