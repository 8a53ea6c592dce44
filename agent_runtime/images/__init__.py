"""OCI images for shoal-runtimed: a content-addressed store, archives and a registry client.

Exports:
- ImageStore(root): ``resolve``, ``get``, ``list``, ``tag``, ``remove``, ``prune``,
  ``import_rootfs``, ``load``, ``save_oci_layout``, ``pull``, ``push``; Image, LayerBlob.
- parse_reference / Reference: Docker-style name normalisation.
- push_layout: push an OCI layout directory straight to a registry.
- ProgressEvent: per-layer pull/push progress.
- Errors: ImageError and its subclasses.
"""

from .errors import (ArchiveError, DigestMismatch, ImageError, ImageInUse, ImageNotFound, InvalidReference,
                     LayerError, ManifestUnknown, RegistryAuthError, RegistryError)
from .ingest import ProgressEvent
from .reference import Reference, parse_reference
from .registry import docker_config_auth, is_insecure, push_layout
from .store import Image, ImageStore, LayerBlob

__all__ = [
    "ArchiveError", "DigestMismatch", "Image", "ImageError", "ImageInUse", "ImageNotFound", "ImageStore",
    "InvalidReference", "LayerBlob", "LayerError", "ManifestUnknown", "ProgressEvent", "Reference",
    "RegistryAuthError", "RegistryError", "docker_config_auth", "is_insecure", "parse_reference", "push_layout",
]
