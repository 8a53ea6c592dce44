"""Content-addressed blob storage: ``ROOT/blobs/sha256/<hex>``.

A blob is written to a temporary file beside its final place while it is hashed, checked against
the digest and size it was announced with, fsynced and renamed into place, so a reader never sees a
partial or wrong blob under a digest name. Safe to call from several threads and processes at once:
two writers of the same blob both rename identical content.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import DigestMismatch, ImageError
from .reference import is_digest

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class BlobStore:
    """Blobs under ``root/blobs/sha256``; temporary files under ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"
        self.tmp = root / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (whether or not it exists)."""
        if not is_digest(digest):
            raise ImageError(f"blob {digest!r}: only sha256 digests are supported")
        return self.dir / digest.split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def read(self, digest: str) -> bytes:
        """The bytes of blob ``digest``; ImageError naming the digest when it is missing."""
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError as exc:
            raise ImageError(f"blob {digest} is missing from the store") from exc

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError as exc:
            raise ImageError(f"blob {digest} is missing from the store") from exc

    def put_bytes(self, data: bytes, expected_digest: str | None = None, *, what: str = "blob") -> str:
        """Store ``data``; verify it against ``expected_digest`` when given. Returns its digest."""
        return self.ingest(iter([data]), expected_digest, len(data) if expected_digest else None, what=what)

    def put_stream(self, stream: BinaryIO, expected_digest: str | None = None, expected_size: int | None = None,
                   *, what: str = "blob", on_chunk: Callable[[int], None] | None = None) -> str:
        """Store everything read from ``stream``, verified like :meth:`ingest`."""
        def chunks() -> Iterator[bytes]:
            while chunk := stream.read(CHUNK):
                yield chunk
        return self.ingest(chunks(), expected_digest, expected_size, what=what, on_chunk=on_chunk)

    def ingest(self, chunks: Iterator[bytes], expected_digest: str | None = None, expected_size: int | None = None,
               *, what: str = "blob", on_chunk: Callable[[int], None] | None = None) -> str:
        """Write ``chunks`` as one blob and return its digest.

        Raises DigestMismatch (naming ``what``) and stores nothing when the content does not match
        ``expected_digest`` or ``expected_size``. If the blob already exists the new copy is dropped.
        """
        if expected_digest is not None:
            self.path(expected_digest)  # validates the algorithm
        hasher = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(prefix="blob-", dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if expected_size is not None and size > expected_size:
                        raise DigestMismatch(f"{what}: more than the announced {expected_size} bytes")
                    if on_chunk:
                        on_chunk(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + hasher.hexdigest()
            if expected_size is not None and size != expected_size:
                raise DigestMismatch(f"{what}: got {size} bytes, expected {expected_size}")
            if expected_digest is not None and digest != expected_digest:
                raise DigestMismatch(f"{what}: content has digest {digest}, expected {expected_digest}")
            final = self.path(digest)
            if final.exists():
                os.unlink(tmp_name)
            else:
                os.chmod(tmp_name, 0o644)
                os.rename(tmp_name, final)
                log.debug("stored blob %s (%d bytes)", digest, size)
            return digest
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise

    def verify(self, digest: str) -> bool:
        """True when the stored blob still hashes to its name."""
        hasher = hashlib.sha256()
        with self.open(digest) as f:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
        return "sha256:" + hasher.hexdigest() == digest

    def remove(self, digest: str) -> None:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            pass

    def all(self) -> list[str]:
        return ["sha256:" + p.name for p in self.dir.iterdir() if len(p.name) == 64]
