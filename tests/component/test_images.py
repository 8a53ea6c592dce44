"""The image store without a registry: import, load, whiteouts, safety, digests, removal, busybox."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from agent_runtime.images import (ArchiveError, DigestMismatch, ImageInUse, ImageNotFound, ImageStore, LayerError)
from tests.component.images_builders import (gz, make_tar, sha, write_docker_archive, write_oci_layout)

ROOT = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts need CAP_MKNOD and trusted.* xattrs")


def store_is_empty(store: ImageStore) -> bool:
    """Nothing at all in blobs, layers, records, tags or scratch space."""
    return (not any(store.blobs.dir.iterdir()) and not any(store.layers.dir.iterdir())
            and not any(store.images_dir.iterdir()) and not any(store.tmp.iterdir())
            and not store._tags())


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images")


ROOTFS = [
    ("bin", "dir", 0o755),
    ("bin/tool", "file", b"#!/bin/sh\necho hi\n", 0o4755, 0, 0),
    ("bin/alias", "symlink", "/bin/tool"),
    ("bin/hard", "hardlink", "bin/tool"),
    ("home", "dir", 0o755),
    ("home/user", "dir", 0o750),
    ("home/user/notes", "file", b"owned", 0o640, 1234, 5678),
    ("tmp", "dir", 0o1777),
]


@needs_root
def test_import_keeps_modes_owners_and_links_and_applies_changes(store, tmp_path):
    rootfs = tmp_path / "rootfs.tar.gz"
    rootfs.write_bytes(gz(make_tar(ROOTFS)))
    image = store.import_rootfs(rootfs, "example/tool:1.0",
                                changes=['CMD ["/bin/tool"]', "ENV GREETING=hello", "WORKDIR /home/user", "EXPOSE 80"])
    assert image.repo_tags == ["example/tool:1.0"]
    assert image.config["config"]["Cmd"] == ["/bin/tool"]
    assert image.config["config"]["Env"] == ["GREETING=hello"]
    assert image.config["config"]["WorkingDir"] == "/home/user"
    assert image.config["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert image.config["rootfs"]["diff_ids"] == [sha(make_tar(ROOTFS))]
    [layer] = image.layers
    tool = os.lstat(layer / "bin/tool")
    assert stat.S_IMODE(tool.st_mode) == 0o4755  # setuid kept
    assert os.readlink(layer / "bin/alias") == "/bin/tool"
    assert os.lstat(layer / "bin/hard").st_ino == tool.st_ino
    notes = os.lstat(layer / "home/user/notes")
    assert (notes.st_uid, notes.st_gid, stat.S_IMODE(notes.st_mode)) == (1234, 5678, 0o640)
    assert stat.S_IMODE(os.lstat(layer / "home/user").st_mode) == 0o750
    assert stat.S_IMODE(os.lstat(layer / "tmp").st_mode) == 0o1777
    assert image.size == len(b"#!/bin/sh\necho hi\n") + len(b"owned")
    # every way of naming it finds it
    for ref in ("example/tool:1.0", "docker.io/example/tool:1.0", image.id, image.short_id):
        assert store.resolve(ref).id == image.id
    with pytest.raises(ImageNotFound, match="example/tool:2.0"):
        store.resolve("example/tool:2.0")


@pytest.mark.parametrize("name, entries, message", [
    ("garbage", b"this is not a tar archive at all" * 40, "malformed"),
    ("empty", b"", "malformed"),
    ("truncated", make_tar([("big", "file", b"x" * 5000)])[:2048], "malformed"),
    ("dotdot", make_tar([("../evil", "file", b"x")]), "climbs out"),
    ("absolute", make_tar([("/etc/evil", "file", b"x")]), "absolute"),
    ("symlink-escape", make_tar([("up", "symlink", "../../../../.."), ("up/tmp/evil", "file", b"x")]), "escapes"),
    ("hardlink-missing", make_tar([("h", "hardlink", "nothere")]), "not in this layer"),
])
def test_bad_rootfs_is_refused_and_leaves_nothing_behind(store, tmp_path, name, entries, message):
    rootfs = tmp_path / f"{name}.tar"
    rootfs.write_bytes(entries)
    with pytest.raises(LayerError, match=message):
        store.import_rootfs(rootfs, "bad/image:latest")
    assert store_is_empty(store)
    assert not (tmp_path / "evil").exists()


@needs_root
def test_symlinked_parent_inside_the_layer_is_followed_in_scope(store, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(make_tar([("usr", "dir"), ("usr/lib", "dir"), ("lib", "symlink", "usr/lib"),
                                 ("lib/libx.so", "file", b"x"), ("etc", "symlink", "/usr/etc"),
                                 ("etc/conf", "file", b"y")]))
    layer = store.import_rootfs(rootfs, "links:latest").layers[0]
    assert (layer / "usr/lib/libx.so").read_bytes() == b"x"
    assert (layer / "usr/etc/conf").read_bytes() == b"y"  # absolute target = the layer root
    assert os.path.islink(layer / "lib") and os.path.islink(layer / "etc")


LOWER = make_tar([("a", "dir"), ("a/x", "file", b"x"), ("a/y", "file", b"y"), ("b", "dir"),
                  ("b/p", "file", b"p"), ("c", "file", b"c"), ("keep", "file", b"k")])
UPPER = make_tar([("a", "dir"), ("a/.wh.x", "file", b""), ("b", "dir"), ("b/.wh..wh..opq", "file", b""),
                  ("b/q", "file", b"q"), (".wh.c", "file", b""), ("new", "file", b"n")])


@needs_root
def test_whiteouts_become_overlay_whiteouts_and_merge_correctly(store, tmp_path):
    layout = tmp_path / "layout"
    write_oci_layout(layout, [LOWER, UPPER], image_name="example/layers:v1")
    [image] = store.load(layout)
    assert image.repo_tags == ["example/layers:v1"]
    lower, upper = image.layers
    for path in ("a/x", "c"):
        st = os.lstat(upper / path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(upper / "b", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(upper / "a/.wh.x") and not os.path.lexists(upper / "b/.wh..wh..opq")
    # a real overlay mount, in a private mount namespace that vanishes with the shell
    merged = tmp_path / "merged"
    merged.mkdir()
    script = (f"mount -t overlay overlay -o lowerdir={upper}:{lower} {merged} && "
              f"cd {merged} && find . -mindepth 1 | sort")
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         check=True, capture_output=True, text=True).stdout.split()
    assert out == ["./a", "./a/y", "./b", "./b/q", "./keep", "./new"]


def test_load_oci_layout_tar_and_docker_archive(store, tmp_path):
    layout = tmp_path / "layout"
    manifest_digest, config_digest = write_oci_layout(layout, [LOWER], ref_name="latest", image_name=None)
    archive = tmp_path / "layout.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    [image] = store.load(archive, tag="example/fromtar:latest")
    assert image.id == config_digest and image.manifest_digest == manifest_digest
    assert image.repo_tags == ["example/fromtar:latest"]
    assert (image.layers[0] / "a/y").read_bytes() == b"y"

    docker_tar = tmp_path / "docker.tar"
    docker_config = write_docker_archive(docker_tar, [LOWER, make_tar([("extra", "file", b"e")])],
                                         ["example/docker:v2", "127.0.0.1:5000/mirror/docker:v2"])
    [loaded] = store.load(docker_tar)
    assert loaded.id == docker_config
    assert loaded.repo_tags == ["127.0.0.1:5000/mirror/docker:v2", "example/docker:v2"]
    assert image.layers[0] == loaded.layers[0]  # the shared layer is unpacked once
    assert (loaded.layers[1] / "extra").read_bytes() == b"e"
    assert len(store.list()) == 2
    assert not any(store.tmp.iterdir())


def test_corrupt_blob_in_layout_is_rejected_by_digest(store, tmp_path):
    layout = tmp_path / "layout"
    write_oci_layout(layout, [LOWER, UPPER], image_name="example/corrupt:v1")
    layer_blob = layout / "blobs/sha256" / sha(gz(UPPER)).split(":")[1]
    data = bytearray(layer_blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer_blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match=sha(gz(UPPER))):
        store.load(layout)
    assert store_is_empty(store)


def test_wrong_diff_id_is_rejected(store, tmp_path):
    layout = tmp_path / "layout"
    _, config_digest = write_oci_layout(layout, [LOWER], image_name="example/diffid:v1")
    # rewrite the config so it announces another diff_id, and re-point the manifest at it
    config = json.loads((layout / "blobs/sha256" / config_digest.split(":")[1]).read_text())
    config["rootfs"]["diff_ids"] = [sha(UPPER)]
    from tests.component.images_builders import write_blob
    new_config = json.dumps(config).encode()
    write_blob(layout, new_config)
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    manifest["config"].update(digest=sha(new_config), size=len(new_config))
    raw = json.dumps(manifest).encode()
    index["manifests"][0].update(digest=write_blob(layout, raw), size=len(raw))
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(DigestMismatch, match="diff_id"):
        store.load(layout)
    assert store_is_empty(store)


def test_malformed_archive_is_refused(store, tmp_path):
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "index.json").write_text("{not json")
    with pytest.raises(ArchiveError, match="index.json"):
        store.load(bogus)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchiveError, match="neither"):
        store.load(tmp_path / "empty")
    with pytest.raises(ArchiveError, match="no such file"):
        store.load(tmp_path / "missing.tar")
    assert store_is_empty(store)


def test_tag_remove_prune_and_in_use(tmp_path):
    users: dict[str, list[str]] = {}
    store = ImageStore(tmp_path / "images", in_use=lambda image_id: users.get(image_id, []))
    one = tmp_path / "one.tar"
    one.write_bytes(make_tar([("one", "file", b"1")]))
    image = store.import_rootfs(one, "example/one:latest")
    store.tag("example/one", "example/alias:v1")
    assert sorted(store.resolve(image.id).repo_tags) == ["example/alias:v1", "example/one:latest"]
    with pytest.raises(ImageInUse, match="multiple repositories"):
        store.remove(image.id)
    assert store.remove("example/alias:v1") == [{"Untagged": "example/alias:v1"}]
    users[image.id] = ["web.1"]
    with pytest.raises(ImageInUse, match="web.1"):
        store.remove("example/one")
    assert store.prune(all=True)["ImagesDeleted"] == []
    users.clear()
    result = store.remove("example/one")
    assert result == [{"Untagged": "example/one:latest"}, {"Deleted": image.id}]
    assert store_is_empty(store)
    # prune: dangling images go, tagged ones stay
    kept = store.import_rootfs(one, "example/kept:latest")
    two = tmp_path / "two.tar"
    two.write_bytes(make_tar([("two", "file", b"2")]))
    dangling = store.import_rootfs(two)
    report = store.prune()
    assert report["ImagesDeleted"] == [{"Deleted": dangling.id}] and report["SpaceReclaimed"] > 0
    assert [i.id for i in store.list()] == [kept.id]
    assert not store.layers.path(dangling.diff_ids[0]).exists()


def test_save_oci_layout_round_trips_and_skopeo_reads_it(store, tmp_path):
    layout = tmp_path / "in"
    write_oci_layout(layout, [LOWER, UPPER] if os.geteuid() == 0 else [LOWER], image_name="example/save:v3")
    [image] = store.load(layout)
    out = tmp_path / "out"
    store.save_oci_layout("example/save:v3", out)
    if shutil.which("skopeo"):
        info = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{out}:v3"], check=True,
                                         capture_output=True, text=True).stdout)
        assert info["Digest"] == image.manifest_digest
    other = ImageStore(tmp_path / "other")
    [again] = other.load(out)
    assert (again.id, again.repo_tags) == (image.id, ["example/save:v3"])


def _load_build_busybox():
    spec = importlib.util.spec_from_file_location("build_busybox", ROOT / "deploy/images/build_busybox.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_busybox", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK), reason="busybox-static is not installed")
def test_busybox_build_is_reproducible_and_imports(store, tmp_path):
    build_busybox = _load_build_busybox()
    first = build_busybox.build_layout(tmp_path / "a")
    second = build_busybox.build_layout(tmp_path / "b")
    assert first.manifest_digest == second.manifest_digest and first.layer_digest == second.layer_digest
    image = build_busybox.import_into_store(store, tmp_path / "a")
    assert image.id == first.config_digest and image.repo_tags == ["shoal/busybox:latest"]
    assert image.config["config"]["Cmd"] == ["sh"]
    layer = image.layers[0]
    assert (layer / "bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert os.readlink(layer / "bin/sh") == "/bin/busybox"
    assert os.path.islink(layer / "usr/sbin/httpd") or os.path.islink(layer / "sbin/httpd")
    assert "nobody:x:65534" in (layer / "etc/passwd").read_text()
    assert "nobody" in (layer / "etc/group").read_text()
    assert (layer / "var/www/index.html").is_file()
    assert stat.S_IMODE(os.lstat(layer / "tmp").st_mode) == 0o1777
