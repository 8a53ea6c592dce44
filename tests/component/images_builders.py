"""Hand-made layers, OCI layouts and docker-save archives for the image tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tar(entries: list[tuple]) -> bytes:
    """entries: (name, kind, extra...) with kind in file/dir/symlink/hardlink/raw.

    ("f", "file", b"data", mode=0o644, uid=0, gid=0), ("d", "dir", mode), ("l", "symlink", target),
    ("h", "hardlink", target), ("x", "raw", TarInfo-mutator).
    """
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            name, kind, *rest = entry
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            data = None
            if kind == "file":
                payload = rest[0] if rest else b""
                info.size = len(payload)
                info.mode = rest[1] if len(rest) > 1 else 0o644
                if len(rest) > 2:
                    info.uid, info.gid = rest[2], rest[3]
                data = io.BytesIO(payload)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, (rest[0] if rest else 0o755)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, rest[0]
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, rest[0]
            elif kind == "raw":
                rest[0](info)
            tar.addfile(info, data)
    return out.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def image_parts(layers: list[bytes], cmd=("sh",), arch="amd64") -> tuple[bytes, bytes, list[bytes]]:
    """(manifest, config, gzipped layer blobs) for uncompressed layer tars."""
    blobs = [gz(layer) for layer in layers]
    config = json.dumps({"architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
                         "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": sha(b), "size": len(b)} for b in blobs]}).encode()
    return manifest, config, blobs


def write_blob(root: Path, data: bytes) -> str:
    digest = sha(data)
    path = root / "blobs" / "sha256" / digest.split(":")[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def write_oci_layout(root: Path, layers: list[bytes], *, ref_name: str | None = "latest",
                     image_name: str | None = None, cmd=("sh",)) -> tuple[str, str]:
    """An OCI layout holding one image; returns (manifest digest, config digest)."""
    manifest, config, blobs = image_parts(layers, cmd)
    for blob in (config, *blobs, manifest):
        write_blob(root, blob)
    annotations = {}
    if ref_name:
        annotations["org.opencontainers.image.ref.name"] = ref_name
    if image_name:
        annotations["io.containerd.image.name"] = image_name
    entry = {"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest)}
    if annotations:
        entry["annotations"] = annotations
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return sha(manifest), sha(config)


def write_multiarch_layout(root: Path, per_arch: dict[str, list[bytes]], tag: str = "latest") -> dict[str, str]:
    """An OCI layout whose tag is an image index over architectures; returns arch -> config digest."""
    entries, configs = [], {}
    for arch, layers in per_arch.items():
        manifest, config, blobs = image_parts(layers, arch=arch)
        for blob in (config, *blobs, manifest):
            write_blob(root, blob)
        configs[arch] = sha(config)
        entries.append({"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
                        "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    write_blob(root, index)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": sha(index), "size": len(index),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return configs


def write_docker_archive(path: Path, layers: list[bytes], repo_tags: list[str]) -> str:
    """A ``docker save``-style tarball (uncompressed layer.tar files); returns the config digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                         "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]}}).encode()
    config_name = sha(config).split(":")[1] + ".json"
    files = {config_name: config}
    layer_names = []
    for i, layer in enumerate(layers):
        name = f"{sha(layer).split(':')[1]}/layer.tar"
        files[name] = layer
        layer_names.append(name)
    files["manifest.json"] = json.dumps([{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sha(config)
