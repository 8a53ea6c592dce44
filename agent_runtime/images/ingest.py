"""Adding one image from its manifest: the path shared by ``load`` and ``pull``.

The caller supplies the manifest bytes and a way to open any blob the manifest names; this module
verifies and stores the config, stores and unpacks each missing layer (checking blob digests and
sizes, and diff_ids), then commits the record. Progress is reported per layer, as Docker prints it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable

from . import oci
from .errors import ImageError

if TYPE_CHECKING:
    from .store import Image, ImageStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    """One step of one layer: ``id`` is the short layer digest as Docker prints it (12 hex).

    ``status`` is one of "Pulling fs layer", "Already exists", "Downloading", "Verifying Checksum",
    "Download complete", "Extracting", "Pull complete" (pull) or "Preparing", "Pushing",
    "Layer already exists", "Pushed" (push). ``current``/``total`` are bytes while downloading.
    """

    id: str
    status: str
    current: int = 0
    total: int = 0


ProgressFn = Callable[[ProgressEvent], None]
BlobOpener = Callable[[dict], BinaryIO]


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def ingest_manifest(store: "ImageStore", manifest: bytes, open_blob: BlobOpener, *, what: str,
                    tags: Iterable[str] = (), repo_digest: str | None = None,
                    media_type: str | None = None, progress: ProgressFn | None = None) -> "Image":
    """Store the image ``manifest`` describes and return it. Call inside ``store.adding()``.

    ``open_blob(descriptor)`` returns a readable stream of that blob; it is called only for
    content the store lacks. Raises DigestMismatch, LayerError or ImageError naming ``what``.
    """
    from .store import LayerBlob

    parsed = oci.parse_manifest(manifest, media_type, what=what)
    if not isinstance(parsed, oci.Manifest):
        raise ImageError(f"{what}: expected an image manifest, got an index")
    config_desc = parsed.config
    config_digest = config_desc["digest"]
    if store.blobs.has(config_digest):
        config_bytes = store.blobs.read(config_digest)
    else:
        with open_blob(config_desc) as stream:
            store.blobs.put_stream(stream, config_digest, config_desc.get("size"), what=f"{what}: config {config_digest}")
        config_bytes = store.blobs.read(config_digest)
    try:
        config = json.loads(config_bytes)
        diff_ids = list(config["rootfs"]["diff_ids"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"{what}: config {config_digest} has no rootfs.diff_ids") from exc
    if len(diff_ids) != len(parsed.layers):
        raise ImageError(f"{what}: manifest has {len(parsed.layers)} layers but the config lists {len(diff_ids)} diff_ids")

    def report(layer_id: str, status: str, current: int = 0, total: int = 0) -> None:
        if progress is not None:
            progress(ProgressEvent(layer_id, status, current, total))

    layers: list[LayerBlob] = []
    todo = []
    for desc, diff_id in zip(parsed.layers, diff_ids):
        media = desc.get("mediaType", oci.OCI_LAYER_GZIP)
        oci.check_layer_media_type(media, what=f"{what}: layer {desc.get('digest')}")
        layer = LayerBlob(desc["digest"], media, int(desc["size"]), diff_id)
        layers.append(layer)
        if store.layers.has(diff_id) and store.blobs.has(layer.digest):
            report(short(layer.digest), "Already exists")
        else:
            report(short(layer.digest), "Pulling fs layer")
            todo.append((desc, layer))
    for desc, layer in todo:
        layer_id = short(layer.digest)
        layer_what = f"{what}: layer {layer.digest}"
        if not store.blobs.has(layer.digest):
            done = 0

            def on_chunk(n: int, layer_id: str = layer_id, total: int = layer.size) -> None:
                nonlocal done
                done += n
                report(layer_id, "Downloading", done, total)

            with open_blob(desc) as stream:
                store.blobs.put_stream(stream, layer.digest, layer.size, what=layer_what, on_chunk=on_chunk)
            report(layer_id, "Download complete", layer.size, layer.size)
        report(layer_id, "Extracting", 0, layer.size)
        with store.blobs.open(layer.digest) as blob:
            store.layers.unpack(blob, layer.diff_id, what=layer_what)
        report(layer_id, "Pull complete")
    return store.commit(manifest, config_bytes, layers, tags=tags, repo_digest=repo_digest,
                        manifest_media_type=parsed.media_type)
