"""Pull and push against Debian's docker-registry on loopback: round trips, skopeo interop, image
indexes, digest checks, error messages, Basic and Bearer auth."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from agent_runtime.images import (DigestMismatch, ImageStore, ManifestUnknown, RegistryAuthError, RegistryError,
                                  push_layout)
from agent_runtime.images.registry import RegistryClient
from tests.component.conftest_registry import (PASSWORD, USER, basic_registry, plain_registry,  # noqa: F401
                                               token_registry)
from tests.component.images_builders import gz, make_tar, sha, write_multiarch_layout, write_oci_layout

LAYERS = [make_tar([("etc", "dir"), ("etc/motd", "file", b"hello\n")]),
          make_tar([("bin", "dir"), ("bin/app", "file", b"#!/bin/sh\n", 0o755)])]
needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


def empty(store: ImageStore) -> bool:
    return not any(store.blobs.dir.iterdir()) and not any(store.layers.dir.iterdir()) \
        and not any(store.images_dir.iterdir()) and not store._tags()


@pytest.fixture
def source(tmp_path):
    """A store holding one two-layer image, example/app:v1."""
    layout = tmp_path / "layout"
    write_oci_layout(layout, LAYERS, image_name="example/app:v1")
    store = ImageStore(tmp_path / "source")
    store.load(layout)
    return store


def test_push_then_pull_round_trip(plain_registry, source, tmp_path):
    ref = f"{plain_registry.host}/shoal/app:v1"
    source.tag("example/app:v1", ref)
    pushed = []
    digest = source.push(ref, progress=pushed.append)
    original = source.resolve("example/app:v1")
    assert digest == original.manifest_digest  # the manifest goes up byte for byte
    assert [e.status for e in pushed if e.status in ("Pushed", "Layer already exists")] == ["Pushed", "Pushed"]
    assert f"{plain_registry.host}/shoal/app@{digest}" in source.resolve(ref).repo_digests

    again = []
    source.push(ref, progress=again.append)
    assert {e.status for e in again} == {"Preparing", "Layer already exists"}

    target = ImageStore(tmp_path / "target")
    events = []
    image = target.pull(ref, progress=events.append)
    assert image.id == original.id and image.repo_tags == [ref]
    assert image.repo_digests == [f"{plain_registry.host}/shoal/app@{digest}"]
    assert (image.layers[1] / "bin/app").read_bytes() == b"#!/bin/sh\n"
    assert [e.status for e in events].count("Pull complete") == 2
    # pulled by digest, nothing is fetched again
    events.clear()
    assert target.pull(f"{plain_registry.host}/shoal/app@{digest}", progress=events.append).id == image.id
    assert {e.status for e in events} == {"Already exists"}


@needs_skopeo
def test_skopeo_pushed_image_pulls(plain_registry, tmp_path):
    layout = tmp_path / "layout"
    manifest_digest, config_digest = write_oci_layout(layout, LAYERS, ref_name="v2")
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:v2",
                    f"docker://{plain_registry.host}/skopeo/app:v2"], check=True, capture_output=True)
    image = ImageStore(tmp_path / "store").pull(f"{plain_registry.host}/skopeo/app:v2")
    assert image.id == config_digest and image.manifest_digest == manifest_digest
    assert (image.layers[0] / "etc/motd").read_bytes() == b"hello\n"


@needs_skopeo
def test_image_index_resolves_to_linux_amd64(plain_registry, tmp_path):
    layout = tmp_path / "layout"
    configs = write_multiarch_layout(layout, {
        "arm64": [make_tar([("arch", "file", b"arm64")])],
        "amd64": [make_tar([("arch", "file", b"amd64")])],
    })
    subprocess.run(["skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false", f"oci:{layout}:latest",
                    f"docker://{plain_registry.host}/multi/app:latest"], check=True, capture_output=True)
    image = ImageStore(tmp_path / "store").pull(f"{plain_registry.host}/multi/app:latest")
    assert image.id == configs["amd64"]
    assert (image.layers[0] / "arch").read_bytes() == b"amd64"


def test_missing_image_names_image_and_registry(plain_registry, tmp_path):
    store = ImageStore(tmp_path / "store")
    ref = f"{plain_registry.host}/shoal/nope:latest"
    with pytest.raises(ManifestUnknown) as err:
        store.pull(ref)
    assert str(err.value) == f"pull {ref}: manifest unknown at registry {plain_registry.host}"
    assert empty(store)


def test_unreachable_registry_names_it(tmp_path):
    # a loopback port nobody listens on: the error names image and registry, nothing is stored
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = ImageStore(tmp_path / "store")
    with pytest.raises(RegistryError, match=f"pull 127.0.0.1:{port}/shoal/x:latest: cannot reach registry 127.0.0.1:{port}"):
        store.pull(f"127.0.0.1:{port}/shoal/x:latest")
    assert empty(store)


def test_corrupted_blob_in_registry_is_rejected(plain_registry, tmp_path):
    layout = tmp_path / "layout"
    write_oci_layout(layout, LAYERS, ref_name="latest")
    ref = f"{plain_registry.host}/corrupt/app:latest"
    push_layout(layout, ref)
    bad = plain_registry.blob_file(sha(gz(LAYERS[1])))
    data = bytearray(bad.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    store = ImageStore(tmp_path / "store")
    with pytest.raises(DigestMismatch, match=sha(gz(LAYERS[1]))):
        store.pull(ref)
    assert empty(store)


def test_plain_http_only_for_loopback_and_opted_in_registries():
    def scheme(registry, insecure=()):
        return RegistryClient(registry, operation="test", insecure_registries=insecure).base.split(":")[0]
    assert scheme("127.0.0.1:5000") == "http" and scheme("localhost:5000") == "http"
    assert scheme("192.0.2.254:5000") == "https"
    assert scheme("192.0.2.254:5000", ["192.0.2.254:5000"]) == "http"
    assert scheme("192.0.2.254:5000", ["192.0.2.0/24"]) == "http"
    assert scheme("registry.example:5000", ["other.example:5000"]) == "https"


def test_basic_auth(basic_registry, source, tmp_path):
    ref = f"{basic_registry.host}/private/app:v1"
    source.tag("example/app:v1", ref)
    with pytest.raises(RegistryAuthError, match=f"registry {basic_registry.host} requires a username"):
        source.push(ref)
    with pytest.raises(RegistryAuthError, match="access denied"):
        source.push(ref, auth=(USER, "wrong"))
    digest = source.push(ref, auth=(USER, PASSWORD))
    target = ImageStore(tmp_path / "target")
    with pytest.raises(RegistryAuthError):
        target.pull(ref)
    assert target.pull(ref, auth=(USER, PASSWORD)).manifest_digest == digest


def test_bearer_token_auth(token_registry, source, tmp_path):
    ref = f"{token_registry.host}/private/app:v1"
    source.tag("example/app:v1", ref)
    with pytest.raises(RegistryAuthError):
        source.push(ref)  # anonymous tokens only grant pull
    digest = source.push(ref, auth=(USER, PASSWORD))
    assert any("scope=repository%3Aprivate%2Fapp%3Apull%2Cpush" in r for r in token_registry.token_requests)
    image = ImageStore(tmp_path / "target").pull(ref)  # anonymous pull token
    assert image.manifest_digest == digest
    with pytest.raises(RegistryAuthError, match="token server"):
        ImageStore(tmp_path / "other").pull(ref, auth=(USER, "wrong"))
