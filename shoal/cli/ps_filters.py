"""``shoal ps --filter`` and ``shoal volume ls --filter``: moby's list filters (daemon/list.go,
volume/service), applied to what this node's shoal-runtimed lists.

Keys: id, name (each value a regular expression searched in the ID or name, or equal), label
(KEY or KEY=VALUE, all must match), status (created, running, exited... : implies -a), exited
(exit code of a container that ran), health (starting, healthy, unhealthy, none), ancestor (the
image, by name or ID), volume (name, source or target of a mount), network (attachment or mode),
is-task (a swarm task's container), before / since (a container's name or ID: older / newer
ones), isolation ("default"), publish / expose (no container publishes or exposes ports here, so
none matches). Anything else is refused as ``invalid filter 'KEY'``, nothing listed.
"""

from __future__ import annotations

import re

from shoal.cli.output import DaemonError, filter_flags

ACCEPTED = ("ancestor", "before", "exited", "expose", "health", "id", "is-task", "isolation", "label", "name",
            "network", "publish", "since", "status", "volume")
STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
HEALTH = ("starting", "healthy", "unhealthy", "none")
TASK_LABEL = "com.docker.swarm.task.id"


def parse(values) -> dict[str, list[str]]:
    """--filter KEY=VALUE flags, checked as the daemon checks them."""
    out = filter_flags(values, accepted=ACCEPTED)
    for key, found in out.items():
        for value in found:
            if key == "exited" and not re.fullmatch(r"-?\d+", value):
                raise DaemonError(f"invalid filter 'exited={value}': strconv.Atoi: parsing \"{value}\": "
                                  "invalid syntax")
            if key == "status" and value not in STATES:
                raise DaemonError(f"invalid filter 'status={value}': invalid value for state ({value}): "
                                  f"must be one of {', '.join(STATES)}")
            if key == "health" and value not in HEALTH:
                raise DaemonError(f"invalid filter 'health={value}': invalid value for health ({value}): "
                                  f"must be one of {', '.join(HEALTH)}")
            if key == "is-task" and value.lower() not in ("true", "false", "1", "0"):
                raise DaemonError(f"invalid filter 'is-task={value}'")
    return out


def _match(values: list[str] | None, source: str) -> bool:
    """moby's Args.Match: no values match everything; else one equal or found as a regexp."""
    if not values:
        return True
    for value in values:
        if value == source:
            return True
        try:
            if re.search(value, source):
                return True
        except re.error:
            continue
    return False


def _labels(values: list[str] | None, labels: dict[str, str]) -> bool:
    for text in values or ():
        key, sep, value = text.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _find(containers, ref: str):
    for c in containers:
        if c.id == ref or c.name == ref.lstrip("/") or (len(ref) >= 1 and c.id.startswith(ref)):
            return c
    raise DaemonError(f"No such container: {ref}")


def wants_all(filters: dict[str, list[str]]) -> bool:
    """A status filter lists stopped containers too (the daemon sets All)."""
    return bool(filters.get("status"))


def _ancestor(c, refs: list[str], images: dict[str, str]) -> bool:
    """Whether the container runs one of the images ``refs`` name (a name, or an ID or its
    12-character prefix)."""
    wanted = set(refs) | {images[r] for r in refs if r in images}
    own = c.image_id.removeprefix("sha256:")
    return c.image in wanted or any(
        len(w.removeprefix("sha256:")) >= 12 and own.startswith(w.removeprefix("sha256:")) for w in wanted)


def apply(containers: list, filters: dict[str, list[str]], show_all: bool, images: dict[str, str] | None = None,
          last: int = 0) -> list:
    """The containers (newest first, as docker lists them) that pass every filter; ``last`` > 0:
    the ``last`` newest whatever their state (docker ps -n). ``images``: image name -> image ID
    for ``ancestor``."""
    show_all = show_all or wants_all(filters) or last > 0
    ordered = sorted(containers, key=lambda c: c.created, reverse=True)
    before = [_find(ordered, v) for v in filters.get("before", ())][-1:] or None
    since = [_find(ordered, v) for v in filters.get("since", ())][-1:] or None
    out = []
    for c in ordered:
        st = c.state
        if since is not None and c.id == since[0].id:
            break
        if before is not None:
            if c.id == before[0].id:
                before = None
            continue
        status = "restarting" if st.restarting else st.status
        if status not in ("running", "restarting") and not show_all:
            continue
        if not (_match(filters.get("name"), c.name) and _match(filters.get("id"), c.id)):
            continue
        if "is-task" in filters:
            wanted = filters["is-task"][-1].lower() in ("true", "1")
            if wanted != (TASK_LABEL in c.config.labels):
                continue
        if not _labels(filters.get("label"), c.config.labels):
            continue
        if any(v != "default" for v in filters.get("isolation", ())):
            continue
        if filters.get("exited") and not (st.status == "exited" and st.started_at
                                          and str(st.exit_code) in filters["exited"]):
            continue
        if not _match(filters.get("status"), status):
            continue
        if filters.get("health") and (st.health.status if st.health else "none") not in filters["health"]:
            continue
        if filters.get("volume") and not any(v in (m.source, m.target) for m in c.config.mounts
                                             for v in filters["volume"]):
            continue
        if filters.get("ancestor") and not _ancestor(c, filters["ancestor"], images or {}):
            continue
        if filters.get("network"):
            names = {n.network_id for n in c.config.networks} | {c.config.network}
            if not any(n == v or n.startswith(v) for n in names for v in filters["network"]):
                continue
        if filters.get("publish") or filters.get("expose"):
            continue                    # no container here publishes or exposes a port
        out.append(c)
        if 0 < last == len(out):
            break
    return out


VOLUME_FILTERS = ("dangling", "driver", "label", "name")
_BOOL = {"true": True, "1": True, "false": False, "0": False}


def parse_volume_filters(values) -> dict[str, list[str]]:
    """``volume ls --filter``: dangling (true: no container refers to it), driver, label, name
    (a regular expression); anything else ``invalid filter 'KEY'``."""
    out = filter_flags(values, accepted=VOLUME_FILTERS)
    dangling = out.get("dangling", [])
    if dangling and (len(dangling) > 1 or dangling[0].lower() not in _BOOL):
        raise DaemonError(f"invalid filter 'dangling=[{' '.join(dangling)}]'")
    return out


def volume_matches(v, filters: dict[str, list[str]]) -> bool:
    if filters.get("driver") and v.driver not in filters["driver"]:
        return False
    if "name" in filters and not _match(filters["name"], v.name):
        return False
    if not _labels(filters.get("label"), v.labels):
        return False
    if filters.get("dangling") and _BOOL[filters["dangling"][0].lower()] == bool(v.in_use_by):
        return False
    return True
