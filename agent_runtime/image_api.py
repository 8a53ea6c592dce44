"""shoal-runtimed's image endpoints: the one place a node's images are pulled, pushed, tagged,
loaded, imported, listed, inspected and removed (the CLI, the worker and the Docker API all call
these; none opens the store itself). Settings of the daemon (insecure registries, mirrors, the
data root) therefore apply to every caller.

    GET    /images/json                      every image, Docker's ``image inspect`` shape
    GET    /images/inspect?ref=REF           one image (404 ``No such image``)
    POST   /images/pull[?stream=1]           {"Ref", "Platform"?, "InsecureRegistries"?}; X-Registry-Auth
    POST   /images/push                      {"Ref"}; X-Registry-Auth; always streamed
    POST   /images/tag                       {"Source", "Target"}
    POST   /images/prune                     {"All": bool} -> {"ImagesDeleted", "SpaceReclaimed"}
    DELETE /images?ref=REF&force=1           Docker's Untagged/Deleted list; refused while in use
    POST   /images/load[?tag=T]              body: a docker-save / OCI archive (application/x-tar),
                                             or JSON {"Path", "Tag"} naming one on this host
    POST   /images/import?ref=&change=&message=   body: a rootfs tarball, or JSON {"Source", "Ref"}

Streams (pull with ``stream=1``, push) are Docker's JSON messages, one per line:
``{"status", "id", "progressDetail": {"current", "total"}}``, ending with ``{"aux": IMAGE}`` (pull) or
``{"aux": {"Tag", "Digest", "Size"}}`` (push), or ``{"error", "errorDetail": {"message"}}``. Progress
lines of a layer are at most ten a second.

Credentials: ``X-Registry-Auth`` is, as in Docker's API, base64url JSON ``{"username", "password",
"serveraddress"}``; they are used for that one call and never stored or logged.

Concurrency and faults: pulls of the same reference are serialised (the second finds the layers
the first stored); a pull whose client goes away is cancelled, and a cancelled or failed pull
leaves nothing behind (the store collects what it added). A pull cut by a crash of runtimed leaves
only unreferenced blobs, collected when runtimed starts (``Runtimed.__init__``). An upload (load,
import) larger than the free space of the store's filesystem is refused before it is written.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from agent_runtime.errors import InvalidArgument
from agent_runtime.httpbody import json_body, query_flag
from agent_runtime.images import errors as image_errors
from agent_runtime.images.ingest import ProgressEvent
from agent_runtime.images.reference import parse_reference

if TYPE_CHECKING:
    from agent_runtime.server import Runtimed

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.1      # seconds between two "Downloading"/"Pushing" lines of one layer
MAX_AUTH_HEADER = 16 * 1024  # a credentials header larger than this is refused
UPLOAD_HEADROOM = 64 << 20   # bytes an upload must leave free on the store's filesystem


class Cancelled(image_errors.ImageError):
    """The client of a pull or push went away; the operation stopped and cleaned up."""


def open_store(root, in_use=None, running=None):
    """The daemon's ImageStore at ``root``, after collecting what an add cut short by a crash left
    (blobs and layers no record references, scratch files): runtimed is the store's only user, so
    at its start nothing is being added."""
    from agent_runtime.images.store import ImageStore
    store = ImageStore(root, in_use=in_use, running=running)
    store.collect_garbage()
    return store


def image_json(image) -> dict:
    """Docker's ``image inspect`` object for an ImageStore Image."""
    config = image.config
    return {
        "Id": image.id,
        "RepoTags": image.repo_tags,
        "RepoDigests": image.repo_digests,
        "Created": image.created,
        "Config": config.get("config") or {},
        "Architecture": config.get("architecture", ""),
        "Os": config.get("os", ""),
        "Size": image.size,
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Metadata": {"ManifestDigest": image.manifest_digest},
        "GraphDriver": {"Name": "overlay2", "Data": {"LowerDir": ":".join(str(p) for p in reversed(image.layers))}},
    }


def registry_auth(header: str | None) -> tuple[str, str] | None:
    """(username, password) from an ``X-Registry-Auth`` header; InvalidArgument if it is malformed."""
    if not header:
        return None
    if len(header) > MAX_AUTH_HEADER:
        raise InvalidArgument(f"X-Registry-Auth is {len(header)} bytes; at most {MAX_AUTH_HEADER}")
    try:
        text = base64.urlsafe_b64decode(header.strip() + "=" * (-len(header.strip()) % 4))
        doc = json.loads(text)
    except (binascii.Error, ValueError):
        raise InvalidArgument("X-Registry-Auth is not base64url-encoded JSON") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("X-Registry-Auth must encode a JSON object")
    user, password = doc.get("username") or "", doc.get("password") or ""
    if doc.get("identitytoken") and not password:
        user, password = user or "<token>", doc["identitytoken"]
    if not isinstance(user, str) or not isinstance(password, str):
        raise InvalidArgument("X-Registry-Auth: username and password must be strings")
    return (user, password) if user or password else None


def _string(body: dict, key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{key} must be a non-empty string")
    if len(value) > 4096:
        raise InvalidArgument(f"{key} is {len(value)} characters; at most 4096")
    return value


def _reference(ref: str) -> str:
    """``ref`` if it is a well-formed image reference; InvalidArgument naming it otherwise."""
    try:
        parse_reference(ref)
    except image_errors.InvalidReference as exc:
        raise InvalidArgument(str(exc)) from None
    return ref


def _platform(value: Any) -> tuple[str, str]:
    if value in (None, ""):
        return "linux", _host_arch()
    if not isinstance(value, str) or value.count("/") not in (1, 2):
        raise InvalidArgument(f"Platform {value!r}: use os/arch, such as linux/amd64")
    os_name, arch = value.split("/")[:2]
    return os_name, arch


def _host_arch() -> str:
    from agent_runtime.images.store import host_architecture
    return host_architecture()


def _message(event: ProgressEvent) -> dict:
    msg: dict[str, Any] = {"status": event.status, "id": event.id}
    if event.total:
        msg["progressDetail"] = {"current": event.current, "total": event.total}
    return msg


def error_message(exc: BaseException) -> dict:
    return {"error": str(exc), "errorDetail": {"message": str(exc)}}


class _Progress:
    """Thread side of a streamed operation: events go to an asyncio queue (throttled per layer);
    ``cancel()`` from the loop makes the next event raise Cancelled in the worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self._last: dict[str, float] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if self.cancelled.is_set():
            raise Cancelled(f"{event.id}: cancelled, the client went away")
        if event.status in ("Downloading", "Pushing") and event.current not in (0, event.total):
            now = time.monotonic()
            if now - self._last.get(event.id, 0.0) < PROGRESS_INTERVAL:
                return
            self._last[event.id] = now
        self.put(_message(event))

    def put(self, message: dict | None) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, message)


class ImageAPI:
    """The handlers; ``daemon`` gives the store, the metrics and the registry settings."""

    def __init__(self, daemon: "Runtimed") -> None:
        self.daemon = daemon
        # one lock per reference being pulled; an entry lives while a pull holds or awaits it
        self._pulling: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @property
    def store(self):
        return self.daemon.images

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/images/json", self.list)
        router.add_get("/images/inspect", self.inspect)
        router.add_post("/images/pull", self.pull)
        router.add_post("/images/push", self.push)
        router.add_post("/images/tag", self.tag)
        router.add_post("/images/prune", self.prune)
        router.add_post("/images/import", self.import_)
        router.add_post("/images/load", self.load)
        router.add_get("/images/get", self.save)
        router.add_delete("/images", self.remove)

    # queries -------------------------------------------------------------------------------
    async def list(self, request: web.Request) -> web.Response:
        images = await asyncio.to_thread(self.store.list)
        return web.json_response([image_json(i) for i in images])

    async def inspect(self, request: web.Request) -> web.Response:
        ref = request.query.get("ref", "")
        if not ref:
            raise InvalidArgument("ref: give an image name or id")
        return web.json_response(image_json(await asyncio.to_thread(self.store.resolve, ref)))

    # registry ------------------------------------------------------------------------------
    def _registry_settings(self, body: dict) -> tuple[str, ...]:
        extra = body.get("InsecureRegistries") or []
        if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
            raise InvalidArgument("InsecureRegistries must be a list of strings")
        return tuple(extra) + tuple(self.daemon.insecure_registries)

    async def pull(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        ref = _reference(_string(body, "Ref"))
        platform = _platform(body.get("Platform"))
        insecure = self._registry_settings(body)
        auth = registry_auth(request.headers.get("X-Registry-Auth"))
        mirrors = tuple(self.daemon.registry_mirrors)
        stream = request.query.get("stream", "") in ("1", "true")
        progress = _Progress(asyncio.get_running_loop())
        parsed = parse_reference(ref)
        lock = self._pulling.get(str(parsed))
        if lock is None:
            lock = self._pulling[str(parsed)] = asyncio.Lock()

        def work():
            before = self.store.resolve(ref).id if self.store.exists(ref) else None
            image = self.store.pull(ref, insecure, auth, progress if stream else _cancel_only(progress),
                                    platform, mirrors=mirrors)
            return before, image

        async def run():
            async with lock:
                start = time.perf_counter()
                try:
                    before, image = await asyncio.to_thread(work)
                except BaseException:
                    self.daemon.metrics.pulled(time.perf_counter() - start, None, ok=False)
                    raise
                self.daemon.metrics.pulled(time.perf_counter() - start, getattr(image, "size", None), ok=True)
            return before, image

        if not stream:
            try:
                _, image = await _shielded(run(), progress)
            finally:
                progress.cancelled.set()
            return web.json_response(image_json(image))

        async def finish(result) -> list[dict]:
            before, image = result
            digest = next((d.split("@", 1)[1] for d in image.repo_digests
                           if d.startswith(parsed.familiar_name + "@")), image.manifest_digest)
            status = "Image is up to date for" if before == image.id else "Downloaded newer image for"
            return [{"status": f"Digest: {digest}"}, {"status": f"Status: {status} {parsed.familiar}"},
                    {"aux": image_json(image)}]

        first = {"status": f"Pulling from {parsed.familiar_name}", "id": parsed.tag or parsed.digest}
        return await _stream(request, progress, run(), first, finish)

    async def push(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        ref = _reference(_string(body, "Ref"))
        insecure = self._registry_settings(body)
        auth = registry_auth(request.headers.get("X-Registry-Auth"))
        parsed = parse_reference(ref)
        image = await asyncio.to_thread(self.store.resolve, ref)   # 404 before the stream starts
        progress = _Progress(asyncio.get_running_loop())

        def work() -> str:
            return self.store.push(ref, insecure, auth, progress)

        async def finish(digest: str) -> list[dict]:
            size = self.store.blobs.size(image.manifest_digest)
            return [{"status": f"{parsed.tag}: digest: {digest} size: {size}"},
                    {"aux": {"Tag": parsed.tag, "Digest": digest, "Size": size}}]

        first = {"status": f"The push refers to repository [{parsed.name}]"}
        return await _stream(request, progress, asyncio.to_thread(work), first, finish)

    # local changes -------------------------------------------------------------------------
    async def tag(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        source, target = _string(body, "Source"), _reference(_string(body, "Target"))
        image = await asyncio.to_thread(self.store.tag, source, target)
        return web.json_response(image_json(image), status=201)

    async def prune(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        prune_all = body.get("All", False)
        if not isinstance(prune_all, bool):
            raise InvalidArgument("All must be true or false")
        return web.json_response(await asyncio.to_thread(self.store.prune, prune_all))

    async def remove(self, request: web.Request) -> web.Response:
        ref = request.query.get("ref", "")
        if not ref:
            raise InvalidArgument("ref: give an image name or id")
        force = query_flag(request, "force")
        return web.json_response(await asyncio.to_thread(self.store.remove, ref, force))

    async def load(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            body = await json_body(request)
            images = await asyncio.to_thread(self.store.load, _string(body, "Path"), _string(body, "Tag", False))
        else:
            tag = request.query.get("tag") or None
            async with self._upload(request, "load") as path:
                images = await asyncio.to_thread(self.store.load, path, tag)
        return web.json_response([image_json(i) for i in images])

    async def save(self, request: web.Request) -> web.StreamResponse:
        """``docker save``: the images ``names`` (repeated) as one tar, made in scratch space
        first (an unknown name is a 404 before any byte is sent), then streamed and deleted."""
        refs = request.query.getall("names", [])
        if not refs:
            raise InvalidArgument("names: give at least one image")
        path = self.store.tmp / f"save-{os.getpid()}-{id(request):x}.tar"
        try:
            await asyncio.to_thread(self.store.save, refs, path)
            response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
            response.content_length = path.stat().st_size
            await response.prepare(request)
            with open(path, "rb") as f:
                while chunk := await asyncio.to_thread(f.read, 1 << 20):
                    await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            path.unlink(missing_ok=True)

    async def import_(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            body = await json_body(request)
            ref = _string(body, "Ref", False)
            if ref:
                _reference(ref)
            changes = body.get("Changes") or []
            image = await asyncio.to_thread(self.store.import_rootfs, _string(body, "Source"), ref, changes,
                                            body.get("Message"))
        else:
            ref = request.query.get("ref") or None
            if ref:
                _reference(ref)
            changes = request.query.getall("change", [])
            async with self._upload(request, "import") as path:
                image = await asyncio.to_thread(self.store.import_rootfs, path, ref, changes,
                                                request.query.get("message"))
        return web.json_response(image_json(image))

    def _upload(self, request: web.Request, what: str) -> "_Upload":
        return _Upload(request, self.store.tmp, what)


class _Upload:
    """The request body, written to a scratch file in the store's filesystem (deleted after)."""

    def __init__(self, request: web.Request, directory, what: str) -> None:
        self.request, self.directory, self.what = request, directory, what
        self.path: str | None = None

    def _free(self) -> int:
        return shutil.disk_usage(self.directory).free - UPLOAD_HEADROOM

    async def __aenter__(self) -> str:
        length = self.request.content_length
        if length is not None and length > self._free():
            raise InvalidArgument(f"image {self.what}: the archive is {length} bytes, more than the "
                                  f"{max(self._free(), 0)} bytes free in {self.directory}")
        fd, self.path = tempfile.mkstemp(prefix=f"{self.what}-", dir=self.directory)
        written = 0
        limit = self._free()
        with os.fdopen(fd, "wb") as out:
            while chunk := await self.request.content.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise InvalidArgument(f"image {self.what}: the archive outgrew the {limit} bytes free "
                                          f"in {self.directory}; nothing was loaded")
                await asyncio.to_thread(out.write, chunk)
        if written == 0:
            raise InvalidArgument(f"image {self.what}: the request body is empty; send the archive")
        return self.path

    async def __aexit__(self, *exc) -> None:
        if self.path:
            os.unlink(self.path) if os.path.exists(self.path) else None


def _cancel_only(progress: _Progress) -> Callable[[ProgressEvent], None]:
    def check(event: ProgressEvent) -> None:
        if progress.cancelled.is_set():
            raise Cancelled(f"{event.id}: cancelled, the client went away")
    return check


async def _shielded(coro, progress: _Progress):
    """Await ``coro`` in its own task; if the caller is cancelled (the client went away), cancel
    the operation's thread through ``progress`` and wait for it to clean up before re-raising."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        progress.cancelled.set()
        try:
            await task
        except BaseException:
            pass
        raise


async def _stream(request: web.Request, progress: _Progress, coro, first: dict, finish) -> web.StreamResponse:
    """Run ``coro`` while streaming ``progress`` as JSON lines; end with ``finish(result)`` or the error."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    task = asyncio.ensure_future(coro)

    async def write(message: dict) -> None:
        await resp.write((json.dumps(message, separators=(",", ":")) + "\n").encode())

    try:
        await write(first)
        while True:
            getter = asyncio.ensure_future(progress.queue.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await write(getter.result())
                continue
            getter.cancel()
            while not progress.queue.empty():
                message = progress.queue.get_nowait()
                if message is not None:
                    await write(message)
            break
        try:
            result = task.result()
        except Exception as exc:
            if not isinstance(exc, image_errors.ImageError) and not hasattr(exc, "status"):
                log.exception("%s %s failed", request.method, request.path)
            await write(error_message(exc))
        else:
            for message in await finish(result):
                await write(message)
        await resp.write_eof()
    except (asyncio.CancelledError, ConnectionResetError):
        progress.cancelled.set()     # the client went away: stop the work, let it clean up
        try:
            await task
        except BaseException:
            pass
        if isinstance(asyncio.current_task(), asyncio.Task) and asyncio.current_task().cancelling():
            raise
    return resp

