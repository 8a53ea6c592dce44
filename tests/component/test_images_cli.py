"""``shoal image ...`` as a user would type the commands, against runtimed's image endpoints
(tests/support/image_daemon.py: the real ImageAPI and store, served on a unix socket)."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from shoal.cli.images import register
from tests.component.conftest_registry import plain_registry  # noqa: F401
from tests.support.image_daemon import ImageDaemon
from tests.component.images_builders import make_tar, write_docker_archive, write_oci_layout


@pytest.fixture
def daemon(tmp_path):
    d = ImageDaemon(tmp_path).start()
    yield d
    d.stop()


@pytest.fixture
def shoal(tmp_path, monkeypatch, daemon):
    monkeypatch.setenv("SHOAL_RUNTIME_HOST", "unix://" + daemon.socket)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    group = click.Group("shoal")
    register(group)
    runner = CliRunner()

    def run(*args: str, code: int = 0, input: bytes | None = None) -> str:
        result = runner.invoke(group, list(args), catch_exceptions=False, input=input)
        assert result.exit_code == code, result.output
        return result.output
    return run


def test_import_ls_inspect_rm(shoal, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(make_tar([("hello", "file", b"hi")]))
    image_id = shoal("image", "import", "-c", "CMD [\"/hello\"]", str(rootfs), "example/hello:1").strip()
    assert image_id.startswith("sha256:")
    table = shoal("images").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:3] == ["example/hello", "1", image_id[7:19]]
    [row] = [json.loads(line) for line in shoal("image", "ls", "--format", "json").splitlines()]
    assert {"Repository", "Tag", "ID", "CreatedSince", "Size"} <= row.keys()
    assert (row["Repository"], row["Tag"], row["Size"]) == ("example/hello", "1", "2B")
    [info] = json.loads(shoal("image", "inspect", "example/hello:1"))
    assert info["Id"] == image_id and info["RepoTags"] == ["example/hello:1"]
    assert info["Config"]["Cmd"] == ["/hello"] and info["Os"] == "linux" and info["Architecture"]
    assert len(info["RootFS"]["Layers"]) == 1 and info["Size"] == 2 and info["Created"]
    assert "No such image: example/nope" in shoal("image", "inspect", "example/nope", code=1)
    assert shoal("rmi", "example/hello:1").splitlines() == ["Untagged: example/hello:1", f"Deleted: {image_id}"]
    assert shoal("images").splitlines() == ["REPOSITORY   TAG       IMAGE ID   CREATED   SIZE"]  # docker's layout


def test_load_and_malformed_input(shoal, tmp_path):
    archive = tmp_path / "save.tar"
    write_docker_archive(archive, [make_tar([("a", "file", b"a")])], ["example/saved:v1"])
    assert shoal("image", "load", "-i", str(archive)) == "Loaded image: example/saved:v1\n"
    layout = tmp_path / "layout"
    write_oci_layout(layout, [make_tar([("b", "file", b"b")])], image_name="example/layout:v2")
    assert shoal("image", "load", "-i", str(layout)) == "Loaded image: example/layout:v2\n"
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"\x00garbage" * 100)
    assert "malformed tarball" in shoal("image", "import", str(bad), "example/bad:1", code=1)
    assert "example/bad" not in shoal("images")


def test_push_pull_with_progress(shoal, tmp_path, plain_registry):
    layout = tmp_path / "layout"
    write_oci_layout(layout, [make_tar([("c", "file", b"c")])], image_name="example/pp:v1")
    shoal("image", "load", "-i", str(layout))
    ref = f"{plain_registry.host}/cli/pp:v1"
    shoal("image", "tag", "example/pp:v1", ref)
    out = shoal("push", ref)
    assert out.startswith(f"The push refers to repository [{plain_registry.host}/cli/pp]")
    assert ": Pushed" in out and "v1: digest: sha256:" in out
    shoal("image", "rm", "-f", "example/pp:v1")
    shoal("image", "rm", ref)
    out = shoal("pull", ref).splitlines()
    assert out[0] == "v1: Pulling from " + f"{plain_registry.host}/cli/pp"
    assert any(line.endswith(": Pull complete") for line in out)
    assert out[-2] == f"Status: Downloaded newer image for {ref}" and out[-1] == ref
    out = shoal("image", "pull", ref).splitlines()
    assert out[-2] == f"Status: Image is up to date for {ref}"
    missing = shoal("pull", f"{plain_registry.host}/cli/missing:v9", code=1)
    assert f"{plain_registry.host}/cli/missing:v9: manifest unknown at registry {plain_registry.host}" in missing
    assert "Total reclaimed space" in shoal("image", "prune", "-a", "-f")
    assert shoal("images", "-q") == ""


def test_save_then_load_round_trips_as_docker_archives_do(shoal, tmp_path):
    """docker save: one tar that is an OCI layout and a docker-archive (manifest.json), with the
    tags the names given select; loading it after rmi gives the same image IDs back; an unknown
    image fails before anything is written."""
    import tarfile
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(make_tar([("hello", "file", b"hi")]))
    first = shoal("image", "import", str(rootfs), "example/saved:1").strip()
    shoal("image", "tag", "example/saved:1", "example/saved:2")
    rootfs.write_bytes(make_tar([("other", "file", b"other")]))
    second = shoal("image", "import", str(rootfs), "example/other:latest").strip()
    archive = tmp_path / "out.tar"
    assert shoal("save", "-o", str(archive), "example/saved", "example/other") == ""
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())
        index = json.loads(tar.extractfile("index.json").read())
    assert {"oci-layout", "index.json", "manifest.json", f"blobs/sha256/{first[7:]}"} <= names
    assert [(m["Config"], sorted(m["RepoTags"])) for m in manifest] == [
        (f"blobs/sha256/{first[7:]}", ["example/saved:1", "example/saved:2"]),
        (f"blobs/sha256/{second[7:]}", ["example/other:latest"])]
    assert all(f"blobs/sha256/{layer.rsplit('/', 1)[1]}" in names for m in manifest for layer in m["Layers"])
    assert len(index["manifests"]) == 3            # one per name
    for ref in ("example/saved:1", "example/saved:2", "example/other:latest"):
        shoal("rmi", ref)
    assert sorted(shoal("load", "-i", str(archive)).splitlines()) == [
        "Loaded image: example/other:latest", "Loaded image: example/saved:1", "Loaded image: example/saved:2"]
    [info] = json.loads(shoal("image", "inspect", "example/saved:2"))
    assert info["Id"] == first
    assert "No such image: example/nope" in shoal("save", "-o", str(tmp_path / "none.tar"), "example/nope", code=1)
    assert not (tmp_path / "none.tar").exists() and not list(tmp_path.glob("none.tar*"))
    one = tmp_path / "one.tar"
    shoal("image", "save", "-o", str(one), "example/saved:1")
    with tarfile.open(one) as tar:
        assert [m["RepoTags"] for m in json.loads(tar.extractfile("manifest.json").read())] == [["example/saved:1"]]
