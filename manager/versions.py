"""Version skew between managers: who runs what, and which store features every manager can use.

Policy (docs/security-lifecycle.md, "Version skew"): managers may differ by one minor version
during a rolling upgrade. A manager announces its version in its session's
`NodeDescription.engine.engine_version` (every node does), so the store knows each manager's.
What an older manager cannot use must not be written before every manager is new: a feature that
changes what is in the store is listed in `FEATURES` with the version that introduced it, and the
code about to propose it calls `require(view, feature)` first, which refuses with an error naming
the managers still to upgrade. Nothing is proposed in that case.

A manager whose version is not known yet (it has not opened a session since it joined, or an
older build reported nothing) counts as the oldest supported: 0.1.
"""

from __future__ import annotations

import re

from proto import objects_pb2

OLDEST = (0, 1)

# feature -> the first version whose managers can apply and use it
FEATURES: dict[str, tuple[int, int]] = {
    "ca-rotation": (0, 2),      # RootCA.root_rotation, node TLS info, sessions carrying the roots
    "autolock": (0, 2),         # Cluster.unlock_key, EncryptionConfig
}

_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def parse(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as "0.2.0"; OLDEST when it says nothing usable."""
    match = _VERSION.match(version or "")
    return (int(match.group(1)), int(match.group(2))) if match else OLDEST


def manager_versions(view) -> dict[str, tuple[int, int]]:
    """Every manager's (major, minor) as it announced it, by node (hostname or ID)."""
    out = {}
    for node in view.nodes():
        if node.role == objects_pb2.MANAGER or node.spec.desired_role == objects_pb2.MANAGER:
            name = node.description.hostname or node.id
            out[name] = parse(node.description.engine.engine_version)
    return out


def cluster_version(view) -> tuple[int, int]:
    """The oldest manager's version: what the store may hold."""
    return min(manager_versions(view).values(), default=OLDEST)


def missing(view, feature: str) -> str:
    """Why `feature` cannot be used yet ("" when every manager can)."""
    if feature not in FEATURES:
        raise KeyError(f"unknown store feature {feature!r}")
    needed = FEATURES[feature]
    behind = sorted(name for name, version in manager_versions(view).items() if version < needed)
    if not behind:
        return ""
    return (f"{feature} needs every manager at version {needed[0]}.{needed[1]} or later; "
            f"upgrade {', '.join(behind)} first")
