"""The stock `docker` CLI (28, API 1.50) and the `docker` Python SDK driving a Shoal cluster through
shoald's Docker API socket; every result is checked through `shoal` as well."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "docker-api.yaml"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=0)


@pytest.fixture(scope="module")
def sock(lab) -> str:
    hosts = {h["name"]: h for h in lab.status()["hosts"]}
    return hosts["manager1"]["docker_socket"]


@pytest.fixture(scope="module")
def docker(sock, tmp_path_factory):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed (make install gets it)")
    env = {"DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp_path_factory.mktemp("docker-config")),
           "PATH": "/usr/local/bin:/usr/bin:/bin"}

    def run(*args: str, timeout: float = 120, check: bool = True, input: str | None = None):
        result = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout,
                                input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result
    run.env = env
    return run


def shoal_json(lab, *args: str) -> list[dict]:
    out = lab.shoal("manager1", *args, "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def shoal_inspect(lab, kind: str, ref: str) -> dict:
    return json.loads(lab.shoal("manager1", kind, "inspect", ref).stdout)[0]


def running(lab, service: str) -> int:
    return sum(t["CurrentState"].startswith("Running") and t["DesiredState"] == "Running"
               for t in shoal_json(lab, "service", "ps", service))


def test_version_info_and_node_ls(lab, docker):
    version = docker("version", "--format", "{{json .Server}}").stdout
    assert json.loads(version)["ApiVersion"] == "1.50"
    info = json.loads(docker("info", "--format", "{{json .Swarm}}").stdout)
    node_id = shoal_json(lab, "node", "ls")[0]["ID"]
    assert info["LocalNodeState"] == "active" and info["ControlAvailable"] is True
    assert info["NodeID"] == node_id and info["Nodes"] == 1 and info["Managers"] == 1
    lines = docker("node", "ls").stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "HOSTNAME"]
    assert lines[1].split()[:6] == [node_id, "*", "manager1", "Ready", "Active", "Leader"]


def test_service_create_scale_ps_inspect_rm(lab, docker):
    image = f"{lab.registry}/shoal/busybox:latest"
    created = docker("service", "create", "--name", "dx", "--replicas", "2", image, "sleep", "1d", timeout=180)
    service_id = created.stdout.splitlines()[0].strip()
    assert "verify: Service" in created.stdout and "converged" in created.stdout   # the progress, finished
    assert running(lab, "dx") == 2
    ls = docker("service", "ls").stdout.splitlines()
    assert ls[1].split()[:4] == [service_id[:12], "dx", "replicated", "2/2"]

    scaled = docker("service", "scale", "dx=3", timeout=180)
    assert "dx scaled to 3" in scaled.stdout and "converged" in scaled.stdout
    assert running(lab, "dx") == 3
    assert shoal_json(lab, "service", "ls")[0]["Replicas"] == "3/3"

    ps = docker("service", "ps", "dx", "--format", "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}}")
    rows = sorted(ps.stdout.splitlines())
    assert [r.split()[:3] for r in rows] == [[f"dx.{i}", "manager1", "Running"] for i in (1, 2, 3)]
    assert all(r.split()[3] == "Running" for r in rows)

    inspected = json.loads(docker("service", "inspect", "dx").stdout)[0]
    assert inspected["ID"] == service_id and inspected["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    assert inspected["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"] == ["sleep", "1d"]

    missing = docker("service", "inspect", "nosuch", check=False)
    assert missing.returncode == 1 and "Error: no such service: nosuch" in missing.stderr
    clash = docker("service", "create", "-d", "--name", "dx", image, check=False)
    assert clash.returncode == 1 and "Error response from daemon:" in clash.stderr

    docker("service", "rm", "dx")
    assert shoal_json(lab, "service", "ls") == []


def test_network_and_secret_lifecycle(lab, docker):
    net_id = docker("network", "create", "-d", "overlay", "--attachable", "dnet").stdout.strip()
    assert "dnet" in docker("network", "ls").stdout
    assert [n["ID"] for n in shoal_json(lab, "network", "ls", "--no-trunc") if n["Name"] == "dnet"] == [net_id]
    assert json.loads(docker("network", "inspect", "dnet").stdout)[0]["Attachable"] is True
    again = docker("network", "create", "-d", "overlay", "dnet", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    docker("network", "rm", "dnet")
    assert all(n["Name"] != "dnet" for n in shoal_json(lab, "network", "ls"))

    secret_id = docker("secret", "create", "dsecret", "-", input="s3cr3t\n").stdout.strip()
    assert [s["ID"] for s in shoal_json(lab, "secret", "ls")] == [secret_id]
    assert "dsecret" in docker("secret", "ls").stdout
    docker("secret", "rm", "dsecret")
    assert shoal_json(lab, "secret", "ls") == []


def test_events_filtered_to_services_see_a_scale(lab, docker):
    image = f"{lab.registry}/shoal/busybox:latest"
    # Without -d: the CLI waits for convergence, so the allocator's follow-up write of the new
    # service is done before the scale reads its version (else "update out of sequence", as in swarmkit).
    docker("service", "create", "--name", "dev", "--replicas", "1", image, "sleep", "1d")
    since = f"{time.time():.3f}"
    proc = subprocess.Popen(["docker", "events", "--since", since, "--filter", "type=service",
                             "--format", "{{json .}}"], env=docker.env, stdout=subprocess.PIPE, text=True)
    try:
        docker("service", "scale", "-d", "dev=2")
        seen: list[dict] = []

        def scale_seen():
            line = proc.stdout.readline()   # blocks until the next event: the stream is the signal
            seen.append(json.loads(line))
            return any(e["Actor"]["Attributes"].get("replicas.new") == "2" for e in seen)
        wait_for(scale_seen, 60, interval=0, what="the scale event")
        assert {e["Type"] for e in seen} == {"service"}
        assert seen[-1]["Actor"]["Attributes"] == {"name": "dev", "replicas.new": "2", "replicas.old": "1"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        docker("service", "rm", "dev")


def test_python_sdk(lab, sock):
    docker_sdk = pytest.importorskip("docker")
    client = docker_sdk.DockerClient(base_url=f"unix://{sock}", timeout=60)
    assert client.ping() is True
    info = client.info()
    assert info["Swarm"]["ControlAvailable"] is True
    assert [n.attrs["Description"]["Hostname"] for n in client.nodes.list()] == ["manager1"]
    image = f"{lab.registry}/shoal/busybox:latest"
    since = time.time()
    service = client.services.create(image, ["sh", "-c", "echo hello from pysdk; exec sleep 1d"], name="pysdk",
                                     mode=docker_sdk.types.ServiceMode("replicated", replicas=1))
    try:
        assert [s.name for s in client.services.list(filters={"name": "pysdk"})] == ["pysdk"]
        # The allocator and the orchestrator write the new service once more (its endpoint, its update
        # status), as swarmkit's do; a scale sent with the version read before that is "out of
        # sequence". Scale it once it runs, as a user would.
        wait_for(lambda: running(lab, "pysdk") == 1, 120, what="pysdk at 1 running task")
        service.reload()
        assert service.scale(2) is not None
        wait_for(lambda: running(lab, "pysdk") == 2, 120, what="pysdk at 2 running tasks")
        service.reload()
        assert service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
        containers = {c.name: c for c in client.containers.list()}   # this node's task containers
        assert len([n for n in containers if n.startswith("pysdk.")]) == 2
        assert all(c.status == "running" and c.labels["com.docker.swarm.service.name"] == "pysdk"
                   for n, c in containers.items() if n.startswith("pysdk."))
        task_container = containers[next(n for n in containers if n.startswith("pysdk."))]
        wait_for(lambda: task_container.logs() == b"hello from pysdk\n", 60, what="a pysdk container's log line")
        with pytest.raises(docker_sdk.errors.NotFound):
            client.services.get("nosuch")

        service.reload()
        service.update(env=["GREETING=hi"])   # the SDK reads the spec (insertDefaults=True) and sends it back
        wait_for(lambda: shoal_inspect(lab, "service", "pysdk")["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env")
                 == ["GREETING=hi"], 30, what="pysdk's env updated")
        events = list(client.events(since=since, until=time.time() + 1, filters={"type": "service"}, decode=True))
        actions = [(e["Action"], e["Actor"]["Attributes"].get("name")) for e in events]
        assert ("create", "pysdk") in actions and ("update", "pysdk") in actions
    finally:
        service.remove()
    assert client.services.list() == []
    assert all(s["Name"] != "pysdk" for s in shoal_json(lab, "service", "ls"))


def test_every_documented_path_answers(lab, docker, sock):
    """docs/docker-api.yaml describes what is served: each GET there answers on the running server
    (with an object that exists for the {ref} paths), neither 404 nor 501."""
    image = f"{lab.registry}/shoal/busybox:latest"
    service_id = docker("service", "create", "-d", "--name", "doc", image, "sleep", "1d").stdout.strip()
    docker("network", "create", "-d", "overlay", "docnet")
    docker("secret", "create", "docsecret", "-", input="x")
    docker("config", "create", "docconfig", "-", input="x")
    try:
        task_id = wait_for(lambda: shoal_json(lab, "service", "ps", "--no-trunc", "doc")[0]["ID"], 60,
                           what="a task of doc")
        node_id = shoal_json(lab, "node", "ls")[0]["ID"]
        container = wait_for(lambda: docker("ps", "-q").stdout.split(), 60, what="a container")[0]
        docker("volume", "create", "docvol")
        exec_id = json.loads(subprocess.run(
            ["curl", "-s", "--unix-socket", sock, "-H", "Content-Type: application/json", "-d", '{"Cmd": ["true"]}',
             f"http://localhost/v1.50/containers/{container}/exec"], capture_output=True, text=True, timeout=30).stdout)["Id"]
        refs = {"/containers/{ref}/json": container, "/containers/{ref}/logs": container, "/volumes/{name}": "docvol",
                "/exec/{id}/json": exec_id, "/nodes/{ref}": node_id, "/services/{ref}": service_id, "/tasks/{ref}": task_id,
                "/services/{ref}/logs": service_id, "/tasks/{ref}/logs": task_id,
                "/networks/{ref}": "docnet", "/secrets/{ref}": "docsecret", "/configs/{ref}": "docconfig",
                "/images/{ref}/json": image, "/images/{ref}/get": image}
        spec = yaml.safe_load(OPENAPI.read_text())
        checked = []
        for path, item in spec["paths"].items():
            if "get" not in item or path == "/events":
                continue
            url = path.replace("{ref}", refs.get(path, "")).replace("{name}", refs.get(path, "")).replace(
                "{id}", refs.get(path, "")) + ("?stdout=1&stderr=1" if path.endswith("/logs") else "")
            for prefix in ("", "/v1.50"):
                status = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket",
                                         sock, f"http://localhost{prefix}{url}"],
                                        capture_output=True, text=True, timeout=30).stdout
                assert status == "200", f"GET {prefix}{url} answered {status}"
                checked.append(url)
        events = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", sock,
                                 f"http://localhost/events?since=1&until={int(time.time())}"],
                                capture_output=True, text=True, timeout=30).stdout
        assert events == "200"
        assert len(checked) == 2 * sum(1 for p, i in spec["paths"].items() if "get" in i and p != "/events")
    finally:
        docker("service", "rm", "doc")
        docker("network", "rm", "docnet")
        docker("secret", "rm", "docsecret")
        docker("config", "rm", "docconfig")
        docker("volume", "rm", "docvol")


def test_logs_update_rollback_node_update_join_token(lab, docker):
    image = f"{lab.registry}/shoal/busybox:latest"
    docker("service", "create", "-d", "--name", "dl", image, "sh", "-c", "echo hello from dl; sleep 1d")
    wait_for(lambda: running(lab, "dl") == 1, 120, what="dl running")
    task_id = shoal_json(lab, "service", "ps", "--no-trunc", "dl")[0]["ID"]
    logs = wait_for(lambda: (r := docker("service", "logs", "dl")).stdout.strip() and r, 60, what="dl's log line")
    assert logs.stdout == f"dl.1.{task_id[:12]}@manager1    | hello from dl\n"
    assert docker("service", "logs", "--raw", "dl").stdout == "hello from dl\n"
    missing = docker("service", "logs", "nosuch", check=False)
    assert missing.returncode == 1 and "no such task or service: nosuch" in missing.stderr

    ps = docker("ps", "--format", "{{.Names}} {{.Status}}").stdout.splitlines()
    assert [line.split()[:2] for line in ps if line.startswith("dl.")] == [[f"dl.1.{task_id}", "Up"]]
    inspected = json.loads(docker("inspect", f"dl.1.{task_id}").stdout)[0]
    assert inspected["State"]["Status"] == "running" and inspected["Config"]["Tty"] is False

    updated = docker("service", "update", "--env-add", "A=1", "dl", timeout=180)
    assert "converged" in updated.stdout
    assert shoal_inspect(lab, "service", "dl")["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=1"]
    docker("service", "rollback", "dl", timeout=180)
    assert "Env" not in shoal_inspect(lab, "service", "dl")["Spec"]["TaskTemplate"]["ContainerSpec"]
    docker("service", "rm", "dl")

    docker("node", "update", "--label-add", "zone=a", "manager1")
    assert shoal_inspect(lab, "node", "manager1")["Spec"]["Labels"] == {"zone": "a"}
    docker("node", "update", "--label-rm", "zone", "manager1")
    assert shoal_inspect(lab, "node", "manager1")["Spec"]["Labels"] == {}

    token = lab.shoal("manager1", "swarm", "join-token", "-q", "worker").stdout.strip()
    assert docker("swarm", "join-token", "-q", "worker").stdout.strip() == token
    assert f"docker swarm join --token {token} " in docker("swarm", "join-token", "worker").stdout


def test_stack_deploy_ls_services_ps_scale_rm_and_node_ps(lab, docker):
    """docker stack is client-side: its label filters on services, networks and tasks, and the network
    removal right after the services (which the CLI does not retry), all served."""
    examples = Path(__file__).resolve().parents[2] / "examples" / "web.yml"
    docker.env["REGISTRY"] = lab.registry
    try:
        docker("stack", "deploy", "-c", str(examples), "web")
    finally:
        del docker.env["REGISTRY"]
    assert [s["Name"] for s in shoal_json(lab, "service", "ls")] == ["web_web"]
    assert docker("stack", "ls").stdout.splitlines()[1].split() == ["web", "1"]
    docker("service", "scale", "-d", "web_web=6")
    wait_for(lambda: running(lab, "web_web") == 6, 180, what="web_web at 6 running tasks")
    services = docker("stack", "services", "web", "--format", "{{.Name}} {{.Replicas}}").stdout.split()
    assert services == ["web_web", "6/6"]
    ps = docker("stack", "ps", "web", "--filter", "desired-state=running", "--format", "{{.Name}} {{.Node}}")
    assert sorted(ps.stdout.split("\n")[:-1]) == [f"web_web.{i} manager1" for i in range(1, 7)]
    node_ps = docker("node", "ps", "--filter", "desired-state=running", "--format", "{{.Name}}").stdout.split()
    assert sorted(node_ps) == [f"web_web.{i}" for i in range(1, 7)]
    removed = docker("stack", "rm", "web")
    assert "Removing network web_default" in removed.stdout and removed.stderr == ""
    assert shoal_json(lab, "service", "ls") == []
    assert all(n["Name"] != "web_default" for n in shoal_json(lab, "network", "ls"))
    assert "Nothing found in stack: web" in docker("stack", "rm", "web").stderr


def test_swarm_update_rotate_autolock_and_ca(lab, docker):
    docker("swarm", "update", "--task-history-limit", "3")
    spec = json.loads(docker("info", "--format", "{{json .Swarm.Cluster.Spec}}").stdout)
    assert spec["Orchestration"]["TaskHistoryRetentionLimit"] == 3
    old = lab.shoal("manager1", "swarm", "join-token", "-q", "worker").stdout.strip()
    assert "Successfully rotated worker join token." in docker("swarm", "join-token", "--rotate", "worker").stdout
    new = lab.shoal("manager1", "swarm", "join-token", "-q", "worker").stdout.strip()
    assert new != old and docker("swarm", "join-token", "-q", "worker").stdout.strip() == new
    docker("swarm", "update", "--autolock")
    key = docker("swarm", "unlock-key", "-q").stdout.strip()
    assert key.startswith("SWMKEY-1-") and lab.shoal("manager1", "swarm", "unlock-key", "-q").stdout.strip() == key
    docker("swarm", "update", "--autolock=false")
    refused = docker("swarm", "unlock-key", check=False)
    assert refused.returncode == 1 and refused.stderr == "no unlock key is set\n"   # Docker's words
    root = json.loads(docker("info", "--format", "{{json .Swarm.Cluster}}").stdout)["TLSInfo"]["TrustRoot"]
    docker("swarm", "ca", "--rotate", timeout=120)   # waits until the node's certificate has the new issuer
    assert json.loads(docker("info", "--format", "{{json .Swarm.Cluster}}").stdout)["TLSInfo"]["TrustRoot"] != root


def test_run_exec_logs_rm_and_volumes(lab, docker):
    """This node's containers through runtimed: docker run (attach, wait, --rm, -p), exec, logs,
    port, stop, rm, network connect/disconnect; docker volume create/ls/inspect/rm; each checked
    through `shoal` too."""
    image = f"{lab.registry}/shoal/busybox:latest"
    lab.shoal("manager1", "image", "pull", image)
    ran = docker("run", "--rm", "--name", "drun", image, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (ran.returncode, ran.stdout, ran.stderr) == (3, "out\n", "err\n")
    assert docker("ps", "-aq", "--filter", "name=drun").stdout == ""     # --rm: removed once it exited
    refused = docker("run", "--rm", "--device", "/dev/null", image, "true", check=False)
    assert refused.returncode == 125 and "HostConfig.Devices" in refused.stderr, refused
    # docker run -p, port, ps PORTS; docker network connect --ip / disconnect of that container
    docker("run", "-d", "--name", "dpub", "-p", "18082:80", image, "sh", "-c",
           "mkdir -p /w && echo pub > /w/index.html && exec httpd -f -p 80 -h /w")
    try:
        assert docker("port", "dpub").stdout.strip() == "80/tcp -> 0.0.0.0:18082"
        assert docker("ps", "--filter", "name=dpub", "--format", "{{.Ports}}").stdout.strip() == "0.0.0.0:18082->80/tcp"
        url = f"http://{lab.address('manager1')}:18082/"
        wait_for(lambda: lab.exec("manager1", ["wget", "-qO-", "-T", "3", url], check=False).stdout.strip() == "pub",
                 30, what=url)
        docker("network", "create", "-d", "overlay", "--attachable", "--subnet", "198.19.31.0/24", "dconn")
        docker("network", "connect", "--ip", "198.19.31.7", "--alias", "web", "dconn", "dpub")
        assert "inet 198.19.31.7/24" in docker("exec", "dpub", "ip", "-4", "addr").stdout
        twice = docker("network", "connect", "dconn", "dpub", check=False)
        assert twice.returncode == 1 and "endpoint with name dpub already exists in network dconn" in twice.stderr
        docker("network", "disconnect", "dconn", "dpub")
        assert "198.19.31.7" not in docker("exec", "dpub", "ip", "-4", "addr").stdout
    finally:
        docker("rm", "-f", "dpub")
    wait_for(lambda: docker("network", "rm", "dconn", check=False).returncode == 0, 60, interval=1,
             what="dconn free once dpub left it")

    volume = docker("volume", "create", "--label", "team=a", "dvol").stdout.strip()
    assert volume == "dvol"
    assert [v["Name"] for v in shoal_json(lab, "volume", "ls")] == ["dvol"]
    assert docker("volume", "ls", "--filter", "label=team=a", "--format", "{{.Name}}").stdout.split() == ["dvol"]
    assert json.loads(docker("volume", "inspect", "dvol").stdout)[0]["Labels"] == {"team": "a"}

    cid = docker("run", "-d", "--name", "dbg", "-v", "dvol:/data", image, "sh", "-c",
                 "echo started; exec sleep 1d").stdout.strip()
    assert lab.shoal("manager1", "inspect", "dbg", "--format", "{{.Id}}").stdout.strip() == cid
    assert docker("ps", "-q", "--filter", "name=dbg", "--filter", "status=running").stdout.split() == [cid[:12]]
    assert docker("ps", "-q", "--filter", "is-task=true", "--filter", "name=dbg").stdout == ""
    execd = docker("exec", "dbg", "sh", "-c", "echo in > /data/f; cat /data/f; echo e >&2; exit 2", check=False)
    assert (execd.returncode, execd.stdout, execd.stderr) == (2, "in\n", "e\n")
    wait_for(lambda: docker("logs", "dbg").stdout == "started\n", 30, what="dbg's log line")
    in_use = docker("volume", "rm", "dvol", check=False)
    assert in_use.returncode == 1 and "Error response from daemon:" in in_use.stderr
    docker("stop", "-t", "1", "dbg")
    assert json.loads(docker("inspect", "dbg").stdout)[0]["State"]["Status"] == "exited"
    docker("rm", "dbg")
    missing = docker("logs", "dbg", check=False)
    assert missing.returncode == 1 and "No such container: dbg" in missing.stderr
    docker("volume", "rm", "dvol")
    gone = docker("volume", "inspect", "dvol", check=False)
    assert gone.returncode == 1 and "no such volume" in gone.stderr


def test_stack_redeploy_with_a_secret_and_a_config(lab, docker, tmp_path):
    """A second `docker stack deploy` sends the existing secret and config back (POST
    /secrets/{id}/update): accepted when only labels could change, as swarmkit."""
    (tmp_path / "pw.txt").write_text("s3cr3t\n")
    (tmp_path / "app.conf").write_text("listen 80;\n")
    (tmp_path / "stack.yml").write_text(f"""
services:
  app:
    image: {lab.registry}/shoal/busybox:latest
    command: ["sleep", "1d"]
    secrets: [pw]
    configs: [conf]
secrets:
  pw: {{file: ./pw.txt}}
configs:
  conf: {{file: ./app.conf}}
""")
    for _ in range(2):
        docker("stack", "deploy", "-c", str(tmp_path / "stack.yml"), "sx")
    assert [s["Name"] for s in shoal_json(lab, "secret", "ls")] == ["sx_pw"]
    assert shoal_inspect(lab, "secret", "sx_pw")["Spec"]["Labels"] == {"com.docker.stack.namespace": "sx"}
    assert [c["Name"] for c in shoal_json(lab, "config", "ls")] == ["sx_conf"]
    (tmp_path / "pw.txt").write_text("changed\n")
    changed = docker("stack", "deploy", "-c", str(tmp_path / "stack.yml"), "sx", check=False)
    assert changed.returncode == 1 and "only updates to Labels are allowed" in changed.stderr
    docker("stack", "rm", "sx")
    assert shoal_json(lab, "secret", "ls") == [] and shoal_json(lab, "config", "ls") == []
