"""The local image store: blobs, unpacked layers, image records and a tag index under one root.

Layout (all writes are temp-then-rename, so readers never see partial state)::

    ROOT/blobs/sha256/<hex>        manifests, configs and layer blobs, verified by digest on write
    ROOT/layers/<diff_id hex>/     one unpacked layer per directory (an overlay lowerdir)
    ROOT/layers/<diff_id hex>.json its size
    ROOT/images/<config hex>.json  image records: manifest digest, layer descriptors, repo digests
    ROOT/repositories.json         tag index: "registry/repo:tag" -> image id (config digest)
    ROOT/tmp/                      scratch space on the same filesystem

Concurrency: any number of threads or processes may use one root. Adding images (pull, load,
import) holds ``gc.lock`` shared for its whole run; removing images and collecting garbage holds
it exclusive, so a layer being added is never collected. Records and the tag index are changed
under ``meta.lock``. Locks are always taken in that order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gzip
import json
import logging
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Callable, Iterable, Iterator

from . import oci
from .blobs import BlobStore
from .errors import ImageError, ImageInUse, ImageNotFound, InvalidReference
from .ingest import ProgressFn
from .layers import LayerStore
from .reference import Reference, is_digest, parse_reference
from .unpack import decompressed

log = logging.getLogger(__name__)

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_architecture() -> str:
    """The OCI architecture name of this machine (``amd64`` on x86_64)."""
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Image:
    """An image in the store, ready to run.

    ``config`` is the whole OCI image config (``config["config"]`` holds Env, Cmd, Entrypoint,
    WorkingDir, User, Healthcheck, ExposedPorts, StopSignal, ...). ``layers`` are the unpacked layer
    directories, bottom layer first: reversed, they are overlayfs ``lowerdir`` entries.
    """

    id: str
    repo_tags: list[str]
    config: dict
    layers: list[Path]
    size: int
    created: str
    repo_digests: list[str] = field(default_factory=list)
    diff_ids: list[str] = field(default_factory=list)
    manifest_digest: str = ""
    manifest_media_type: str = oci.OCI_MANIFEST

    @property
    def container_config(self) -> dict:
        """The runtime defaults section of the config (``Env``, ``Cmd``, ...); never None."""
        return self.config.get("config") or {}

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]


@dataclass
class LayerBlob:
    """A layer as stored: the blob (possibly compressed) and the diff_id of its uncompressed tar."""

    digest: str
    media_type: str
    size: int
    diff_id: str

    def descriptor(self) -> dict:
        return oci.descriptor(self.media_type, self.digest, self.size)


class ImageStore:
    """Content-addressed image store rooted at ``root`` (created if missing).

    ``in_use(image_id)`` may be given by the container runtime: it returns the names of containers
    using an image (running or not), which then is never deleted nor pruned; ``running(image_id)``
    the running ones, whose image cannot even be untagged by id (see :meth:`remove`).
    """

    def __init__(self, root: Path | str, in_use: Callable[[str], Iterable[str]] | None = None,
                 running: Callable[[str], Iterable[str]] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(self.root)
        self.layers = LayerStore(self.root)
        self.images_dir = self.root / "images"
        self.images_dir.mkdir(exist_ok=True)
        self.tmp = self.root / "tmp"
        self.in_use = in_use
        self.running = running

    # ------------------------------------------------------------------ locks and raw records
    @contextlib.contextmanager
    def _lock(self, name: str, shared: bool = False) -> Iterator[None]:
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def adding(self) -> contextlib.AbstractContextManager[None]:
        """Hold while adding content (blobs, layers) that no record references yet."""
        return self._lock("gc.lock", shared=True)

    def _write_json(self, path: Path, obj: object) -> None:
        tmp = self.tmp / f"{path.name}.{os.getpid()}.{id(obj)}"
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
        os.rename(tmp, path)

    def _tags(self) -> dict[str, str]:
        try:
            return json.loads((self.root / "repositories.json").read_text())
        except FileNotFoundError:
            return {}

    def _record_path(self, image_id: str) -> Path:
        return self.images_dir / f"{image_id.split(':', 1)[1]}.json"

    def _record(self, image_id: str) -> dict | None:
        try:
            return json.loads(self._record_path(image_id).read_text())
        except FileNotFoundError:
            return None

    def _records(self) -> list[dict]:
        out = []
        for path in sorted(self.images_dir.glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (FileNotFoundError, ValueError):
                continue
        return out

    def _image(self, record: dict, tags: dict[str, str]) -> Image:
        config = json.loads(self.blobs.read(record["id"]))
        diff_ids = [layer["diff_id"] for layer in record["layers"]]
        repo_tags = sorted(parse_reference(name).familiar for name, iid in tags.items() if iid == record["id"])
        return Image(
            id=record["id"],
            repo_tags=repo_tags,
            config=config,
            layers=[self.layers.path(d) for d in diff_ids],
            size=sum(self.layers.size(d) for d in diff_ids),
            created=config.get("created") or record.get("added", ""),
            repo_digests=list(record.get("repo_digests", [])),
            diff_ids=diff_ids,
            manifest_digest=record["manifest_digest"],
            manifest_media_type=record.get("manifest_media_type", oci.OCI_MANIFEST),
        )

    # ------------------------------------------------------------------ queries
    def get(self, image_id: str) -> Image:
        """The image with id ``image_id`` (``sha256:<hex>``); ImageNotFound otherwise."""
        record = self._record(image_id) if is_digest(image_id) else None
        if record is None:
            raise ImageNotFound(image_id)
        return self._image(record, self._tags())

    def resolve(self, ref: str) -> Image:
        """The image ``ref`` names: a tag, ``name@digest``, a full id or a unique id prefix.

        Raises ImageNotFound(ref) when nothing matches; InvalidReference never escapes for a
        string that could be an id prefix.
        """
        image_id = self._resolve_id(ref)
        return self.get(image_id)

    def _resolve_id(self, ref: str) -> str:
        if is_digest(ref):
            if self._record(ref) is not None:
                return ref
            raise ImageNotFound(ref)
        tags = self._tags()
        try:
            parsed = parse_reference(ref)
        except InvalidReference:
            parsed = None
        if parsed is not None:
            if parsed.digest:
                for record in self._records():
                    if record["manifest_digest"] == parsed.digest or record["id"] == parsed.digest:
                        return record["id"]
            elif str(parsed) in tags:
                return tags[str(parsed)]
        hexpart = ref[7:] if ref.startswith("sha256:") else ref
        if 4 <= len(hexpart) < 64 and all(c in "0123456789abcdef" for c in hexpart):
            matches = [p.stem for p in self.images_dir.glob(f"{hexpart}*.json")]
            if len(matches) == 1:
                return "sha256:" + matches[0]
            if len(matches) > 1:
                raise ImageError(f"image id prefix {ref!r} is ambiguous ({len(matches)} images)")
        if parsed is None:
            parse_reference(ref)  # re-raise the reference error
        raise ImageNotFound(ref)

    def exists(self, ref: str) -> bool:
        try:
            self._resolve_id(ref)
            return True
        except ImageError:
            return False

    def list(self) -> list[Image]:
        """All images, newest first."""
        tags = self._tags()
        images = []
        for record in self._records():
            try:
                images.append(self._image(record, tags))
            except ImageError as exc:
                log.warning("image %s is damaged: %s", record.get("id"), exc)
        return sorted(images, key=lambda image: image.created, reverse=True)

    # ------------------------------------------------------------------ adding images
    def commit(self, manifest: bytes, config: bytes, layers: list[LayerBlob], *,
               tags: Iterable[str] = (), repo_digest: str | None = None,
               manifest_media_type: str = oci.OCI_MANIFEST) -> Image:
        """Record an image whose layer blobs and layer directories are already stored.

        Stores the manifest and config blobs, writes the record and points ``tags`` at it. Call
        inside :meth:`adding`. Returns the image as :meth:`get` would.
        """
        config_digest = self.blobs.put_bytes(config, what="image config")
        manifest_digest = self.blobs.put_bytes(manifest, what="image manifest")
        config_doc = json.loads(config)
        diff_ids = (config_doc.get("rootfs") or {}).get("diff_ids") or []
        if diff_ids != [layer.diff_id for layer in layers]:
            raise ImageError(f"image {config_digest}: config diff_ids do not match its layers")
        for layer in layers:
            if not self.layers.has(layer.diff_id) or not self.blobs.has(layer.digest):
                raise ImageError(f"image {config_digest}: layer {layer.diff_id} is not in the store")
        parsed_tags = [parse_reference(t) for t in tags]
        with self._lock("meta.lock"):
            record = self._record(config_digest) or {"added": utc_now(), "repo_digests": []}
            record.update({
                "id": config_digest,
                "manifest_digest": manifest_digest,
                "manifest_media_type": manifest_media_type,
                "layers": [layer.__dict__ for layer in layers],
            })
            if repo_digest and repo_digest not in record["repo_digests"]:
                record["repo_digests"].append(repo_digest)
            self._write_json(self._record_path(config_digest), record)
            if parsed_tags:
                index = self._tags()
                for ref in parsed_tags:
                    index[str(ref.with_tag(ref.tag or "latest"))] = config_digest
                self._write_json(self.root / "repositories.json", index)
        log.info("image %s committed (tags %s)", config_digest[:19], ", ".join(map(str, parsed_tags)) or "none")
        return self.get(config_digest)

    def tag(self, src: str, dst: str) -> Image:
        """Point the tag ``dst`` at the image ``src`` names (moving it if it existed)."""
        image_id = self._resolve_id(src)
        target = parse_reference(dst)
        if target.digest:
            raise InvalidReference(dst, "cannot tag with a digest")
        with self._lock("meta.lock"):
            index = self._tags()
            index[str(target)] = image_id
            self._write_json(self.root / "repositories.json", index)
        return self.get(image_id)

    def import_rootfs(self, source: str | Path | IO[bytes], ref: str | None = None,
                      changes: list[str] | None = None, message: str | None = None) -> Image:
        """Make a one-layer image from a rootfs tarball (plain or gzip), like ``docker import``.

        ``changes`` are Dockerfile-style instructions applied to the config (see oci.apply_changes).
        A malformed tarball raises LayerError and leaves nothing in the store.
        """
        target = parse_reference(ref) if ref else None
        container_config = oci.apply_changes({}, changes)
        what = f"import {source if isinstance(source, (str, Path)) else 'stream'}"
        try:
            return self._import_rootfs(source, target, container_config, message, what)
        except BaseException:
            self.collect_garbage()
            raise

    def _import_rootfs(self, source: str | Path | IO[bytes], target: Reference | None, container_config: dict,
                       message: str | None, what: str) -> Image:
        with contextlib.ExitStack() as stack:
            stream: BinaryIO = (stack.enter_context(open(source, "rb")) if isinstance(source, (str, Path))
                                else source)  # type: ignore[assignment]
            with self.adding():
                plain = stack.enter_context(tempfile.NamedTemporaryFile(dir=self.tmp, prefix="import-"))
                shutil.copyfileobj(decompressed(stream), plain, 1 << 20)
                plain.flush()
                plain.seek(0)
                info = self.layers.unpack(plain, None, what=what)  # type: ignore[arg-type]
                plain.seek(0)
                layer = self._store_gzip_layer(plain, info.diff_id, what=what)  # type: ignore[arg-type]
                created = utc_now()
                config = oci.new_config([info.diff_id], created, architecture=host_architecture(),
                                        created_by=message or "shoal image import", container_config=container_config)
                config_bytes = oci.canonical_json(config)
                manifest = oci.build_manifest(oci.sha256_digest(config_bytes), len(config_bytes), [layer.descriptor()])
                return self.commit(manifest, config_bytes, [layer], tags=[str(target)] if target else [])

    def _store_gzip_layer(self, plain: BinaryIO, diff_id: str, *, what: str) -> LayerBlob:
        """Gzip (mtime 0, so reproducible) an uncompressed layer tar into a blob."""
        with tempfile.TemporaryFile(dir=self.tmp) as packed:
            with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=6, filename="") as gz:
                shutil.copyfileobj(plain, gz, 1 << 20)
            size = packed.tell()
            packed.seek(0)
            digest = self.blobs.put_stream(packed, what=f"{what}: layer blob")
        return LayerBlob(digest, oci.OCI_LAYER_GZIP, size, diff_id)

    def load(self, path: str | Path, tag: str | None = None) -> list[Image]:
        """Load images from an OCI image layout (directory or tar) or a ``docker save`` archive.

        Images keep the names the archive gives them; ``tag`` names the image when the archive
        holds exactly one. Every blob and layer is verified. See :mod:`.archive`.
        """
        from .archive import load_archive
        return load_archive(self, Path(path), tag=tag)

    def save(self, refs: list[str], dest: str | Path) -> Path:
        """Write images as ``docker save`` does, to the tar ``dest`` (see :mod:`.archive`)."""
        from .archive import save_archive
        return save_archive(self, list(refs), Path(dest))

    def save_oci_layout(self, ref: str, dest_dir: str | Path) -> Path:
        """Write image ``ref`` as an OCI image layout in ``dest_dir`` (merged into one that exists)."""
        from .archive import save_oci_layout
        return save_oci_layout(self, ref, Path(dest_dir))

    def pull(self, ref: str, insecure_registries: Iterable[str] = (), auth: tuple[str, str] | None = None,
             progress: ProgressFn | None = None, platform: tuple[str, str] = oci.DEFAULT_PLATFORM,
             mirrors: Iterable[str] = ()) -> Image:
        """Pull ``ref`` from its registry, or a mirror (see :func:`.registry.pull`)."""
        from .registry import pull
        return pull(self, ref, insecure_registries=insecure_registries, auth=auth, progress=progress,
                    platform=platform, mirrors=mirrors)

    def push(self, ref: str, insecure_registries: Iterable[str] = (), auth: tuple[str, str] | None = None,
             progress: ProgressFn | None = None) -> str:
        """Push the local image ``ref`` to the registry its name says; returns the manifest digest."""
        from .registry import push
        return push(self, ref, insecure_registries=insecure_registries, auth=auth, progress=progress)

    def layer_blobs(self, image: Image) -> list[LayerBlob]:
        """The stored layer blobs of ``image``, bottom first."""
        record = self._record(image.id)
        if record is None:
            raise ImageNotFound(image.id)
        return [LayerBlob(**layer) for layer in record["layers"]]

    # ------------------------------------------------------------------ removal
    def _users(self, image_id: str) -> list[str]:
        return sorted(self.in_use(image_id)) if self.in_use else []

    def remove(self, ref: str, force: bool = False) -> list[dict[str, str]]:
        """Untag or delete an image like ``docker rmi``; returns Docker's Untagged/Deleted list.

        ``name:tag`` removes that tag; the image goes when no tag is left. An id removes the image
        only if it has at most one tag, unless ``force``. An image containers use is never deleted
        (nor its layers): without ``force`` that is an ImageInUse error, with it only its tags are
        removed, except that an image a running container uses cannot be forced by id (Docker's
        "cannot be forced"). Then unreferenced layers and blobs are deleted.
        """
        result: list[dict[str, str]] = []
        with self._lock("gc.lock"), self._lock("meta.lock"):
            image_id = self._resolve_id(ref)
            index = self._tags()
            own_tags = [name for name, iid in index.items() if iid == image_id]
            by_name = None
            try:
                parsed = parse_reference(ref)
                if str(parsed) in index and not parsed.digest:
                    by_name = str(parsed)
            except InvalidReference:
                pass
            if by_name is not None and len(own_tags) > 1:
                del index[by_name]
                self._write_json(self.root / "repositories.json", index)
                return [{"Untagged": parse_reference(by_name).familiar}]
            if by_name is None and len(own_tags) > 1 and not force:
                raise ImageInUse(f"unable to delete {ref} (must be forced): image is referenced in multiple "
                                 f"repositories ({', '.join(sorted(parse_reference(t).familiar for t in own_tags))})")
            users = self._users(image_id)
            running = sorted(self.running(image_id)) if self.running else []
            if running and force and by_name is None:
                raise ImageInUse(f"conflict: unable to delete {ref} (cannot be forced) - image is being used by "
                                 f"running container(s) {', '.join(running)}")
            if users and not force:
                state = "running" if running else "stopped"
                raise ImageInUse(f"conflict: unable to remove image {ref} (must be forced) - image is being used "
                                 f"by {state} container(s) {', '.join(running or users)}")
            for name in own_tags:
                del index[name]
                result.append({"Untagged": parse_reference(name).familiar})
            self._write_json(self.root / "repositories.json", index)
            if users:  # forced: the names go, the image stays for its containers (as Docker does)
                return result
            record = self._record(image_id) or {}
            for repo_digest in record.get("repo_digests", []):
                result.append({"Untagged": repo_digest})
            self._record_path(image_id).unlink(missing_ok=True)
            result.append({"Deleted": image_id})
            self._collect_garbage()
        log.info("removed image %s", image_id[:19])
        return result

    def prune(self, all: bool = False) -> dict:
        """Delete dangling images (with ``all``: every image no container uses) and unused content.

        Returns Docker's prune report: ``{"ImagesDeleted": [...], "SpaceReclaimed": bytes}``.
        """
        deleted: list[dict[str, str]] = []
        with self._lock("gc.lock"), self._lock("meta.lock"):
            index = self._tags()
            tagged = set(index.values())
            before = self._disk_usage()
            for record in self._records():
                image_id = record["id"]
                if (image_id in tagged and not all) or self._users(image_id):
                    continue
                for name in [n for n, iid in index.items() if iid == image_id]:
                    del index[name]
                    deleted.append({"Untagged": parse_reference(name).familiar})
                self._record_path(image_id).unlink(missing_ok=True)
                deleted.append({"Deleted": image_id})
            self._write_json(self.root / "repositories.json", index)
            self._collect_garbage()
            reclaimed = max(before - self._disk_usage(), 0)
        return {"ImagesDeleted": deleted, "SpaceReclaimed": reclaimed}

    def _disk_usage(self) -> int:
        total = sum(p.stat().st_size for p in self.blobs.dir.iterdir())
        return total + sum(self.layers.size(d) for d in self.layers.all())

    def _collect_garbage(self) -> None:
        """Delete blobs and layers no record references, and stale scratch files. Hold both locks."""
        keep_blobs: set[str] = set()
        keep_layers: set[str] = set()
        for record in self._records():
            keep_blobs.update((record["id"], record["manifest_digest"]))
            for layer in record["layers"]:
                keep_blobs.add(layer["digest"])
                keep_layers.add(layer["diff_id"])
        for digest in self.blobs.all():
            if digest not in keep_blobs:
                self.blobs.remove(digest)
        for diff_id in self.layers.all():
            if diff_id not in keep_layers:
                self.layers.remove(diff_id)
        for meta in self.layers.dir.glob("*.json"):
            if not meta.with_suffix("").is_dir():
                meta.unlink(missing_ok=True)
        for leftover in self.tmp.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    def collect_garbage(self) -> None:
        """Delete every blob and layer no image record references (after a failed add, say)."""
        with self._lock("gc.lock"), self._lock("meta.lock"):
            self._collect_garbage()
