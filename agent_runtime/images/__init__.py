"""OCI images for shoal-runtimed: a content-addressed store, archives and a registry client.

Exports:
- ImageStore(root): ``resolve``, ``get``, ``list``, ``tag``, ``remove``, ``prune``,
  ``import_rootfs``, ``load``, ``save_oci_layout``, ``pull``, ``push``; Image, LayerBlob.
- parse_reference / Reference: Docker-style name normalisation.
- push_layout: push an OCI layout directory straight to a registry.
- ProgressEvent: per-layer pull/push progress.
- Errors: ImageError and its subclasses.

The names are loaded on first use (PEP 562), so that ``agent_runtime.images.reference`` (what the
CLI needs) does not cost the registry client's and the store's imports (urllib, ssl, gzip...).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    **dict.fromkeys(["ArchiveError", "DigestMismatch", "ImageError", "ImageInUse", "ImageNotFound", "InvalidReference",
                     "LayerError", "ManifestUnknown", "RegistryAuthError", "RegistryError"], "errors"),
    "ProgressEvent": "ingest",
    "Reference": "reference", "parse_reference": "reference",
    "docker_config_auth": "registry", "is_insecure": "registry", "push_layout": "registry",
    "Image": "store", "ImageStore": "store", "LayerBlob": "store",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
