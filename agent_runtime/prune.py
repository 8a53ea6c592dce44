"""Docker's container prune, volume prune and system df in shoal-runtimed.

    POST /containers/prune   {"Filters": {"until": [...], "label": [...], "label!": [...]}}
                             -> {"ContainersDeleted": [id...], "SpaceReclaimed": bytes}
    POST /volumes/prune      {"Filters": {"label": [...], "label!": [...], "all": ["true"]}}
                             -> {"VolumesDeleted": [name...], "SpaceReclaimed": bytes}
    GET  /system/df          -> {"LayersSize", "Images": [...], "Containers": [...], "Volumes": [...]}

As moby's daemon: a filter it does not take is refused as ``invalid filter 'KEY'`` before anything
is removed; container prune removes every container that is not running (created or exited),
volume prune the volumes no container refers to, only anonymous ones unless ``all`` (Shoal makes
no anonymous volumes, so without ``all`` it removes none, as Docker does with named volumes).
A container or volume that cannot be removed is logged and left; the others still go. Sizes are
the bytes of the files in a container's writable layer or a volume's data (hard links once).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from agent_runtime.container_record import RUNNING
from agent_runtime.errors import InvalidArgument, ShoalRuntimeError
from agent_runtime.httpbody import json_body
from agent_runtime.spec import to_json
from common.syntax import parse_since

if TYPE_CHECKING:
    from agent_runtime.server import Runtimed

log = logging.getLogger(__name__)

CONTAINER_FILTERS = ("label", "label!", "until")
VOLUME_FILTERS = ("label", "label!", "all")
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
_TRUE = ("1", "true", "t", "yes")
_FALSE = ("0", "false", "f", "no")


def parse_filters(raw, accepted: tuple[str, ...]) -> dict[str, list[str]]:
    """Docker's filter map (key -> list of values, or key -> {value: true}), checked."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument("Filters must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, values in raw.items():
        if key not in accepted:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(values, dict):
            values = [v for v, on in values.items() if on]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidArgument(f"invalid filter '{key}': expected a list of strings")
        out[key] = values
    return out


def labels_match(labels: dict[str, str], filters: dict[str, list[str]]) -> bool:
    """``label=KEY`` / ``label=KEY=VALUE`` must all match; ``label!=…`` must all not match."""
    def has(text: str) -> bool:
        key, sep, value = text.partition("=")
        return key in labels and (not sep or labels[key] == value)
    return all(has(t) for t in filters.get("label", ())) and not any(has(t) for t in filters.get("label!", ()))


def until(filters: dict[str, list[str]], now: float) -> float | None:
    """The ``until`` time (epoch seconds), or None."""
    values = filters.get("until", [])
    if len(values) > 1:
        raise InvalidArgument("more than one until filter specified")
    if not values:
        return None
    try:
        return parse_since(values[0], now)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def all_volumes(filters: dict[str, list[str]]) -> bool:
    values = filters.get("all", [])
    for v in values:
        if v.lower() not in _TRUE + _FALSE:
            raise InvalidArgument(f"invalid filter 'all={v}'")
    return any(v.lower() in _TRUE for v in values)


def dir_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed, each inode once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _created(text: str) -> float:
    """Epoch seconds of the runtime's RFC 3339 times (nanoseconds: more digits than Python reads)."""
    import re
    from datetime import datetime
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


class PruneAPI:
    """The handlers, on the daemon's container manager, volume store and image store."""

    def __init__(self, daemon: "Runtimed") -> None:
        self.daemon = daemon

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/containers/prune", self.containers)
        router.add_post("/volumes/prune", self.volumes)
        router.add_get("/system/df", self.df)

    async def _filters(self, request: web.Request, accepted: tuple[str, ...]) -> dict[str, list[str]]:
        return parse_filters((await json_body(request)).get("Filters"), accepted)

    async def containers(self, request: web.Request) -> web.Response:
        filters = await self._filters(request, CONTAINER_FILTERS)
        before = until(filters, time.time())
        manager = self.daemon.manager
        deleted, reclaimed = [], 0
        for c in list(manager.containers.values()):
            if c.state.status == RUNNING or c.state.restarting or not labels_match(c.spec.labels, filters):
                continue
            if before is not None and _created(c.created) >= before:
                continue
            size = await asyncio.to_thread(dir_size, c.dir / "upper")
            try:
                await self.daemon.remove_container(c, force=False)
            except ShoalRuntimeError as exc:
                log.warning("container prune: cannot remove %s: %s", c.name, exc)
                continue
            deleted.append(c.id)
            reclaimed += size
        return web.json_response({"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed})

    async def volumes(self, request: web.Request) -> web.Response:
        filters = await self._filters(request, VOLUME_FILTERS)
        everything = all_volumes(filters)
        store = self.daemon.volumes
        deleted, reclaimed = [], 0
        for v in store.list():
            if v.in_use_by or not labels_match(v.labels, filters):
                continue
            if not everything and ANONYMOUS_LABEL not in v.labels:
                continue
            size = await asyncio.to_thread(dir_size, Path(v.mountpoint))
            try:
                store.remove(v.name)
            except ShoalRuntimeError as exc:
                log.warning("volume prune: cannot remove %s: %s", v.name, exc)
                continue
            deleted.append(v.name)
            reclaimed += size
        return web.json_response({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed})

    async def df(self, request: web.Request) -> web.Response:
        """Docker's ``GET /system/df``: every image (with its containers and the bytes it shares
        with other images), container (SizeRw) and volume (UsageData); LayersSize counts each
        layer once."""
        manager, images = self.daemon.manager, self.daemon.images
        containers = []
        for c in list(manager.containers.values()):
            info = to_json(c.info())
            info["SizeRw"] = await asyncio.to_thread(dir_size, c.dir / "upper")
            containers.append(info)
        users: dict[str, int] = {}
        for c in manager.containers.values():
            users[c.image_id] = users.get(c.image_id, 0) + 1
        image_list = await asyncio.to_thread(images.list)
        layer_users: dict[str, int] = {}
        for i in image_list:
            for d in set(i.diff_ids):
                layer_users[d] = layer_users.get(d, 0) + 1
        sizes = {d: images.layers.size(d) for d in layer_users}
        out_images = [{"Id": i.id, "RepoTags": i.repo_tags, "Created": i.created, "Size": i.size,
                       "SharedSize": sum(sizes[d] for d in set(i.diff_ids) if layer_users[d] > 1),
                       "Containers": users.get(i.id, 0)} for i in image_list]
        volumes = []
        for v in self.daemon.volumes.list():
            doc = to_json(v)
            doc["UsageData"] = {"Size": await asyncio.to_thread(dir_size, Path(v.mountpoint)),
                                "RefCount": len(v.in_use_by)}
            volumes.append(doc)
        return web.json_response({"LayersSize": sum(sizes.values()), "Images": out_images,
                                  "Containers": containers, "Volumes": volumes, "BuildCache": []})
