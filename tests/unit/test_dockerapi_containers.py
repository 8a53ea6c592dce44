"""`docker run|exec|logs` and `docker volume` on shoald's Docker API: the bodies docker CLI 28 sends,
read into shoal-runtimed's ContainerSpec; refusals name the field; frames are Docker's."""
from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent_runtime.logs import LogRecord
from shoal.daemon.roles import Daemon
from shoal.dockerapi import make_app
from shoal.dockerapi.containers import log_record_frame, parse_container_create
from shoal.dockerapi.convert import BadRequest, Unsupported

# `docker run --rm -v /tmp:/h:ro -e A=1 -w /h --memory 64m --cpus 0.5 --init --cap-drop ALL busybox
# sh -c 'echo $A'` (docker CLI 28, trimmed of the zero-valued fields it also sends)
CLI_RUN = {
    "Hostname": "", "User": "", "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False,
    "OpenStdin": False, "StdinOnce": False, "Env": ["A=1"], "Cmd": ["sh", "-c", "echo $A"], "Image": "busybox",
    "Volumes": {}, "WorkingDir": "/h", "Entrypoint": None, "OnBuild": None, "Labels": {},
    "HostConfig": {"Binds": ["/tmp:/h:ro"], "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
                   "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no",
                                                                                 "MaximumRetryCount": 0},
                   "AutoRemove": True, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [40, 120],
                   "CapAdd": None, "CapDrop": ["ALL"], "CgroupnsMode": "", "Dns": [], "DnsOptions": [],
                   "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "",
                   "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
                   "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 0,
                   "Isolation": "", "CpuShares": 0, "Memory": 67108864, "NanoCpus": 500000000,
                   "CgroupParent": "", "Devices": [], "MemorySwappiness": None, "OomKillDisable": None,
                   "PidsLimit": None, "Ulimits": [], "Init": True, "MaskedPaths": None, "ReadonlyPaths": None},
    "NetworkingConfig": {"EndpointsConfig": {"default": {}}},
}


def test_run_body_translates():
    spec = parse_container_create(CLI_RUN, "web")
    assert spec.auto_remove and spec.name == "web" and spec.image == "busybox"
    assert spec.command == ["sh", "-c", "echo $A"] and spec.entrypoint is None and spec.env == ["A=1"]
    assert [(m.type, m.source, m.target, m.read_only) for m in spec.mounts] == [("bind", "/tmp", "/h", True)]
    assert spec.resources.memory_bytes == 64 << 20 and spec.resources.nano_cpus == 500_000_000
    assert spec.init and spec.cap_drop == ["ALL"] and spec.network == "none" and not spec.tty


def test_run_it_keeps_stdin_tty_and_console_size():
    spec = parse_container_create(CLI_RUN | {"OpenStdin": True, "StdinOnce": True, "AttachStdin": True, "Tty": True,
                                             "HostConfig": {**CLI_RUN["HostConfig"], "ConsoleSize": [33, 101]}}, "")
    assert (spec.open_stdin, spec.stdin_once, spec.tty, spec.console_size) == (True, True, True, [33, 101])
    plain = parse_container_create(CLI_RUN | {"HostConfig": {**CLI_RUN["HostConfig"], "ConsoleSize": [33, 101]}}, "")
    assert (plain.open_stdin, plain.stdin_once, plain.console_size) == (False, False, [])   # no TTY: no size


@pytest.mark.parametrize("change, error, message", [
    ({"ExposedPorts": {"eighty/tcp": {}}}, BadRequest, "Config.ExposedPorts: invalid port 'eighty/tcp'"),
    ({"Image": ""}, BadRequest, "Config.Image must not be empty"),
    ({"Cmd": "echo"}, BadRequest, r"Config\.Cmd: expected a list of strings, got string"),
    ({"HostConfig": {"NetworkMode": "bridge"}}, Unsupported, "NetworkMode 'bridge'"),
    ({"HostConfig": {"RestartPolicy": {"Name": "always"}}}, Unsupported, "RestartPolicy 'always'"),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "x"}]}}}, BadRequest, "invalid hostPort: x"),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "::1", "HostPort": "1"}]}}}, Unsupported, "only IPv4"),
    ({"HostConfig": {"Binds": ["nocolon"]}}, BadRequest, "invalid bind 'nocolon'"),
    ({"HostConfig": {"Memory": "64m"}}, BadRequest, r"HostConfig\.Memory: expected an integer"),
    ({"HostConfig": {"BlkioWeight": 10}}, Unsupported, "HostConfig.BlkioWeight is not supported"),
    ({"Bogus": 1}, Unsupported, "Config.Bogus is not supported"),
])
def test_run_refusals_name_the_field(change, error, message):
    with pytest.raises(error, match=message):
        parse_container_create(CLI_RUN | change, "")


def test_published_ports_translate():
    """`docker run -p 127.0.0.1:8080:80 -p 53/udp -P --expose 9000` (docker CLI 28's body)."""
    body = CLI_RUN | {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "9000/tcp": {}},
                      "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                                      "53/udp": [{"HostIp": "", "HostPort": ""}]},
                                     "PublishAllPorts": True}}
    spec = parse_container_create(body, "")
    assert [(p.host_ip, p.host_port, p.container_port, p.protocol) for p in spec.ports] == [
        ("127.0.0.1", 8080, 80, "tcp"), ("", 0, 53, "udp"), ("", 0, 9000, "tcp")]


def test_log_frames_multiplexed_or_raw():
    record = LogRecord(stream="stderr", log="oops\n", time="2026-01-02T03:04:05.000000001Z")
    assert log_record_frame(record, tty=False, timestamps=False) == bytes([2, 0, 0, 0, 0, 0, 0, 5]) + b"oops\n"
    assert log_record_frame(record, tty=True, timestamps=True) == b"2026-01-02T03:04:05.000000001Z oops\n"


@pytest.fixture
async def client(tmp_path):
    daemon = Daemon(tmp_path / "state", tmp_path / "shoal.sock", "h1")
    async with TestClient(TestServer(make_app(daemon))) as c:
        yield c


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1.50/containers/create", json.dumps(CLI_RUN), 503, "runs no container runtime"),
    ("POST", "/v1.50/containers/create", '{"Image": 1}', 400, "Config.Image: expected a string"),
    ("POST", "/v1.50/containers/create", "{", 400, "invalid JSON in the container config"),
    ("GET", "/v1.50/volumes", None, 503, "runs no container runtime"),
    ("POST", "/v1.50/volumes/create", '{"Driver": "nfs"}', 501, "Driver 'nfs' is not supported"),
    ("GET", "/v1.50/exec/nosuch/json", None, 404, "No such exec instance: nosuch"),
    ("POST", "/v1.50/containers/x/wait?condition=whenever", None, 400, "invalid condition 'whenever'"),
    ("GET", "/v1.50/containers/x/logs", None, 400, "you must choose at least one stream"),
])
async def test_container_endpoints_refuse_in_dockers_shape(client, method, path, body, status, message):
    r = await client.request(method, path, data=body)
    assert r.status == status
    assert r.headers["Content-Type"] == "application/json"
    assert message in (await r.json())["message"]


def test_docker_ps_filters():
    from agent_runtime.spec import ContainerInfo, ContainerSpec, ContainerState
    from shoal.dockerapi.convert import check_container_filters, container_matches

    def info(name, status, code=0, labels=None):
        return ContainerInfo(id=name * 8, name=name, created="", image="busybox", image_id="",
                             state=ContainerState(status=status, exit_code=code),
                             config=ContainerSpec(image="busybox", labels=labels or {}))
    task = info("web.1.abc", "running", labels={"com.docker.swarm.task.id": "abc", "tier": "front"})
    done = info("oneoff", "exited", code=3)

    def names(**filters):
        check_container_filters(filters)
        return [c.name for c in (task, done) if container_matches(c, filters)]
    assert names(name=["web"]) == ["web.1.abc"] and names(id=["oneo"]) == ["oneoff"]
    assert names(label=["tier=front"]) == ["web.1.abc"] and names(label=["tier", "colour"]) == []
    assert names(status=["exited", "running"]) == ["web.1.abc", "oneoff"]
    assert names(exited=["3"]) == ["oneoff"] and names(exited=["0"]) == []
    assert names(**{"is-task": ["true"]}) == ["web.1.abc"] and names(**{"is-task": ["false"]}) == ["oneoff"]
    with pytest.raises(Unsupported, match="container filter 'ancestor' is not supported"):
        check_container_filters({"ancestor": ["busybox"]})
    with pytest.raises(BadRequest, match="invalid filter 'colour'"):
        check_container_filters({"colour": ["red"]})
    with pytest.raises(BadRequest, match="invalid filter 'status=sleeping'"):
        check_container_filters({"status": ["sleeping"]})
