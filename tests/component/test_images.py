"""Images as a user meets them: import, load, push and pull against Debian's docker-registry,
skopeo interop, whiteouts, digest checks and clear errors."""

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


def test_import_rootfs_tarball(store, tmp_path):
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(LAYER)
    image = store.import_rootfs(tar, "local/hello:1")
    assert store.resolve("local/hello:1").id == image.id
    assert files_of(image)["bin/hello"] == b"hi\n"
    assert [i.id for i in store.list()] == [image.id]


def test_load_oci_layout_and_docker_archive(store, tmp_path):
    layout = tmp_path / "layout"
    _, config = write_oci_layout(layout, [LAYER], image_name="example/oci:v1")
    loaded = store.load(layout)
    assert loaded[0].id == config
    archive = tmp_path / "saved.tar"
    config2 = write_docker_archive(archive, [LAYER], ["example/saved:v2"])
    assert store.load(archive)[0].id == config2
    assert files_of(store.resolve("example/saved:v2"))["etc/passwd"].startswith(b"root")


def test_whiteouts_and_opaque_directories(store, tmp_path):
    base = make_tar([("a", "dir"), ("a/keep", "file", b"1"), ("a/gone", "file", b"2"), ("b", "dir"),
                     ("b/old", "file", b"3")])
    top = make_tar([("a", "dir"), ("a/.wh.gone", "file", b""), ("b", "dir"), ("b/.wh..wh..opq", "file", b""),
                    ("b/new", "file", b"4")])
    layout = tmp_path / "layout"
    write_oci_layout(layout, [base, top], image_name="example/wh:1")
    image = store.load(layout)[0]
    files = files_of(image)
    assert files.get("a/keep") == b"1"
    assert "a/gone" not in files
    assert files.get("b/new") == b"4"
    # Opaque dir: the lower layer's b/old must be hidden by overlayfs (trusted.overlay.opaque).
    top_b = Path(image.layers[-1]) / "b"
    assert os.getxattr(top_b, "trusted.overlay.opaque") == b"y"


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


def test_malformed_tarball_is_refused_and_leaves_nothing(store, tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tarball at all" * 100)
    with pytest.raises(ImageError):
        store.import_rootfs(bad, "bad/image:1")
    escape = tmp_path / "escape.tar"
    escape.write_bytes(make_tar([("../../etc/evil", "file", b"x")]))
    with pytest.raises(ImageError):
        store.import_rootfs(escape, "bad/escape:1")
    assert store.list() == []
    layers = store.root / "layers" if hasattr(store, "root") else None
    if layers is not None and layers.exists():
        assert not [p for p in layers.iterdir() if not p.name.startswith(".")]


def test_busybox_demo_image_is_reproducible(tmp_path, store):
    from deploy.images import build_busybox
    if not Path("/bin/busybox").exists():
        pytest.skip("busybox-static is not installed")
    build_busybox.build_layout(tmp_path / "one")
    build_busybox.build_layout(tmp_path / "two")
    assert (tmp_path / "one" / "index.json").read_text() == (tmp_path / "two" / "index.json").read_text()
    image = build_busybox.import_into_store(store, tmp_path / "one")
    files = files_of(store.resolve("shoal/busybox:latest"))
    assert "bin/busybox" in files and "etc/passwd" in files
    assert image is not None
