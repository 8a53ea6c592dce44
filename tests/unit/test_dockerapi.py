"""shoald's Docker Engine API without root: the JSON <-> protobuf translation, Docker's error shapes
and status codes, version negotiation, and hostile bodies, against the real app of a Daemon that is
in no swarm (so every cluster call is the daemon's 503)."""
from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from manager.controlapi import ControlError
from proto import objects_pb2 as pb
from shoal.daemon.config import DaemonError
from shoal.daemon.roles import Daemon
from shoal.dockerapi import convert, make_app
from shoal.dockerapi.convert import BadRequest, Unsupported
from shoal.dockerapi.server import MAX_BODY, NOT_IN_SWARM, error_status

# The body `docker service create --name web --replicas 3 -p 8080:80 --env A=1 --limit-memory 64m
# --constraint node.role==worker --update-delay 5s busybox httpd -f` sends (docker CLI 28).
CLI_CREATE = {
    "Name": "web", "Labels": {},
    "TaskTemplate": {
        "ContainerSpec": {"Image": "busybox:latest", "Args": ["httpd", "-f"], "Env": ["A=1"], "Init": False,
                          "DNSConfig": {}, "Isolation": "default"},
        "Resources": {"Limits": {"MemoryBytes": 67108864}, "Reservations": {}},
        "Placement": {"Constraints": ["node.role==worker"]}, "ForceUpdate": 0,
        "Networks": [{"Target": "net1", "Aliases": ["web"]}],
    },
    "Mode": {"Replicated": {"Replicas": 3}},
    "UpdateConfig": {"Parallelism": 1, "Delay": 5_000_000_000, "FailureAction": "pause", "Monitor": 5_000_000_000,
                     "MaxFailureRatio": 0, "Order": "stop-first"},
    "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080,
                                               "PublishMode": "ingress"}]},
}


def test_cli_create_body_translates_and_round_trips_through_inspect():
    spec = convert.parse_service_spec(CLI_CREATE)
    assert spec.annotations.name == "web" and spec.replicas == 3 and spec.mode == pb.ServiceSpec.REPLICATED
    assert list(spec.task.container.args) == ["httpd", "-f"]
    assert spec.task.resources.limits.memory_bytes == 64 * 1024 * 1024
    assert spec.update.delay == 5.0 and spec.endpoint.ports[0].published_port == 8080
    assert spec.task.networks[0].target == "net1"
    # `docker service scale` sends back what `inspect` returned, changed: it must read the same.
    shown = convert.service_json(pb.Service(id="s1", spec=spec))["Spec"]
    assert convert.parse_service_spec(json.loads(json.dumps(shown))) == spec


def test_sdk_lower_case_mode_and_missing_mode():
    """The SDK sends {"replicated": {...}} in lower case, or no Mode at all (= replicated, 1)."""
    body = {"Name": "py", "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Command": ["sleep", "1d"],
                                                              "Args": None}}}
    assert convert.parse_service_spec(body).replicas == 1
    assert convert.parse_service_spec(body | {"Mode": {"replicated": {"Replicas": 2}}}).replicas == 2
    assert convert.parse_service_spec(body | {"Mode": {"Replicated": {}}}).replicas == 1
    assert convert.parse_service_spec(body | {"Mode": {"global": {}}}).mode == pb.ServiceSpec.GLOBAL


@pytest.mark.parametrize("change, message", [
    ({"Mode": {"Replicated": {"Replicas": "2"}}}, "Spec.Mode.Replicated.Replicas: expected an integer, got string"),
    ({"Mode": {"Replicated": {"Replicas": 2.0}}}, "expected an integer, got number"),
    ({"Mode": {"Replicated": {"Replicas": -1}}}, "must be at least 0"),
    ({"Mode": {"Replicated": {"Replicas": 1}, "Global": {}}}, "only one of Replicated, Global"),
    ({"Labels": ["a"]}, "Spec.Labels: expected a map of strings"),
    ({"TaskTemplate": {"ContainerSpec": {"Image": ""}}}, "Image must not be empty"),
    ({"TaskTemplate": "x"}, "Spec.TaskTemplate: expected an object, got string"),
    ({"EndpointSpec": {"Mode": "weird"}}, "EndpointSpec.Mode: invalid value 'weird'"),
])
def test_wrong_types_are_refused_naming_the_field(change, message):
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(".", r"\.")):
        convert.parse_service_spec(CLI_CREATE | change)


def test_a_field_shoal_does_not_do_is_refused_not_dropped():
    body = json.loads(json.dumps(CLI_CREATE))
    body["TaskTemplate"]["ContainerSpec"]["Capabilities"] = ["CAP_NET_ADMIN"]
    with pytest.raises(Unsupported, match=r"Spec\.TaskTemplate\.ContainerSpec\.Capabilities is not supported"):
        convert.parse_service_spec(body)
    body["TaskTemplate"]["ContainerSpec"]["Capabilities"] = []   # its zero value is what "not given" means
    convert.parse_service_spec(body)


def test_every_runtime_option_round_trips_through_inspect():
    """The fields of `service create` runtime flags, as Docker names them, in and out."""
    from shoal.cli.service_flags import build_spec
    spec = build_spec("busybox", ["sleep", "1d"], {
        "name": "batch", "mode": "replicated-job", "replicas": 6, "max_concurrent": 2, "tty": True,
        "group": ("audio", "4242"), "dns": ("192.0.2.53",), "dns_search": ("a.test",), "dns_option": ("ndots:2",),
        "host": ("db:192.0.2.10",), "read_only": True, "sysctl": ("net.core.somaxconn=1024",),
        "ulimit": ("nofile=1024:2048",), "oom_score_adj": -5, "log_driver": "json-file", "log_opt": ("max-size=1m",),
        "health_cmd": "true", "health_start_interval": "2s", "generic_resource": ("gpu=2",)})
    spec.task.container.open_stdin = True
    spec.task.resources.limits.SetInParent()         # the API's parse always has both (empty)
    spec.task.resources.reservations.SetInParent()
    shown = json.loads(json.dumps(convert.service_json(pb.Service(id="s1", spec=spec))["Spec"]))
    c = shown["TaskTemplate"]["ContainerSpec"]
    assert c["TTY"] is True and c["OpenStdin"] is True and c["Groups"] == ["audio", "4242"]
    assert c["DNSConfig"] == {"Nameservers": ["192.0.2.53"], "Search": ["a.test"], "Options": ["ndots:2"]}
    assert c["Hosts"] == ["192.0.2.10 db"] and c["ReadOnly"] is True and c["OomScoreAdj"] == -5
    assert c["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert c["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert c["Healthcheck"]["StartInterval"] == 2_000_000_000
    assert shown["TaskTemplate"]["LogDriver"] == {"Name": "json-file", "Options": {"max-size": "1m"}}
    assert shown["TaskTemplate"]["Resources"]["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "gpu", "Value": 2}}]
    assert shown["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 6}}
    assert convert.parse_service_spec(shown) == spec


def test_filters_in_both_shapes_and_booleans():
    assert convert.parse_filters('{"name":{"web":true}}') == {"name": ["web"]}
    assert convert.parse_filters('{"name":["web","db"]}') == {"name": ["web", "db"]}
    assert convert.filter_map({"name": ["web", "db"]}, ("name",)) == {"name": "web,db"}
    with pytest.raises(BadRequest, match="invalid filter 'bogus'"):
        convert.filter_map({"bogus": ["x"]}, ("name",))
    with pytest.raises(BadRequest, match="invalid filter"):
        convert.parse_filters("{not json")
    assert [convert.parse_bool(v) for v in ("1", "True", "true", "0", "False", "no", "none", "", None)] == \
        [True, True, True, False, False, False, False, False, False]


def test_error_mapping_is_dockers():
    assert error_status(ControlError("not_found", "service x not found")) == (404, "service x not found")
    assert error_status(ControlError("conflict", "service x already exists"))[0] == 409
    assert error_status(ControlError("invalid", "bad"))[0] == 400
    assert error_status(ControlError("unavailable", "no leader"))[0] == 503
    assert error_status(ControlError("conflict", "update out of sequence")) == \
        (500, "rpc error: code = Unknown desc = update out of sequence")
    assert error_status(DaemonError("precondition", "x"))[0] == 400
    assert error_status(Unsupported("TTY is not supported"))[0] == 501


def test_network_and_secret_bodies():
    spec = convert.parse_network_create({"Name": "n1", "Driver": "overlay", "Attachable": True, "Scope": "",
                                         "IPAM": {"Driver": "default", "Options": {}, "Config": []},
                                         "Internal": False, "Options": {}, "Labels": {}, "CheckDuplicate": True})
    assert spec.annotations.name == "n1" and spec.attachable
    with pytest.raises(Unsupported, match="network driver 'bridge'"):
        convert.parse_network_create({"Name": "n2", "Driver": "bridge"})
    assert convert.parse_secret_spec({"Name": "s", "Data": "aGk="}, "Secret") == ("s", {}, b"hi", "")
    assert convert.parse_secret_spec({"Name": "c", "Data": "aGk=", "Templating": {"Name": "golang"}},
                                     "Config")[3] == "golang"
    with pytest.raises(BadRequest, match="not base64"):
        convert.parse_secret_spec({"Name": "s", "Data": "***"}, "Secret")
    with pytest.raises(BadRequest, match="not base64"):   # a plain ValueError from base64 was a 500
        convert.parse_secret_spec({"Name": "s", "Data": "éé"}, "Secret")


# ---- the app, on a daemon in no swarm ----------------------------------------------------------

@pytest.fixture
async def client(tmp_path):
    daemon = Daemon(tmp_path / "state", tmp_path / "shoal.sock", "h1")
    async with TestClient(TestServer(make_app(daemon))) as c:
        yield c


async def test_ping_headers_and_version(client):
    for method in ("HEAD", "GET"):
        r = await client.request(method, "/_ping")
        assert r.status == 200
        assert r.headers["API-Version"] == "1.50" and r.headers["OSType"] == "linux"
        assert r.headers["Swarm"] == "inactive"
    assert await (await client.get("/v1.50/_ping")).text() == "OK"
    v = await (await client.get("/version")).json()
    assert v["ApiVersion"] == "1.50" and v["MinAPIVersion"] == "1.24"
    info = await (await client.get("/v1.41/info")).json()
    assert info["Swarm"]["LocalNodeState"] == "inactive" and info["Swarm"]["ControlAvailable"] is False


@pytest.mark.parametrize("path, status, message", [
    ("/v1.51/info", 400, "client version 1.51 is too new. Maximum supported API version is 1.50"),
    ("/v1.23/info", 400, "client version 1.23 is too old"),
    ("/v1.50/nodes", 503, NOT_IN_SWARM),
    ("/services", 503, NOT_IN_SWARM),
    ("/v1.50/containers/json", 503, "this node runs no container runtime"),
    ("/v1.50/images/busybox:latest/json", 404, "No such image: busybox:latest"),
    ("/v1.50/build", 501, "GET /build is not supported by Shoal's Docker API"),
])
async def test_errors_have_dockers_shape(client, path, status, message):
    r = await client.get(path)
    assert r.status == status
    assert r.headers["Content-Type"] == "application/json"
    assert message in (await r.json())["message"]


async def test_hostile_bodies_get_400_and_nothing_else(client):
    r = await client.post("/v1.50/services/create", data=b'{"Name":', headers={"Content-Type": "application/json"})
    assert r.status == 400 and "invalid JSON in the service spec" in (await r.json())["message"]
    r = await client.post("/v1.50/services/create", data=b"[1, 2]")
    assert r.status == 400 and "Spec: expected an object, got array" in (await r.json())["message"]
    r = await client.post("/v1.50/secrets/create", data=b"x" * (MAX_BODY + 1))
    assert r.status == 400 and "request body too large" in (await r.json())["message"]
    r = await client.post("/v1.50/services/x/update?version=abc", data=b"{}")
    assert r.status == 400 and "invalid version" in (await r.json())["message"]
    r = await client.get("/v1.50/events?since=yesterday")
    assert r.status == 400 and "invalid since" in (await r.json())["message"]


def test_log_frame_is_one_multiplexed_line_with_the_swarm_details():
    from proto import control_pb2 as cpb
    from shoal.dockerapi.server import log_frame
    message = cpb.ServiceLogsMessage(task_id="t1", node_id="n1", stream="stderr", time="2026-01-02T03:04:05.000000001Z",
                                     data=b"oops")
    frame = log_frame(message, "s1", details=True, timestamps=True)
    payload = (b"2026-01-02T03:04:05.000000001Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,"
               b"com.docker.swarm.task.id=t1 oops\n")
    assert frame == bytes([2, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
    assert log_frame(message, "s1", details=False, timestamps=False)[8:] == b"oops\n"


def test_container_summary_has_dockers_types():
    from agent_runtime.spec import ContainerInfo, ContainerSpec, ContainerState
    info = ContainerInfo(id="c" * 64, name="web.1.t1", created="2026-01-02T03:04:05.123456789Z", image="busybox",
                         image_id="sha256:x", state=ContainerState(status="running", running=True,
                                                                    started_at="2026-01-02T03:04:05Z"),
                         config=ContainerSpec(image="busybox", command=["sleep", "1d"], labels={"a": "b"}))
    summary = convert.container_summary(info, now=1767323045 + 5)
    assert summary["Names"] == ["/web.1.t1"] and summary["Created"] == 1767323045
    assert summary["Status"] == "Up 5 seconds" and summary["Command"] == "sleep 1d"
    inspected = convert.container_inspect(info)
    assert inspected["Config"]["StopTimeout"] == 10 and isinstance(inspected["Config"]["StopTimeout"], int)
    assert inspected["Config"]["Tty"] is False and inspected["Name"] == "/web.1.t1"


async def test_a_defect_is_a_logged_500_in_dockers_shape_and_a_begun_stream_is_cut_not_followed(tmp_path, caplog):
    from aiohttp import web

    async def defect(request):
        raise KeyError("nosuch")

    async def defect_mid_stream(request):
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        await response.write(b"first line\n")
        raise ControlError("unavailable", "no leader")

    app = make_app(Daemon(tmp_path / "state", tmp_path / "shoal.sock", "h1"))
    app.router.add_get("/defect", defect)          # stands for a bug in a handler
    app.router.add_get("/defect-mid-stream", defect_mid_stream)
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/defect")
        assert r.status == 500 and r.headers["Content-Type"] == "application/json"
        assert (await r.json())["message"] == "internal error in Shoal's Docker API: KeyError: 'nosuch'"
        assert "docker API GET /defect failed" in caplog.text
        r = await c.get("/defect-mid-stream")
        assert r.status == 200
        with pytest.raises(Exception):   # the stream is cut: no second response inside the first
            await r.read()
