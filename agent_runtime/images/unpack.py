"""Safe layer extraction into a directory meant to be one overlayfs lowerdir.

Python 3.11.2 has no tarfile extraction filters, so every member is checked and created by hand:
- names must be relative and must not climb out with ``..``;
- parent directories are resolved chroot-style inside the destination (absolute symlink targets
  mean the layer root, as Docker does); a path whose symlinks climb above the root is refused;
- the final path component is never followed: an existing entry is replaced, not written through;
- modes are kept, including setuid/setgid/sticky; owners are numeric; mtimes and ``SCHILY.xattr``
  extended attributes are kept;
- whiteouts become overlayfs whiteouts: ``.wh.NAME`` -> a 0/0 character device ``NAME``, and
  ``.wh..wh..opq`` -> the ``trusted.overlay.opaque=y`` xattr on its directory.
The uncompressed stream is hashed while it is read, and checked against the expected diff_id.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import logging
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import DigestMismatch, LayerError

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PAX_PREFIX = "SCHILY.xattr."
_MAX_SYMLINK_HOPS = 40
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LayerInfo:
    """What unpacking a layer found: its diff_id (sha256 of the uncompressed tar) and content size."""

    diff_id: str
    size: int


class _HashingReader:
    """Wraps a binary stream, hashing and counting everything read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hasher = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hasher.update(data)
        self.count += len(data)
        return data


class _PeekReader:
    """Lets us look at the first bytes of a non-seekable stream (to detect gzip)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.head = raw.read(2)

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.raw.read(n)
        if n is None or n < 0:
            head, self.head = self.head, b""
            return head + self.raw.read()
        head, self.head = self.head[:n], self.head[n:]
        if len(head) < n:
            head += self.raw.read(n - len(head))
        return head


def decompressed(stream: BinaryIO) -> BinaryIO:
    """``stream`` itself, or a gzip decoder over it when it starts with the gzip magic bytes."""
    peek = _PeekReader(stream)
    if peek.head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=peek, mode="rb")  # type: ignore[arg-type]
    return peek  # type: ignore[return-value]


def unpack_layer(stream: BinaryIO, dest: Path, *, expected_diff_id: str | None = None,
                 what: str = "layer", whiteouts: bool = True) -> LayerInfo:
    """Extract the (optionally gzip-compressed) tar ``stream`` into the existing directory ``dest``.

    Raises LayerError for a malformed or unsafe tarball and DigestMismatch when the uncompressed
    bytes do not hash to ``expected_diff_id``. On error ``dest`` is left partly filled: the caller
    extracts into a scratch directory and discards it. With ``whiteouts=False`` ``.wh.`` entries are
    ordinary files (for a rootfs being imported, where they have no meaning Docker would apply).
    """
    reader = _HashingReader(decompressed(stream))  # type: ignore[arg-type]
    extractor = _Extractor(dest, what, whiteouts)
    try:
        try:
            archive = tarfile.open(fileobj=reader, mode="r|")  # type: ignore[call-overload]
        except tarfile.ReadError as exc:
            # tarfile calls an archive that starts with end-of-archive blocks "empty file";
            # such an empty layer is valid (builders emit them), a zero-byte file is not.
            if str(exc) != "empty file" or reader.count == 0:
                raise
            archive = None
        if archive is not None:
            with archive:
                for member in archive:
                    extractor.add(archive, member)
        while reader.read(_CHUNK):
            pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise LayerError(f"{what}: malformed tarball: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise LayerError(f"{what}: malformed tarball: undecodable member name") from exc
    extractor.finish()
    diff_id = "sha256:" + reader.hasher.hexdigest()
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise DigestMismatch(f"{what}: uncompressed content has digest {diff_id}, expected diff_id {expected_diff_id}")
    return LayerInfo(diff_id, extractor.size)


def _clean_parts(name: str, *, what: str) -> list[str]:
    if name.startswith("/"):
        raise LayerError(f"{what}: member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"{what}: member {name!r} climbs out of the layer with '..'")
    if any("\0" in p for p in parts):
        raise LayerError(f"{what}: member {name!r} has a NUL byte in its name")
    return parts


class _Extractor:
    """Creates tar members under ``root``; directory metadata is applied last (deepest first)."""

    def __init__(self, root: Path, what: str, whiteouts: bool) -> None:
        self.root = str(root)
        self.what = what
        self.whiteouts = whiteouts
        self.size = 0
        self.members = 0
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        os.chmod(self.root, 0o755)

    def _resolve_dir(self, parts: list[str], name: str) -> str:
        """The real path of directory ``parts`` inside root, creating missing directories.

        Symlinks are followed chroot-style; one that climbs above the root is refused.
        """
        resolved: list[str] = []
        pending = list(parts)
        hops = 0
        while pending:
            component = pending.pop(0)
            if component == "..":
                if not resolved:
                    raise LayerError(f"{self.what}: member {name!r} escapes the layer through a symlink")
                resolved.pop()
                continue
            path = os.path.join(self.root, *resolved, component)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
                resolved.append(component)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise LayerError(f"{self.what}: member {name!r}: too many levels of symlinks")
                target = os.readlink(path)
                if target.startswith("/"):
                    resolved = []
                pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise LayerError(f"{self.what}: member {name!r}: parent {'/'.join(resolved + [component])} is not a directory")
            resolved.append(component)
        return os.path.join(self.root, *resolved)

    def _clear(self, path: str, keep_dir: bool) -> bool:
        """Remove what is at ``path`` (never following it); True when a directory was kept."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return False

    def add(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.members += 1
        parts = _clean_parts(member.name, what=self.what)
        if not parts:
            if not member.isdir():
                raise LayerError(f"{self.what}: member {member.name!r} replaces the layer root with a non-directory")
            self.dirs.append((self.root, member))
            return
        parent = self._resolve_dir(parts[:-1], member.name)
        base = parts[-1]
        if self.whiteouts and base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent, base, member)
            return
        path = os.path.join(parent, base)
        if member.isdir():
            if not self._clear(path, keep_dir=True):
                os.mkdir(path, 0o700)
            self.dirs.append((path, member))
            return
        self._clear(path, keep_dir=False)
        if member.isreg():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                source = archive.extractfile(member)
                if source is not None:
                    shutil.copyfileobj(source, out, _CHUNK)
            self.size += member.size
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            link_parts = _clean_parts(member.linkname, what=self.what)
            if not link_parts:
                raise LayerError(f"{self.what}: hard link {member.name!r} points at the layer root")
            source_path = os.path.join(self._resolve_dir(link_parts[:-1], member.name), link_parts[-1])
            if not os.path.lexists(source_path):
                raise LayerError(f"{self.what}: hard link {member.name!r} -> {member.linkname!r}: target not in this layer")
            os.link(source_path, path, follow_symlinks=False)
            return
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise LayerError(f"{self.what}: member {member.name!r} has unsupported type {member.type!r}")
        self._apply_metadata(path, member)

    def _whiteout(self, parent: str, base: str, member: tarfile.TarInfo) -> None:
        if base == OPAQUE_MARKER:
            try:
                os.setxattr(parent, OPAQUE_XATTR, b"y")
            except OSError as exc:
                raise LayerError(f"{self.what}: cannot mark {member.name!r} opaque ({OPAQUE_XATTR}): {exc}") from exc
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other AUFS metadata (.wh..wh.plnk etc.): nothing to apply
        target = os.path.join(parent, base[len(WHITEOUT_PREFIX):])
        self._clear(target, keep_dir=False)
        try:
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        except OSError as exc:
            raise LayerError(f"{self.what}: cannot create whiteout for {member.name!r}: {exc}") from exc

    def _apply_metadata(self, path: str, member: tarfile.TarInfo) -> None:
        is_link = member.issym()
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        for key, value in member.pax_headers.items():
            if key.startswith(XATTR_PAX_PREFIX):
                xattr = key[len(XATTR_PAX_PREFIX):]
                try:
                    os.setxattr(path, xattr, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                        raise
                    log.debug("%s: xattr %s on %s not kept: %s", self.what, xattr, member.name, exc)
        if not is_link:
            os.chmod(path, member.mode & 0o7777)  # after chown, which clears setuid/setgid
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def finish(self) -> None:
        """Apply directory metadata, deepest first, once nothing more is written into them."""
        for path, member in sorted(self.dirs, key=lambda item: item[0].count("/"), reverse=True):
            self._apply_metadata(path, member)
