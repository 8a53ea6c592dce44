"""Image archives: OCI image layouts (directory or tar) and ``docker save`` tarballs.

``load_archive`` reads either format (a tar is first extracted, safely, to scratch space) and
adds every image through :func:`.ingest.ingest_manifest`, verifying every blob. ``save_oci_layout``
writes an image as an OCI layout that skopeo, umoci, runc tooling and ``load_archive`` accept;
``save_archive`` writes images as ``docker save`` (Docker 25+) does: one tar that is both an OCI
layout (index.json, blobs/sha256) and a docker-archive (manifest.json), so
``docker load``, ``podman load``, ``skopeo`` and ``load_archive`` all read it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from . import oci
from .errors import ArchiveError, InvalidReference
from .ingest import ingest_manifest
from .reference import parse_reference
from .unpack import unpack_layer

if TYPE_CHECKING:
    from .store import Image, ImageStore

log = logging.getLogger(__name__)

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


def load_archive(store: "ImageStore", path: Path, *, tag: str | None = None) -> list["Image"]:
    """Load every image in the archive or layout at ``path``; see ImageStore.load.

    On any error nothing the load added stays in the store.
    """
    what = f"load {path}"
    if not path.exists():
        raise ArchiveError(f"{what}: no such file or directory")
    if tag is not None:
        parse_reference(tag)
    try:
        with store.adding():
            if path.is_dir():
                images = _load_dir(store, path, what)
            else:
                with tempfile.TemporaryDirectory(dir=store.tmp, prefix="load-") as scratch, open(path, "rb") as f:
                    unpack_layer(f, Path(scratch), what=what, whiteouts=False)
                    images = _load_dir(store, Path(scratch), what)
            if tag is not None:
                if len(images) != 1:
                    raise ArchiveError(f"{what}: cannot apply tag {tag}: the archive holds {len(images)} images")
                images = [store.tag(images[0].id, tag)]
    except BaseException:
        store.collect_garbage()
        raise
    return images


def _member(root: Path, relative: str, what: str) -> Path:
    """``root/relative``, refusing names that leave ``root``."""
    candidate = (root / relative).resolve()
    if not str(candidate).startswith(str(root.resolve()) + os.sep):
        raise ArchiveError(f"{what}: path {relative!r} leaves the archive")
    if not candidate.is_file():
        raise ArchiveError(f"{what}: {relative} is missing from the archive")
    return candidate


def _load_dir(store: "ImageStore", root: Path, what: str) -> list["Image"]:
    if (root / "manifest.json").is_file():
        return _load_docker(store, root, what)
    if (root / "index.json").is_file():
        return _load_oci(store, root, what)
    raise ArchiveError(f"{what}: neither a docker-save archive (manifest.json) nor an OCI layout (index.json)")


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_bytes())
    except ValueError as exc:
        raise ArchiveError(f"{what}: {path.name} is not valid JSON: {exc}") from exc


def _load_docker(store: "ImageStore", root: Path, what: str) -> list["Image"]:
    entries = _read_json(root / "manifest.json", what)
    if not isinstance(entries, list) or not entries:
        raise ArchiveError(f"{what}: manifest.json is not a non-empty list")
    images = []
    for entry in entries:
        if not isinstance(entry, dict) or "Config" not in entry or not isinstance(entry.get("Layers"), list):
            raise ArchiveError(f"{what}: manifest.json entry without Config and Layers")
        config_bytes = _member(root, entry["Config"], what).read_bytes()
        config_digest = oci.sha256_digest(config_bytes)
        descriptors = []
        paths = {}
        for relative in entry["Layers"]:
            layer_path = _member(root, relative, what)
            with open(layer_path, "rb") as f:
                digest = store.blobs.put_stream(f, what=f"{what}: layer {relative}")
                f.seek(0)
                gzipped = f.read(2) == b"\x1f\x8b"
            media = oci.OCI_LAYER_GZIP if gzipped else oci.OCI_LAYER
            descriptors.append(oci.descriptor(media, digest, layer_path.stat().st_size))
            paths[digest] = layer_path
        manifest = oci.build_manifest(config_digest, len(config_bytes), descriptors)
        store.blobs.put_bytes(config_bytes, config_digest, what=f"{what}: config {entry['Config']}")
        tags = [t for t in entry.get("RepoTags") or [] if t]
        images.append(ingest_manifest(store, manifest, lambda desc: _open_blob(store, desc), what=what, tags=tags))
    return images


def _open_blob(store: "ImageStore", desc: dict) -> BinaryIO:
    return store.blobs.open(desc["digest"])


def _layout_blob(root: Path, desc: dict, what: str) -> Path:
    digest = desc.get("digest", "")
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or len(hexpart) != 64:
        raise ArchiveError(f"{what}: descriptor digest {digest!r} is not sha256")
    return _member(root, f"blobs/sha256/{hexpart}", what)


def _names(desc: dict) -> list[str]:
    """Image names an OCI index entry carries: containerd's full name, or a full ref.name."""
    annotations = desc.get("annotations") or {}
    for key in (oci.IMAGE_NAME_ANNOTATION, oci.REF_NAME_ANNOTATION):
        name = annotations.get(key)
        if name and ("/" in name or ":" in name):
            try:
                parse_reference(name)
                return [name]
            except InvalidReference:
                continue
    return []


def _load_oci(store: "ImageStore", root: Path, what: str) -> list["Image"]:
    layout = root / "oci-layout"
    if layout.is_file():
        version = (_read_json(layout, what) or {}).get("imageLayoutVersion")  # type: ignore[union-attr]
        if version != "1.0.0":
            raise ArchiveError(f"{what}: unsupported imageLayoutVersion {version!r}")
    index = _read_json(root / "index.json", what)
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise ArchiveError(f"{what}: index.json lists no manifests")

    def open_blob(desc: dict) -> BinaryIO:
        return open(_layout_blob(root, desc, what), "rb")

    images = []
    for entry in manifests:
        desc = entry
        for _ in range(4):  # indexes may nest; pick linux/amd64 at each level
            raw = _verified(store, root, desc, what)
            parsed = oci.parse_manifest(raw, desc.get("mediaType"), what=f"{what}: {desc['digest']}")
            if isinstance(parsed, oci.Manifest):
                break
            desc = oci.choose_platform(parsed, what=f"{what}: index {desc['digest']}")
        else:
            raise ArchiveError(f"{what}: indexes nested too deeply")
        images.append(ingest_manifest(store, raw, open_blob, what=what, tags=_names(entry),
                                      media_type=desc.get("mediaType")))
    return images


def _verified(store: "ImageStore", root: Path, desc: dict, what: str) -> bytes:
    path = _layout_blob(root, desc, what)
    with open(path, "rb") as f:
        store.blobs.put_stream(f, desc["digest"], desc.get("size"), what=f"{what}: blob {desc['digest']}")
    return store.blobs.read(desc["digest"])


def _save_targets(store: "ImageStore", ref: str) -> list[tuple["Image", list[str]]]:
    """What ``docker save REF`` writes: (image, the names recorded for it). A name without a tag
    is every tagged image of that repository; a tag, that one; an ID (or a digest), the image
    without names. ImageNotFound names REF when nothing matches."""
    tagged = ":" in ref.rsplit("/", 1)[-1] or "@" in ref
    try:
        parsed = parse_reference(ref)
    except InvalidReference:
        parsed = None
    if parsed is not None and not tagged:
        found = []
        for image in store.list():
            tags = [t for t in image.repo_tags if parse_reference(t).name == parsed.name]
            if tags:
                found.append((image, tags))
        if found:
            return found
    image = store.resolve(ref)
    if parsed is None or parsed.digest:
        return [(image, [])]
    return [(image, [t for t in image.repo_tags if str(parse_reference(t)) == str(parsed)])]


def save_archive(store: "ImageStore", refs: list[str], dest: Path) -> Path:
    """Write the images ``refs`` name into the tar ``dest`` (see the module docstring). Blobs are
    linked into scratch space first, so the store is read once; ImageNotFound names a missing ref
    and nothing is written."""
    import tarfile
    if not refs:
        raise ArchiveError("save: give at least one image")
    targets: dict[str, list[str]] = {}       # image id -> names, in the order asked
    images = {}
    for ref in refs:
        for image, tags in _save_targets(store, ref):
            images[image.id] = image
            names = targets.setdefault(image.id, [])
            names += [t for t in tags if t not in names]
    with tempfile.TemporaryDirectory(dir=store.tmp, prefix="save-") as scratch:
        root = Path(scratch)
        manifest = []
        for image_id, tags in targets.items():
            image = images[image_id]
            for name in tags or [image_id]:
                save_oci_layout(store, name, root)
            layers = [f"blobs/sha256/{layer.digest.split(':', 1)[1]}" for layer in store.layer_blobs(image)]
            manifest.append({"Config": f"blobs/sha256/{image.id.split(':', 1)[1]}", "RepoTags": tags or None,
                             "Layers": layers})
        (root / "manifest.json").write_text(json.dumps(manifest))
        tmp = dest.with_name(dest.name + ".tmp")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(root.rglob("*")):
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isfile():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        os.rename(tmp, dest)
    log.info("saved %s as an image archive", ", ".join(refs))
    return dest


def save_oci_layout(store: "ImageStore", ref: str, dest: Path) -> Path:
    """Write image ``ref`` into the OCI layout ``dest`` (created, or merged into if it exists).

    The index entry is annotated with ``org.opencontainers.image.ref.name`` = the tag (so
    ``skopeo copy oci:DEST:TAG`` finds it) and ``io.containerd.image.name`` = the full name.
    """
    image = store.resolve(ref)
    try:
        parsed = parse_reference(ref)
    except InvalidReference:
        parsed = None
    if parsed is None or parsed.digest or str(parsed) not in {str(parse_reference(t)) for t in image.repo_tags}:
        parsed = parse_reference(image.repo_tags[0]) if image.repo_tags else None
    blob_dir = dest / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    digests = [image.manifest_digest, image.id] + [layer.digest for layer in store.layer_blobs(image)]
    for digest in digests:
        target = blob_dir / digest.split(":", 1)[1]
        if target.exists():
            continue
        try:
            os.link(store.blobs.path(digest), target)
        except OSError:
            shutil.copyfile(store.blobs.path(digest), target)
    (dest / "oci-layout").write_text(json.dumps(LAYOUT_VERSION))
    index_path = dest / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {
        "schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": []}
    annotations = {}
    if parsed is not None:
        annotations = {oci.REF_NAME_ANNOTATION: parsed.tag or "latest", oci.IMAGE_NAME_ANNOTATION: str(parsed)}
    entry = oci.descriptor(image.manifest_media_type, image.manifest_digest, store.blobs.size(image.manifest_digest),
                           platform={"os": image.config.get("os", "linux"),
                                     "architecture": image.config.get("architecture", "amd64")})
    if annotations:
        entry["annotations"] = annotations
        # the same full name replaces its entry; images of other repositories with the same tag stay
        index["manifests"] = [m for m in index["manifests"]
                              if (m.get("annotations") or {}).get(oci.IMAGE_NAME_ANNOTATION,
                                                                  (m.get("annotations") or {}).get(oci.REF_NAME_ANNOTATION))
                              not in (annotations[oci.IMAGE_NAME_ANNOTATION],)]
    index["manifests"].append(entry)
    tmp = dest / ".index.json.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.rename(tmp, index_path)
    log.info("saved %s as OCI layout %s", ref, dest)
    return dest
