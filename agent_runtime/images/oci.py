"""OCI / Docker v2 image formats: media types, manifests, configs and ``--change`` instructions.

Pure functions over bytes and dicts; no I/O. Manifests are serialised compactly with sorted keys so
that the same image always has the same manifest digest.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass

from .errors import ArchiveError, ImageError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
# distribution 2.8 answers MANIFEST_UNKNOWN for an OCI manifest unless the OCI type is accepted.
ACCEPT_MANIFESTS = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"

DEFAULT_PLATFORM = ("linux", "amd64")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: object) -> bytes:
    """Compact JSON with sorted keys: the bytes whose digest identifies a manifest or config."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def descriptor(media_type: str, digest: str, size: int, **extra: object) -> dict:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def build_manifest(config_digest: str, config_size: int, layers: list[dict]) -> bytes:
    """An OCI image manifest referencing a config and layer descriptors (bottom layer first)."""
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config_digest, config_size),
        "layers": layers,
    })


@dataclass(frozen=True)
class Manifest:
    """The parts of an image manifest we act on."""

    media_type: str
    config: dict
    layers: list[dict]


def parse_manifest(raw: bytes, media_type: str | None = None, *, what: str = "manifest") -> Manifest | list[dict]:
    """Parse manifest bytes: a Manifest, or the list of platform descriptors of an index.

    ``media_type`` is the Content-Type the bytes came with, if any; the body's own ``mediaType``
    wins when present. Schema-1 manifests are refused with an ImageError naming ``what``.
    """
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ArchiveError(f"{what}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ArchiveError(f"{what}: not a JSON object")
    kind = doc.get("mediaType") or media_type or ""
    if kind in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ImageError(f"{what}: Docker schema 1 manifests are not supported")
    if kind in INDEX_TYPES or (not kind and "manifests" in doc):
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise ArchiveError(f"{what}: index without a manifests list")
        return manifests
    if "config" not in doc or not isinstance(doc.get("layers"), list):
        raise ArchiveError(f"{what}: manifest without config or layers (media type {kind or 'unknown'})")
    return Manifest(kind or OCI_MANIFEST, doc["config"], doc["layers"])


def choose_platform(manifests: list[dict], platform: tuple[str, str] = DEFAULT_PLATFORM, *, what: str) -> dict:
    """Pick the descriptor for ``platform`` (os, architecture) from an index; raise if none fits.

    Among several candidates for the same os/arch, one without a variant (or ``v1`` for amd64) is
    preferred, as containerd does for linux/amd64.
    """
    os_name, arch = platform
    candidates = [m for m in manifests
                  if (m.get("platform") or {}).get("os") == os_name
                  and (m.get("platform") or {}).get("architecture") == arch
                  and m.get("mediaType", OCI_MANIFEST) in MANIFEST_TYPES + INDEX_TYPES]
    if not candidates:
        offered = sorted({f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}"
                          for m in manifests})
        raise ImageError(f"{what}: no manifest for {os_name}/{arch} in the index (has {', '.join(offered) or 'none'})")
    candidates.sort(key=lambda m: (m["platform"].get("variant") not in (None, "", "v1")))
    return candidates[0]


def check_layer_media_type(media_type: str, *, what: str) -> None:
    """Raise ImageError unless ``media_type`` is a layer we can unpack (tar or tar+gzip)."""
    if media_type in (OCI_LAYER, OCI_LAYER_GZIP, DOCKER_LAYER, DOCKER_LAYER_GZIP):
        return
    if "zstd" in media_type:
        raise ImageError(f"{what}: zstd-compressed layers are not supported ({media_type})")
    if "nondistributable" in media_type or "foreign" in media_type:
        raise ImageError(f"{what}: foreign (non-distributable) layers are not supported ({media_type})")
    raise ImageError(f"{what}: unknown layer media type {media_type!r}")


def new_config(diff_ids: list[str], created: str, *, created_by: str, architecture: str = "amd64",
               container_config: dict | None = None) -> dict:
    """An OCI image config for a rootfs made of ``diff_ids`` (bottom first)."""
    return {
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": dict(container_config or {}),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": created, "created_by": created_by}],
    }


def _exec_form(args: str) -> list[str]:
    args = args.strip()
    if args.startswith("["):
        try:
            value = json.loads(args)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", args]


def apply_changes(container_config: dict, changes: list[str] | None) -> dict:
    """Apply Dockerfile-style ``--change`` instructions to an image's ``config`` section.

    Supported like ``docker import -c``: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER,
    VOLUME, WORKDIR. Returns a new dict; raises ImageError naming the bad instruction.
    """
    config = json.loads(json.dumps(container_config))
    for change in changes or []:
        keyword, _, args = change.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if not args:
            raise ImageError(f"change {change!r}: {keyword} needs an argument")
        if keyword == "CMD":
            config["Cmd"] = _exec_form(args)
        elif keyword == "ENTRYPOINT":
            config["Entrypoint"] = _exec_form(args)
        elif keyword == "ENV":
            env = [e for e in config.get("Env") or []]
            if "=" in args.split(" ", 1)[0]:
                pairs = [p.split("=", 1) for p in shlex.split(args)]
            else:
                key, _, value = args.partition(" ")
                pairs = [[key, value.strip()]]
            for pair in pairs:
                if len(pair) != 2 or not pair[0]:
                    raise ImageError(f"change {change!r}: ENV wants KEY=VALUE")
                env = [e for e in env if e.split("=", 1)[0] != pair[0]] + [f"{pair[0]}={pair[1]}"]
            config["Env"] = env
        elif keyword == "EXPOSE":
            ports = config.setdefault("ExposedPorts", {})
            for port in args.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
        elif keyword == "LABEL":
            labels = config.setdefault("Labels", {})
            for pair in shlex.split(args):
                key, sep, value = pair.partition("=")
                if not sep:
                    raise ImageError(f"change {change!r}: LABEL wants KEY=VALUE")
                labels[key] = value
        elif keyword == "STOPSIGNAL":
            config["StopSignal"] = args
        elif keyword == "USER":
            config["User"] = args
        elif keyword == "WORKDIR":
            config["WorkingDir"] = args
        elif keyword == "VOLUME":
            volumes = config.setdefault("Volumes", {})
            for path in (_exec_form(args) if args.startswith("[") else args.split()):
                volumes[path] = {}
        else:
            raise ImageError(f"change {change!r}: {keyword} is not supported by import "
                             "(use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)")
    return config
