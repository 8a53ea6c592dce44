"""Unpacked layers: ``ROOT/layers/<diff_id hex>/``, one directory per layer, each an overlay lowerdir.

A layer is unpacked once into a scratch directory under ``ROOT/tmp`` and renamed into place only
when it is complete and its diff_id checked, so a layer directory that exists is always whole. Its
size is kept beside it in ``ROOT/layers/<hex>.json``. Safe for concurrent callers: when two unpack
the same layer, the second rename loses and its copy is discarded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from .errors import ImageError
from .reference import is_digest
from .unpack import LayerInfo, unpack_layer

log = logging.getLogger(__name__)


class LayerStore:
    """Layer directories keyed by diff_id."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "layers"
        self.tmp = root / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, diff_id: str) -> Path:
        """The directory of layer ``diff_id`` (whether or not it exists)."""
        if not is_digest(diff_id):
            raise ImageError(f"layer {diff_id!r}: only sha256 diff_ids are supported")
        return self.dir / diff_id.split(":", 1)[1]

    def has(self, diff_id: str) -> bool:
        return self.path(diff_id).is_dir()

    def size(self, diff_id: str) -> int:
        """Bytes of file content in the layer (0 if its metadata is missing)."""
        try:
            return int(json.loads(self.path(diff_id).with_suffix(".json").read_text())["size"])
        except (OSError, ValueError, KeyError):
            return 0

    def unpack(self, stream: BinaryIO, diff_id: str | None, *, what: str, whiteouts: bool = True) -> LayerInfo:
        """Unpack ``stream`` as layer ``diff_id`` unless it is already present.

        With ``diff_id`` None (an imported rootfs) the digest is learned while unpacking. Raises
        LayerError / DigestMismatch and leaves nothing behind when the tarball is bad.
        """
        if diff_id is not None and self.has(diff_id):
            return LayerInfo(diff_id, self.size(diff_id))
        scratch = Path(tempfile.mkdtemp(prefix="layer-", dir=self.tmp))
        try:
            info = unpack_layer(stream, scratch, expected_diff_id=diff_id, what=what, whiteouts=whiteouts)
            final = self.path(info.diff_id)
            if final.is_dir():
                self._discard(scratch)
                return LayerInfo(info.diff_id, self.size(info.diff_id))
            meta = final.with_suffix(".json")
            meta_tmp = self.tmp / f"{final.name}.{os.getpid()}.json"
            meta_tmp.write_text(json.dumps({"diff_id": info.diff_id, "size": info.size}))
            os.rename(meta_tmp, meta)
            try:
                os.rename(scratch, final)
            except OSError:
                if not final.is_dir():
                    raise
                self._discard(scratch)  # a concurrent unpack of the same layer won
            log.info("unpacked layer %s (%d bytes)", info.diff_id[:19], info.size)
            return info
        except BaseException:
            self._discard(scratch)
            raise

    def remove(self, diff_id: str) -> None:
        """Delete a layer: renamed away first, so it disappears atomically, then deleted."""
        final = self.path(diff_id)
        if final.is_dir():
            doomed = Path(tempfile.mkdtemp(prefix="rm-", dir=self.tmp))
            os.rename(final, doomed / "layer")
            self._discard(doomed)
        final.with_suffix(".json").unlink(missing_ok=True)

    def all(self) -> list[str]:
        return ["sha256:" + p.name for p in self.dir.iterdir() if p.is_dir() and len(p.name) == 64]

    @staticmethod
    def _discard(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
