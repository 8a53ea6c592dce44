"""Issue 6 as a user sees it: `shoal stack` on a 3-manager + 2-worker lab with the examples/ files
as they are (REGISTRY pointing at the lab registry).

One lab for the module; each test removes its stacks with `stack rm` before it ends.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from shoal.lab import procs
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NODES = ["manager1", "manager2", "manager3", "worker1", "worker2"]


def stack(lab, *args: str, env: dict[str, str] | None = None, on: str = "manager1", check: bool = True):
    """`shoal stack ARGS` on host `on`, with REGISTRY (and `env`) set as a user would."""
    variables = [f"REGISTRY={lab.registry}", *(f"{k}={v}" for k, v in (env or {}).items())]
    return lab.exec(on, ["env", *variables, procs.program("shoal"), "stack", *args], check=check, timeout=300)


def http_get(lab, address: str, port: int, on: str = "worker2", path: str = "/") -> str:
    code = (f"import urllib.request; print(urllib.request.urlopen('http://{address}:{port}{path}', timeout=5)"
            f".read().decode(), end='')")
    return lab.exec(on, [sys.executable, "-c", code], timeout=30).stdout


def control(lab, on: str = "manager1"):
    from shoal.cli.client import Client
    return Client(f"unix://{lab.host(on).socket}")


def list_tasks(lab, service: str) -> list:
    from proto import control_pb2
    return list(control(lab).call("ListTasks", control_pb2.ListTasksRequest(filters={"service": service})).tasks)


def running_ids(lab, name: str) -> set[str]:
    out = stack(lab, "ps", "--no-trunc", "--format", "json", name).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {r["ID"] for r in rows if r["DesiredState"] == "Running" and r["CurrentState"].startswith("Running")}


def services_of(lab, name: str) -> list[dict]:
    out = stack(lab, "services", "--format", "json", name).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def stacks(lab) -> dict[str, str]:
    out = stack(lab, "ls", "--format", "json").stdout
    return {row["Name"]: row["Services"] for row in map(json.loads, filter(str.strip, out.splitlines()))}


def remove(lab, *names: str) -> None:
    stack(lab, "rm", *names, check=False)


def started_after(dependent: list, dependency: list) -> bool:
    """Every task of `dependent` was created after some task of `dependency` was running."""
    from proto import objects_pb2 as pb
    up = [t.status.timestamp for t in dependency if t.status.state == pb.RUNNING]
    return bool(up and dependent) and min(t.meta.created_at for t in dependent) >= min(up)


def test_web_answers_on_every_node_redeploys_as_a_no_op_and_is_removed(lab):
    try:
        out = stack(lab, "deploy", "--wait", "-c", str(EXAMPLES / "web.yml"), "web").stdout
        assert "Creating network web_default" in out and "Creating service web_web" in out
        assert stacks(lab) == {"web": "1"}
        [row] = services_of(lab, "web")
        assert row["Name"] == "web_web" and row["Replicas"] == "3/3" and row["Ports"] == "*:8080->80/tcp"
        before = running_ids(lab, "web")
        assert len(before) == 3
        replies = {node: {http_get(lab, lab.address(node), 8080) for _ in range(3)} for node in NODES}
        assert all(r.startswith("hello from ") for answers in replies.values() for r in answers), replies
        assert len(set().union(*replies.values())) >= 2, replies
        version = json.loads(lab.shoal("manager1", "service", "inspect", "web_web").stdout)[0]["Version"]

        again = stack(lab, "deploy", "-c", str(EXAMPLES / "web.yml"), "web", on="manager2").stdout
        assert again.strip() == "Stack web is up to date"
        # Nothing was written (same version), so nothing can have been replaced.
        assert json.loads(lab.shoal("manager1", "service", "inspect", "web_web").stdout)[0]["Version"] == version
        assert running_ids(lab, "web") == before
        assert len(list_tasks(lab, "web_web")) == 3
    finally:
        remove(lab, "web")
    assert "web" not in stacks(lab)
    assert "web_default" not in lab.shoal("manager1", "network", "ls").stdout
    assert lab.shoal("manager1", "service", "ls", "-q").stdout.strip() == ""


def test_webworker_shares_the_volume_and_web_starts_after_the_worker(lab):
    try:
        out = stack(lab, "deploy", "--wait", "-c", str(EXAMPLES / "webworker.yml"), "app").stdout
        assert out.index("Creating service app_worker") < out.index("Creating service app_web")
        assert started_after(list_tasks(lab, "app_web"), list_tasks(lab, "app_worker"))
        workers = {t.id[:12]: t.node_id for t in list_tasks(lab, "app_worker")}
        web_nodes = {t.node_id for t in list_tasks(lab, "app_web")}
        page = wait_for(lambda: (lambda p: p if p.startswith("updated at") else None)(
            http_get(lab, lab.address("worker1"), 8081)), 20, what="a status page on 8081")
        writer = re.fullmatch(r"updated at .+ by (\S+)\n", page).group(1)
        assert writer in workers and workers[writer] in web_nodes  # a worker on the web replica's node
        wait_for(lambda: http_get(lab, lab.address("worker1"), 8081) != page, 15, what="a fresher page")
    finally:
        remove(lab, "app")


def test_healthcheck_stack_waits_for_health_and_an_update_rolls_only_web(lab):
    from proto import objects_pb2 as pb
    try:
        out = stack(lab, "deploy", "-c", str(EXAMPLES / "healthcheck.yml"), "hc").stdout
        assert "Waiting for service hc_web to be healthy before creating service hc_client" in out
        web = list_tasks(lab, "hc_web")
        assert started_after(list_tasks(lab, "hc_client"), web)
        wait_for(lambda: [t.status.health for t in list_tasks(lab, "hc_web") if t.desired_state == pb.RUNNING]
                 == ["healthy"] * 3, 60, what="3 healthy web tasks")
        # deployed without --wait: the client task may still be starting
        client_before = wait_for(lambda: (lambda ids: ids if len(ids) == 1 else None)(
            running_ids(lab, "hc") - {t.id for t in list_tasks(lab, "hc_web")}), 30, what="the client task running")
        web_before = {t.id for t in list_tasks(lab, "hc_web") if t.desired_state == pb.RUNNING}

        out = stack(lab, "deploy", "--wait", "-c", str(EXAMPLES / "healthcheck.yml"), "hc",
                    env={"VERSION": "2"}).stdout
        assert "Updating service hc_web (args)" in out and "hc_client" not in out.split("hc_web:")[0]
        web_after = {t.id for t in list_tasks(lab, "hc_web") if t.desired_state == pb.RUNNING}
        assert len(web_after) == 3 and not web_after & web_before
        assert client_before <= running_ids(lab, "hc")
        assert http_get(lab, lab.address("manager2"), 8083) == "version 2\n"
    finally:
        remove(lab, "hc")


EDITABLE = """\
services:
  a:
    image: ${REGISTRY}/shoal/busybox:latest
    command: ["sleep", "3600"]
    environment: {COLOUR: blue}
    stop_signal: KILL
    deploy: {replicas: 2}
  b:
    image: ${REGISTRY}/shoal/busybox:latest
    command: ["sleep", "3600"]
    stop_signal: KILL
"""


def test_editing_one_service_rolls_only_it_and_prune_removes_a_dropped_one(lab, tmp_path):
    path = tmp_path / "ed.yml"
    try:
        path.write_text(EDITABLE)
        stack(lab, "deploy", "--wait", "-c", str(path), "ed")
        a_before = {t.id for t in list_tasks(lab, "ed_a")}
        b_before = {t.id for t in list_tasks(lab, "ed_b")}
        path.write_text(EDITABLE.replace("COLOUR: blue", "COLOUR: red"))
        out = stack(lab, "deploy", "--wait", "-c", str(path), "ed").stdout
        assert "Updating service ed_a (env)" in out and "Updating service ed_b" not in out
        assert {t.id for t in list_tasks(lab, "ed_b")} == b_before
        a_running = running_ids(lab, "ed") - b_before
        assert len(a_running) == 2 and not a_running & a_before

        path.write_text(EDITABLE.split("  b:")[0].replace("COLOUR: blue", "COLOUR: red"))
        kept = stack(lab, "deploy", "-c", str(path), "ed")
        assert "--prune" in kept.stderr and [s["Name"] for s in services_of(lab, "ed")] == ["ed_a", "ed_b"]
        out = stack(lab, "deploy", "--prune", "-c", str(path), "ed").stdout
        assert "Removing service ed_b" in out
        assert [s["Name"] for s in services_of(lab, "ed")] == ["ed_a"]
    finally:
        remove(lab, "ed")


def test_invalid_files_and_missing_externals_deploy_nothing(lab, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(EDITABLE.replace("deploy: {replicas: 2}", "deploy: {replicas: two}"))
    result = stack(lab, "deploy", "-c", str(bad), "bad", check=False)
    assert result.returncode != 0
    assert f"{bad}:7: services.a.deploy.replicas: expected an integer" in result.stderr
    external = tmp_path / "ext.yml"
    external.write_text(EDITABLE + "    networks: [outside]\nnetworks:\n  outside: {external: true}\n")
    result = stack(lab, "deploy", "-c", str(external), "bad", check=False)
    assert result.returncode != 0 and "network outside is declared as external" in result.stderr
    assert "bad" not in stacks(lab)
    assert "bad_" not in lab.shoal("manager1", "network", "ls").stdout
    nothing = stack(lab, "ps", "bad", check=False)
    assert nothing.returncode != 0 and "nothing found in stack: bad" in nothing.stderr


def test_secrets_stack_mounts_its_secret_and_config_and_refuses_a_changed_secret(lab, tmp_path):
    from proto import objects_pb2 as pb
    try:
        stack(lab, "deploy", "--wait", "-c", str(EXAMPLES / "secrets.yml"), "sec")
        assert "greeting = hello from a config" in http_get(lab, lab.address("manager3"), 8082, path="/app.conf")
        task = next(t for t in list_tasks(lab, "sec_app") if t.status.state == pb.RUNNING)
        from proto import control_pb2
        node = control(lab).call("GetNode", control_pb2.GetNodeRequest(node_id=task.node_id)).node.description.hostname
        secret = lab.shoal(node, "container", "exec", task.status.container_id, "cat",
                           "/run/secrets/db_password").stdout
        assert secret == (EXAMPLES / "db_password.txt").read_text()
        assert stack(lab, "deploy", "-c", str(EXAMPLES / "secrets.yml"), "sec").stdout.strip() == \
            "Stack sec is up to date"
        changed = tmp_path / "secrets.yml"
        changed.write_text((EXAMPLES / "secrets.yml").read_text())
        (tmp_path / "db_password.txt").write_text("another password\n")
        result = stack(lab, "deploy", "-c", str(changed), "sec", check=False)
        assert result.returncode != 0 and "secret sec_db_password" in result.stderr
    finally:
        remove(lab, "sec")
