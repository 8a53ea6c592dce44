"""Images against a real registry (Debian's docker-registry on loopback): push/pull round trips,
skopeo interop, basic and bearer-token auth, digest checks and errors that name image and registry."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent_runtime.images.errors import DigestMismatch, ImageError, ImageNotFound, RegistryError
from agent_runtime.images.store import ImageStore
from tests.component.conftest_registry import PASSWORD, USER, basic_registry, plain_registry, token_registry  # noqa: F401
from tests.component.images_builders import make_tar, write_docker_archive, write_oci_layout

LAYER = make_tar([("bin", "dir"), ("bin/hello", "file", b"hi\n", 0o755), ("etc", "dir"),
                  ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n")])


@pytest.fixture
def store(tmp_path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def files_of(image) -> dict[str, bytes]:
    """The merged view of an image's layers, resolved the way overlayfs would (top wins)."""
    out: dict[str, bytes] = {}
    for layer in image.layers:
        for path in sorted(Path(layer).rglob("*")):
            rel = str(path.relative_to(layer))
            if path.is_char_device() and path.stat().st_rdev == 0:  # overlay whiteout
                for key in [k for k in out if k == rel or k.startswith(rel + "/")]:
                    del out[key]
            elif path.is_file():
                out[rel] = path.read_bytes()
    return out


def test_push_then_pull_round_trip(plain_registry, tmp_path):  # noqa: F811
    a = ImageStore(tmp_path / "a")
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(LAYER)
    ref = f"{plain_registry.host}/shoal/hello:1"
    image = a.import_rootfs(tar, ref)
    a.push(ref)
    b = ImageStore(tmp_path / "b")
    pulled = b.pull(ref)
    assert pulled.id == image.id
    assert files_of(pulled) == files_of(image)


def test_pull_of_an_image_pushed_by_skopeo(plain_registry, tmp_path):  # noqa: F811
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    layout = tmp_path / "layout"
    _, config = write_oci_layout(layout, [LAYER])
    ref = f"{plain_registry.host}/interop/skopeo:v1"
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{ref}"],
                   check=True, capture_output=True)
    image = ImageStore(tmp_path / "s").pull(ref)
    assert image.id == config
    assert files_of(image)["bin/hello"] == b"hi\n"


def test_basic_and_token_auth(basic_registry, token_registry, tmp_path):  # noqa: F811
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(LAYER)
    for registry, auth in ((basic_registry, (USER, PASSWORD)), (token_registry, (USER, PASSWORD))):
        ref = f"{registry.host}/auth/hello:1"
        store = ImageStore(tmp_path / registry.host.replace(":", "_"))
        store.import_rootfs(tar, ref)
        with pytest.raises(RegistryError):
            store.push(ref)  # anonymous: refused
        store.push(ref, auth=auth)
        assert ImageStore(tmp_path / ("p" + registry.host.replace(":", "_"))).pull(ref, auth=auth).id


def test_corrupted_blob_is_rejected_by_digest(plain_registry, tmp_path):  # noqa: F811
    a = ImageStore(tmp_path / "a")
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(LAYER)
    ref = f"{plain_registry.host}/shoal/corrupt:1"
    tar.write_bytes(make_tar([("noise", "file", os.urandom(64 * 1024))]))  # the largest blob
    a.import_rootfs(tar, ref)
    a.push(ref)
    blobs = list((plain_registry.storage / "docker/registry/v2/blobs/sha256").rglob("data"))
    layer = max(blobs, key=lambda p: p.stat().st_size)
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    b = ImageStore(tmp_path / "b")
    with pytest.raises((DigestMismatch, ImageError)) as err:
        b.pull(ref)
    assert "digest" in str(err.value).lower() or "sha256" in str(err.value)
    assert not b.list()


def test_missing_image_names_image_and_registry(plain_registry, tmp_path):  # noqa: F811
    ref = f"{plain_registry.host}/shoal/nope:latest"
    with pytest.raises(RegistryError) as err:
        ImageStore(tmp_path / "x").pull(ref)
    assert "shoal/nope" in str(err.value) and plain_registry.host in str(err.value)
    with pytest.raises(ImageNotFound) as err:
        ImageStore(tmp_path / "y").resolve("shoal/absent:1")
    assert "shoal/absent" in str(err.value)
