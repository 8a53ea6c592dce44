"""The image package's error hierarchy.

Every message names the image (or blob, layer, registry) and the operation that failed, so it can
be shown to a user as is. Callers at the server edge translate these to status codes.
"""

from __future__ import annotations


class ImageError(Exception):
    """Base class of every error raised by ``agent_runtime.images``."""


class InvalidReference(ImageError):
    """An image reference (``name[:tag][@digest]``) is not well formed."""

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"invalid reference format {ref!r}: {reason}")
        self.ref = ref


class ImageNotFound(ImageError):
    """No image in the local store matches a reference."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"No such image: {ref}")
        self.ref = ref


class ImageInUse(ImageError):
    """An image cannot be removed because containers use it or it has several names."""


class DigestMismatch(ImageError):
    """Content does not hash to the digest (or size) it was announced with."""


class LayerError(ImageError):
    """A layer or rootfs tarball is malformed, unsafe, or does not match its diff_id."""


class ArchiveError(ImageError):
    """An image archive (OCI layout, ``docker save`` tarball) is malformed or incomplete."""


class RegistryError(ImageError):
    """A registry operation failed; the message names the image and the registry."""

    def __init__(self, message: str, *, registry: str = "", ref: str = "") -> None:
        super().__init__(message)
        self.registry = registry
        self.ref = ref


class ManifestUnknown(RegistryError):
    """The registry has no manifest (or repository) for the reference."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials, or wants some and none were given."""
