"""shoal-runtimed's image endpoints (agent_runtime/image_api.py) over a real unix socket with the
real client: hostile input, credentials, in-use protection, concurrent pulls of one image, and
pulls cut short (the client leaving, the daemon killed) leaving no half image."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent_runtime.api import Conflict, InvalidArgument, NotFound, ShoalRuntimeError, registry_auth_header
from agent_runtime.images import ImageStore, push_layout
from tests.component.conftest_registry import PASSWORD, USER, basic_registry, plain_registry  # noqa: F401
from tests.component.images_builders import make_tar, write_oci_layout
from tests.support.image_daemon import ImageDaemon

ROOT = Path(__file__).resolve().parents[2]
BIG = 3 << 20   # an incompressible layer file: several read chunks, so a pull can be cut inside it


@pytest.fixture
def daemon(tmp_path):
    (tmp_path / "d").mkdir()
    d = ImageDaemon(tmp_path / "d").start()
    yield d
    d.stop()


def consistent(store: ImageStore) -> None:
    """Every record whole (its blobs and layers present), nothing unreferenced, no scratch left."""
    records = store._records()
    blobs, layers = set(), set()
    for r in records:
        blobs.update((r["id"], r["manifest_digest"]))
        for layer in r["layers"]:
            blobs.add(layer["digest"])
            layers.add(layer["diff_id"])
    assert set(store.blobs.all()) == blobs
    assert set(store.layers.all()) == layers
    assert not [p for p in store.tmp.iterdir() if not p.name.endswith(".lock")]


def _raw(daemon: ImageDaemon, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("localhost", timeout=30)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(daemon.socket)
    conn.sock = sock
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data) if data else {}


def _push(registry, tmp_path, name: str, files: list[tuple]) -> str:
    layout = tmp_path / f"layout-{name.replace('/', '-')}"
    write_oci_layout(layout, [make_tar(files)], image_name=f"{name}:v1")
    ref = f"{registry.host}/{name}:v1"
    push_layout(layout, ref)
    return ref


@pytest.mark.parametrize("ref", ["UPPER/case:1", "a" * 5000, "bad ref", "x:y:z", "@sha256:12", "../../etc"])
def test_bad_references_are_refused_and_change_nothing(daemon, ref):
    client = daemon.client()
    with pytest.raises(InvalidArgument):
        client.image_pull(ref)
    with pytest.raises(InvalidArgument):
        list(client.image_push_stream(ref))
    with pytest.raises(ShoalRuntimeError):
        client.image_tag(ref, "example/ok:1")
    with pytest.raises(InvalidArgument):
        client.image_tag("example/ok:1", ref)
    assert client.images() == []
    consistent(daemon.store)


def test_hostile_bodies_and_headers_get_400(daemon, tmp_path):
    status, body = _raw(daemon, "POST", "/images/pull", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and body["message"].startswith("request body is not JSON")
    status, body = _raw(daemon, "POST", "/images/pull", b"[1,2]", {"Content-Type": "application/json"})
    assert (status, body["message"]) == (400, "request body must be a JSON object")
    assert _raw(daemon, "POST", "/images/pull", json.dumps({"Ref": 12}).encode(),
                {"Content-Type": "application/json"})[0] == 400
    status, body = _raw(daemon, "POST", "/images/pull", json.dumps({"Ref": "busybox"}).encode(),
                        {"Content-Type": "application/json", "X-Registry-Auth": "%%%not-base64"})
    assert status == 400 and "X-Registry-Auth" in body["message"]
    status, body = _raw(daemon, "POST", "/images/pull", json.dumps({"Ref": "busybox"}).encode(),
                        {"Content-Type": "application/json", "X-Registry-Auth": "A" * 8000})
    assert status == 400 and "X-Registry-Auth" in body["message"]
    assert _raw(daemon, "POST", "/images/prune", json.dumps({"All": "yes"}).encode(),
                {"Content-Type": "application/json"})[0] == 400
    assert _raw(daemon, "POST", "/images/pull", json.dumps({"Ref": "busybox", "Platform": "amd64"}).encode(),
                {"Content-Type": "application/json"})[0] == 400
    assert _raw(daemon, "DELETE", "/images")[0] == 400
    assert _raw(daemon, "GET", "/images/inspect?ref=example/none")[0] == 404
    # an upload larger than the disk can hold is refused from its Content-Length, before a byte is written
    status, body = _raw(daemon, "POST", "/images/load", b"x" * 10,
                        {"Content-Type": "application/x-tar", "Content-Length": str(1 << 60)})
    assert status == 400 and "bytes free" in body["message"]
    status, body = _raw(daemon, "POST", "/images/load", b"", {"Content-Type": "application/x-tar"})
    assert status == 400 and "empty" in body["message"]
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(os.urandom(100_000))
    with open(garbage, "rb") as f, pytest.raises(InvalidArgument):
        daemon.client().image_load_stream(f)
    with open(garbage, "rb") as f, pytest.raises(InvalidArgument):
        daemon.client().image_import_stream(f, "example/garbage:1")
    assert daemon.client().images() == []
    consistent(daemon.store)


def test_pull_push_tag_prune_round_trip_streams_docker_messages(daemon, plain_registry, tmp_path):
    client = daemon.client()
    ref = _push(plain_registry, tmp_path, "api/round", [("hello", "file", b"hi")])
    messages = list(client.image_pull_stream(ref))
    assert messages[0] == {"status": f"Pulling from {ref.rsplit(':', 1)[0]}", "id": "v1"}
    assert any(m.get("status") == "Pull complete" for m in messages)
    assert messages[-2]["status"] == f"Status: Downloaded newer image for {ref}"
    image = messages[-1]["aux"]
    assert image["RepoTags"] == [ref] and image["RootFS"]["Layers"]
    again = list(client.image_pull_stream(ref))
    assert again[-2]["status"] == f"Status: Image is up to date for {ref}"
    target = f"{plain_registry.host}/api/copy:v2"
    assert client.image_tag(ref, target)["Id"] == image["Id"]
    pushed = list(client.image_push_stream(target))
    assert pushed[0]["status"] == f"The push refers to repository [{plain_registry.host}/api/copy]"
    assert pushed[-1]["aux"]["Tag"] == "v2" and pushed[-1]["aux"]["Digest"].startswith("sha256:")
    assert client.image_remove(target) == [{"Untagged": target}]
    assert client.image_prune(all=False)["ImagesDeleted"] == []     # still tagged: not dangling
    report = client.image_prune(all=True)
    assert {"Deleted": image["Id"]} in report["ImagesDeleted"] and report["SpaceReclaimed"] > 0
    assert client.images() == []
    consistent(daemon.store)


def test_credentials_travel_in_x_registry_auth(daemon, basic_registry, tmp_path):
    layout = tmp_path / "layout"
    write_oci_layout(layout, [make_tar([("s", "file", b"secret")])], image_name="private/app:v1")
    ref = f"{basic_registry.host}/private/app:v1"
    push_layout(layout, ref, auth=(USER, PASSWORD))
    client = daemon.client()
    with pytest.raises(ShoalRuntimeError, match="requires a username and password"):
        list(client.image_pull_stream(ref))
    with pytest.raises(ShoalRuntimeError, match="access denied|authentication"):
        list(client.image_pull_stream(ref, auth=registry_auth_header(USER, "wrong", basic_registry.host)))
    assert client.images() == []
    messages = list(client.image_pull_stream(ref, auth=registry_auth_header(USER, PASSWORD, basic_registry.host)))
    assert messages[-1]["aux"]["RepoTags"] == [ref]
    consistent(daemon.store)


def test_in_use_images_are_protected(daemon, tmp_path):
    client = daemon.client()
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(make_tar([("bin", "dir"), ("bin/x", "file", b"x")]))
    with open(rootfs, "rb") as f:
        image = client.image_import_stream(f, "example/used:1")
    daemon.users[image["Id"]] = daemon.running[image["Id"]] = ["web"]
    with pytest.raises(Conflict, match="running container.*web"):
        client.image_remove("example/used:1")
    with pytest.raises(Conflict, match="cannot be forced"):
        client.image_remove(image["Id"], force=True)
    assert client.image_prune(all=True)["ImagesDeleted"] == []
    # forced by name: the tag goes (as Docker), the image and its layers stay for the container
    assert client.image_remove("example/used:1", force=True) == [{"Untagged": "example/used:1"}]
    assert client.image_prune(all=True)["ImagesDeleted"] == []
    assert client.image_inspect(image["Id"])["RepoTags"] == []
    assert all(Path(d).is_dir() for d in client.image_inspect(image["Id"])["GraphDriver"]["Data"]["LowerDir"].split(":"))
    # a stopped container: refused without force, untag-only with it
    daemon.running.clear()
    client.image_tag(image["Id"], "example/used:2")
    with pytest.raises(Conflict, match="must be forced.*stopped"):
        client.image_remove(image["Id"])
    client.image_remove(image["Id"], force=True)
    assert client.image_inspect(image["Id"])["Id"] == image["Id"]
    daemon.users.clear()
    assert client.image_remove(image["Id"])[-1] == {"Deleted": image["Id"]}
    consistent(daemon.store)


def test_concurrent_pulls_of_one_image(daemon, plain_registry, tmp_path):
    ref = _push(plain_registry, tmp_path, "api/concurrent", [("big", "file", os.urandom(BIG))])
    results, errors = [], []

    def pull() -> None:
        try:
            results.append(daemon.client().image_pull(ref)["Id"])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=pull) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and len(results) == 6
    [image] = daemon.client().images()
    assert image["RepoTags"] == [ref]
    assert all(daemon.store.blobs.verify(d) for d in daemon.store.blobs.all())
    consistent(daemon.store)


class _GatedProxy:
    """Forwards GETs to a registry; a blob larger than BIG/2 is sent half, then held until
    ``release`` is set (``holding`` says it got there)."""

    def __init__(self, upstream: str) -> None:
        self.holding, self.release = threading.Event(), threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.do_GET(head=True)

            def do_GET(self, head: bool = False) -> None:
                req = urllib.request.Request(f"http://{upstream}{self.path}", method="HEAD" if head else "GET",
                                             headers={k: v for k, v in self.headers.items() if k.lower() == "accept"})
                try:
                    upstream_resp = urllib.request.urlopen(req, timeout=30)
                except urllib.error.HTTPError as exc:
                    upstream_resp = exc
                data = b"" if head else upstream_resp.read()
                self.send_response(upstream_resp.status if hasattr(upstream_resp, "status") else upstream_resp.code)
                for key, value in upstream_resp.headers.items():
                    if key.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.end_headers()
                if "/blobs/" in self.path and len(data) > BIG // 2:
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    proxy.holding.set()
                    proxy.release.wait(60)
                    data = data[len(data) // 2:]
                try:
                    self.wfile.write(data)
                except OSError:
                    pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gated(plain_registry):
    proxy = _GatedProxy(plain_registry.host)
    yield proxy
    proxy.close()


def test_client_leaving_mid_pull_leaves_no_half_image(daemon, plain_registry, gated, tmp_path):
    _push(plain_registry, tmp_path, "api/cut", [("big", "file", os.urandom(BIG))])
    ref = f"{gated.host}/api/cut:v1"
    stream = daemon.client().image_pull_stream(ref)
    for message in stream:
        if message.get("status") == "Downloading":
            break
    assert gated.holding.wait(30)
    stream.close()                     # the client goes away mid-layer
    gated.release.set()
    done = threading.Event()

    def finished() -> None:            # the positive signal: the daemon counted the pull as ended
        while sum(daemon.daemon.metrics.pulls.values()) < 1:
            threading.Event().wait(0.02)
        done.set()
    threading.Thread(target=finished, daemon=True).start()
    assert done.wait(60)
    images = daemon.client().images()
    assert images == [] or images[0]["RepoTags"] == [ref]     # never half an image
    consistent(daemon.store)


def test_daemon_killed_mid_pull_leaves_no_half_image(plain_registry, gated, tmp_path):
    _push(plain_registry, tmp_path, "api/killed", [("big", "file", os.urandom(BIG))])
    base = tmp_path / "d"
    base.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.image_daemon", str(base)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        client = ImageDaemon.__new__(ImageDaemon)
        client.socket = str(base / "runtimed.sock")
        stream = ImageDaemon.client(client).image_pull_stream(f"{gated.host}/api/killed:v1")
        for message in stream:
            if message.get("status") == "Downloading":
                break
        assert gated.holding.wait(30)
        proc.send_signal(signal.SIGKILL)   # half a layer on disk, the config blob stored
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stream.close()
    assert any((base / "images" / "tmp").iterdir()) or any((base / "images" / "blobs" / "sha256").iterdir())
    restarted = ImageDaemon(base).start()     # what runtimed does at start: collect the leftovers
    try:
        assert restarted.client().images() == []
        with pytest.raises(NotFound):
            restarted.client().image_inspect(f"{gated.host}/api/killed:v1")
        consistent(restarted.store)
    finally:
        restarted.stop()


def test_image_healthcheck_reaches_the_worker(daemon, tmp_path):
    """The worker reads an image's HEALTHCHECK from inspect's Config (Docker's shape); before the
    endpoints answered in that shape, Config was the whole OCI config and the check was lost."""
    from worker.task_manager import _healthcheck_from_image
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(make_tar([("x", "file", b"x")]))
    with open(rootfs, "rb") as f:
        daemon.client().image_import_stream(f, "example/hc:1")
    record = daemon.store.resolve("example/hc:1")
    config = json.loads(daemon.store.blobs.read(record.id))
    config["config"]["Healthcheck"] = {"Test": ["CMD", "true"], "Interval": 2_000_000_000, "Retries": 5}
    from agent_runtime.images import oci
    raw = oci.canonical_json(config)
    manifest = oci.build_manifest(oci.sha256_digest(raw), len(raw), [b.descriptor() for b in daemon.store.layer_blobs(record)])
    with daemon.store.adding():
        daemon.store.commit(manifest, raw, daemon.store.layer_blobs(record), tags=["example/hc:2"])
    hc = _healthcheck_from_image(daemon.client().image_inspect("example/hc:2"))
    assert hc is not None and hc.test == ["CMD", "true"] and hc.interval_s == 2 and hc.retries == 5


def test_registry_mirror_serves_docker_hub_images(plain_registry, tmp_path):
    """dockerd's registry-mirrors: a Docker Hub name is fetched from the mirror (no Internet here)."""
    layout = tmp_path / "layout"
    write_oci_layout(layout, [make_tar([("m", "file", b"mirrored")])], image_name="library/mirrored:v1")
    push_layout(layout, f"{plain_registry.host}/library/mirrored:v1")
    (tmp_path / "d").mkdir()
    daemon = ImageDaemon(tmp_path / "d", mirrors=(f"http://{plain_registry.host}",)).start()
    try:
        image = daemon.client().image_pull("mirrored:v1")
        assert image["RepoTags"] == ["mirrored:v1"]
        assert image["RepoDigests"][0].startswith("mirrored@sha256:")
    finally:
        daemon.stop()


def test_registry_mirror_setting_is_checked():
    from agent_runtime import daemonconfig
    assert daemonconfig.parse('{"registry-mirrors": ["https://192.0.2.1:5000/"]}')["registry-mirrors"] == \
        ["https://192.0.2.1:5000"]
    for bad in ('["192.0.2.1:5000"]', '["ftp://192.0.2.1"]', '["https://h/path"]', '"https://h"'):
        with pytest.raises(daemonconfig.ConfigError, match="registry-mirrors"):
            daemonconfig.parse('{"registry-mirrors": %s}' % bad)
