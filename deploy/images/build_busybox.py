#!/usr/bin/env python3
"""Build Shoal's demo image, ``shoal/busybox:latest``, from Debian's busybox-static.

    python deploy/images/build_busybox.py OUT_DIR [--busybox /bin/busybox]
        [--import-root RUNTIME_IMAGES_ROOT] [--push REGISTRY/shoal/busybox:latest]

writes an OCI image layout to OUT_DIR and prints the manifest digest. The image holds busybox and a
symlink per applet (from ``busybox --list-full``), /etc/passwd and /etc/group (root, nobody), /tmp,
/var/www/index.html for ``httpd -f -p 80 -h /var/www``, empty /dev /proc /sys mount points, and a
config with Cmd ["sh"] and the usual PATH. The build is reproducible: entries sorted, owners 0:0,
mtimes 0, gzip mtime 0 and no file name, compact sorted JSON, so the same busybox binary always
gives the same digests.

Importable (load it by path with importlib, registering the module in sys.modules before
``exec_module`` as dataclasses require): ``build_layout``, ``import_into_store`` and
``push_layout_to_registry``. Building needs only the standard library; importing and pushing use
``agent_runtime.images``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

IMAGE_NAME = "shoal/busybox:latest"
DEFAULT_BUSYBOX = "/bin/busybox"
EPOCH = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
INDEX_HTML = "<!DOCTYPE html>\n<html><body><h1>Hello from shoal/busybox</h1></body></html>\n"
DIRECTORIES = {  # path -> mode
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555, "root": 0o700,
    "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
    "var": 0o755, "var/www": 0o755,
}


@dataclass(frozen=True)
class BuildResult:
    """Digests of what build_layout wrote."""

    layout_dir: Path
    manifest_digest: str
    config_digest: str
    layer_digest: str
    diff_id: str


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def applets(busybox: str) -> list[str]:
    """Paths (relative, like ``usr/bin/wget``) of every applet busybox was built with."""
    listing = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
    return sorted({line.strip() for line in listing.splitlines() if "/" in line.strip()})


def _architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def layer_tar(busybox: str) -> bytes:
    """The uncompressed layer: every entry sorted by name, owned by 0:0, mtime 0."""
    binary = Path(busybox).read_bytes()
    entries: dict[str, tarfile.TarInfo] = {}
    payloads: dict[str, bytes] = {}

    def add(name: str, kind: bytes, mode: int, data: bytes = b"", linkname: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.linkname = linkname
        info.size = len(data)
        entries[name] = info
        payloads[name] = data

    for directory, mode in DIRECTORIES.items():
        add(directory, tarfile.DIRTYPE, mode)
    add("bin/busybox", tarfile.REGTYPE, 0o755, binary)
    for applet in applets(busybox):
        if applet != "bin/busybox":
            add(applet, tarfile.SYMTYPE, 0o777, linkname="/bin/busybox")
    add("etc/passwd", tarfile.REGTYPE, 0o644, PASSWD.encode())
    add("etc/group", tarfile.REGTYPE, 0o644, GROUP.encode())
    add("var/www/index.html", tarfile.REGTYPE, 0o644, INDEX_HTML.encode())
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            tar.addfile(entries[name], io.BytesIO(payloads[name]) if entries[name].isreg() else None)
    return out.getvalue()


def _busybox_version(busybox: str) -> str:
    first = subprocess.run([busybox], capture_output=True, text=True).stdout.splitlines()
    return first[0].strip() if first else "busybox"


def build_layout(out_dir: str | Path, busybox: str = DEFAULT_BUSYBOX, tag: str = "latest") -> BuildResult:
    """Write the image as an OCI layout in ``out_dir`` (replacing its index) and return its digests.

    The index entry is named ``tag`` (``org.opencontainers.image.ref.name``, for ``skopeo
    oci:OUT_DIR:latest``) and ``shoal/busybox:<tag>`` (``io.containerd.image.name``).
    """
    out = Path(out_dir)
    tar_bytes = layer_tar(busybox)
    diff_id = _sha256(tar_bytes)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=9, filename="") as gz:
        gz.write(tar_bytes)
    layer = packed.getvalue()
    config = _json({
        "architecture": _architecture(),
        "os": "linux",
        "created": EPOCH,
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "Labels": {"org.opencontainers.image.title": "shoal/busybox"}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": f"deploy/images/build_busybox.py ({_busybox_version(busybox)})"}],
    })
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha256(layer), "size": len(layer)}],
    })
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for blob in (layer, config, manifest):
        path = blobs / _sha256(blob).split(":", 1)[1]
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(blob)
            os.rename(tmp, path)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": _sha256(manifest), "size": len(manifest),
            "platform": {"os": "linux", "architecture": _architecture()},
            "annotations": {"org.opencontainers.image.ref.name": tag,
                            "io.containerd.image.name": f"shoal/busybox:{tag}"},
        }],
    }
    (out / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(_json(index))
    return BuildResult(out, _sha256(manifest), _sha256(config), _sha256(layer), diff_id)


def import_into_store(store: object, layout_dir: str | Path, ref: str = IMAGE_NAME) -> object:
    """Load the layout into an ``agent_runtime.images.ImageStore`` (or a store root path) as ``ref``."""
    from agent_runtime.images import ImageStore
    if not isinstance(store, ImageStore):
        store = ImageStore(Path(store))  # type: ignore[arg-type]
    return store.load(Path(layout_dir), tag=ref)[0]


def push_layout_to_registry(layout_dir: str | Path, ref: str, *, insecure: bool = True,
                            auth: tuple[str, str] | None = None) -> str:
    """Push the layout's image to ``ref`` (e.g. ``127.0.0.1:5000/shoal/busybox:latest``).

    With ``insecure`` (the default, for lab registries) the registry is spoken to over plain HTTP.
    Returns the manifest digest, which equals the layout's: the manifest is pushed byte for byte.
    """
    from agent_runtime.images import parse_reference, push_layout
    registry = parse_reference(ref).registry
    return push_layout(Path(layout_dir), ref, insecure_registries=[registry] if insecure else [], auth=auth)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="directory to write the OCI image layout to")
    parser.add_argument("--busybox", default=DEFAULT_BUSYBOX, help="static busybox binary (default %(default)s)")
    parser.add_argument("--import-root", metavar="DIR", help=f"also import as {IMAGE_NAME} into the image store at DIR")
    parser.add_argument("--push", metavar="REF", help="also push to REF (plain HTTP), e.g. 127.0.0.1:5000/shoal/busybox:latest")
    parser.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    args = parser.parse_args(argv)
    if not os.access(args.busybox, os.X_OK):
        print(f"build_busybox: {args.busybox} is not an executable (apt-get install busybox-static)", file=sys.stderr)
        return 1
    out = Path(args.out_dir)
    if args.force and out.exists():
        shutil.rmtree(out)
    result = build_layout(out, args.busybox)
    print(f"built {IMAGE_NAME} in {out}: manifest {result.manifest_digest}, image id {result.config_digest}")
    if args.import_root:
        image = import_into_store(Path(args.import_root), out)
        print(f"imported as {IMAGE_NAME} ({image.id}) into {args.import_root}")  # type: ignore[attr-defined]
    if args.push:
        digest = push_layout_to_registry(out, args.push)
        print(f"pushed {args.push}@{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
