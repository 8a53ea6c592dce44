"""Docker's runtime options end to end on a 1-manager lab: `service create`/`update` with --dns*,
--host, --read-only, --sysctl, --ulimit and --oom-score-adj (no network), -t, --group,
--log-driver/--log-opt, and the same options as Compose keys in a stack (on its default overlay),
each checked inside the task's container (or, for the log options, on the node's log files).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory, tmp_path_factory):
    """The node offers generic resources through daemon.json (dockerd's node-generic-resources,
    as `shoald --node-generic-resource` would): the daemons read SHOAL_CONFIG_FILE at start."""
    config = tmp_path_factory.mktemp("daemon") / "daemon.json"
    config.write_text(json.dumps({"node-generic-resources": ["gpu=2", "SSD=ssd1", "SSD=ssd2"]}))
    before = os.environ.get("SHOAL_CONFIG_FILE")
    os.environ["SHOAL_CONFIG_FILE"] = str(config)
    try:
        return lab_factory(managers=1, workers=0)
    finally:
        if before is None:
            del os.environ["SHOAL_CONFIG_FILE"]
        else:
            os.environ["SHOAL_CONFIG_FILE"] = before


def in_container(lab, service: str, script: str) -> str:
    container_id = running_container(lab, service)
    return lab.shoal("manager1", "container", "exec", container_id, "--", "sh", "-c", script).stdout


def running_container(lab, service: str) -> str:
    def container():
        for line in lab.shoal("manager1", "container", "ls", "--format", "json").stdout.splitlines():
            row = json.loads(line)
            if row["Names"].startswith(f"{service}.") and row["State"] == "running":
                return row["ID"]
        return None
    return wait_for(container, 60, what=f"a running container of {service}")


CHECK = ("cat /etc/resolv.conf; echo ---; grep db /etc/hosts; echo ---; touch /x 2>&1; "
         "cat /proc/sys/net/core/somaxconn /proc/self/oom_score_adj; grep 'Max open files' /proc/self/limits")


def test_service_flags_apply_inside_the_container(lab, image):
    lab.shoal("manager1", "service", "create", "--name", "opts", "--stop-signal", "KILL",
              "--dns", "192.0.2.53", "--dns-search", "example.test", "--dns-option", "timeout:2",
              "--host", "db:192.0.2.10", "--read-only", "--sysctl", "net.core.somaxconn=1111",
              "--ulimit", "nofile=1024:2048", "--oom-score-adj", "300", image, "sleep", "3600", timeout=120)
    try:
        resolv, hosts, rest = in_container(lab, "opts", CHECK).split("---\n")
        # no swarm network: the servers are written as given
        assert resolv == "nameserver 192.0.2.53\nsearch example.test\noptions timeout:2\n"
        assert hosts == "192.0.2.10\tdb\n"
        lines = rest.splitlines()
        assert "Read-only file system" in lines[0]
        assert lines[1:3] == ["1111", "300"] and lines[3].split()[3:5] == ["1024", "2048"]
        lab.shoal("manager1", "service", "update", "--host-rm", "db", "--read-only=false", "--ulimit-add",
                  "nofile=512:512", "opts", timeout=120)
        seen = wait_for(lambda: (lambda s: s if "192.0.2.10" not in s else None)(in_container(lab, "opts", CHECK)),
                        60, what="the updated task")
        lines = seen.split("---\n")[2].splitlines()
        assert lines[0] == "1111" and lines[2].split()[3:5] == ["512", "512"]    # no touch error: writable
    finally:
        lab.shoal("manager1", "service", "rm", "opts", check=False)


STACK = """\
services:
  app:
    image: IMAGE
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    dns: 192.0.2.53
    dns_search: [example.test]
    dns_opt: ["timeout:2"]
    extra_hosts: ["db:192.0.2.10"]
    read_only: true
    sysctls: {net.core.somaxconn: 1111}
    ulimits: {nofile: {soft: 1024, hard: 2048}}
    oom_score_adj: 300
"""


def test_compose_keys_apply_inside_the_container(lab, image):
    from shoal.lab import procs
    lab.exec("manager1", [procs.program("shoal"), "stack", "deploy", "--detach=false", "-c", "-", "ro"],
             input=STACK.replace("IMAGE", image), timeout=180)
    try:
        resolv, hosts, rest = in_container(lab, "ro_app", CHECK + "; nslookup app 127.0.0.11 >/dev/null && "
                                                                  "echo resolves").split("---\n")
        # on the stack's default overlay: the embedded DNS stays first and forwards to 192.0.2.53
        assert resolv == "nameserver 127.0.0.11\nsearch example.test\noptions ndots:0 timeout:2\n"
        assert hosts == "192.0.2.10\tdb\n"
        lines = rest.splitlines()
        assert "Read-only file system" in lines[0]
        assert lines[1:3] == ["1111", "300"] and lines[3].split()[3:5] == ["1024", "2048"]
        assert lines[4] == "resolves"      # the swarm's names still answer
    finally:
        lab.shoal("manager1", "stack", "rm", "ro", check=False)


def test_tty_group_and_log_options_apply(lab, image):
    """-t: stdio is a terminal; --group (GIDs: the lab image has no /etc/group): /proc/self/status Groups, the exec too; the
    json-file options rotate the container's log at 4 KiB into 2 files on the node."""
    lab.shoal("manager1", "service", "create", "--name", "term", "-t", "--group", "4242", "--group", "100",
              "--log-driver", "json-file", "--log-opt", "max-size=4k", "--log-opt", "max-file=2", "--stop-signal",
              "KILL", image, "sh", "-c",
              "i=0; while [ $i -lt 400 ]; do echo line-$i-0123456789012345678901234567890123456789; i=$((i+1)); done; "
              "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; grep ^Groups: /proc/self/status; exec sleep 3600", timeout=120)
    try:
        container_id = running_container(lab, "term")
        assert lab.shoal("manager1", "container", "exec", container_id, "--", "sh", "-c",
                         "grep ^Groups: /proc/self/status").stdout.split()[1:] == ["100", "4242"]
        log_path = json.loads(lab.shoal("manager1", "container", "inspect", container_id).stdout)[0]["LogPath"]

        def logged():
            out = lab.exec("manager1", ["sh", "-c", f"wc -c {log_path}*; cat {log_path}"]).stdout
            return out if "Groups:" in out else None
        out = wait_for(logged, 60, what="the workload's last line in its log")
        sizes = {f: int(n) for n, f in (line.split() for line in out.splitlines()[:3]) if f != "total"}
        assert sorted(sizes) == [log_path, log_path + ".1"]          # max-file=2: one rotated file kept
        assert all(size <= 4096 for size in sizes.values())
        records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert {"stream": "stdout", "log": "on-a-tty\r\n"}.items() <= next(
            r for r in records if r["log"].startswith("on-a-tty")).items()    # a TTY's output, as Docker logs it
        assert records[-1]["log"].split()[1:] == ["100", "4242"]
    finally:
        lab.shoal("manager1", "service", "rm", "term", check=False)


def test_service_labels_placeholder_and_a_templated_config(lab, image):
    """{{index .Service.Labels ...}} in env, and a config created with --template-driver golang:
    expanded per task on the node (placeholders, secret and env functions), read inside."""
    template = ('slot={{.Task.Slot}} svc={{.Service.Name}} zone={{index .Service.Labels "zone"}} '
                'pass={{secret "db_pass"}} greeting={{env "GREETING"}}\n')
    from shoal.lab import procs
    shoal = procs.program("shoal")
    lab.exec("manager1", [shoal, "secret", "create", "db_pass", "-"], input="s3cret")
    lab.exec("manager1", [shoal, "config", "create", "--template-driver", "golang", "app", "-"], input=template)
    try:
        inspected = json.loads(lab.shoal("manager1", "config", "inspect", "app").stdout)[0]
        assert inspected["Spec"]["Templating"] == {"Name": "golang"}
        lab.shoal("manager1", "service", "create", "--name", "tmpl", "--label", "zone=east", "--stop-signal", "KILL",
                  "--env", 'ZONE={{index .Service.Labels "zone"}}', "--env", "GREETING=hi-{{.Task.Slot}}",
                  "--secret", "db_pass", "--config", "source=app,target=/etc/app.conf", image, "sleep", "3600",
                  timeout=120)
        seen = in_container(lab, "tmpl", "echo $ZONE; cat /etc/app.conf")
        assert seen == "east\nslot=1 svc=tmpl zone=east pass=s3cret greeting=hi-1\n"
    finally:
        lab.shoal("manager1", "service", "rm", "tmpl", check=False)
        lab.shoal("manager1", "config", "rm", "app", check=False)
        lab.shoal("manager1", "secret", "rm", "db_pass", check=False)


def test_mount_options_apply_inside_the_container(lab, image):
    """--mount: a new volume is filled from the image (Docker's copy-up) unless volume-nocopy;
    tmpfs-mode; bind-propagation (shared:N in mountinfo); volume-label on the node's volume."""
    lab.shoal("manager1", "service", "create", "--name", "mnt", "--stop-signal", "KILL",
              "--mount", "type=volume,source=mnt-www,target=/var/www,volume-label=team=web",
              "--mount", "type=volume,source=mnt-etc,target=/etc,volume-nocopy",
              "--mount", "type=tmpfs,target=/scratch,tmpfs-mode=700",
              "--mount", "type=bind,source=/tmp,target=/hosttmp,bind-propagation=rshared",
              image, "sleep", "3600", timeout=120)
    try:
        seen = in_container(lab, "mnt", "ls /var/www; [ -e /etc/passwd ] || echo no-passwd; stat -c %a /scratch; "
                                        "grep ' /hosttmp ' /proc/self/mountinfo | grep -c shared:")
        assert seen.split() == ["index.html", "no-passwd", "700", "1"]
        volume = json.loads(lab.shoal("manager1", "volume", "inspect", "mnt-www").stdout)[0]
        assert volume["Labels"] == {"team": "web"}
    finally:
        lab.shoal("manager1", "service", "rm", "mnt", check=False)


def test_generic_resources_are_scheduled_and_shown_to_the_task(lab, image):
    """gpu=1 and SSD=1 per task on a node offering gpu=2 and SSD units ssd1, ssd2: two tasks run,
    each told what it holds (DOCKER_RESOURCE_*), the third waits for resources."""
    node = json.loads(lab.shoal("manager1", "node", "inspect", "self").stdout)[0]
    assert {"DiscreteResourceSpec": {"Kind": "gpu", "Value": 2}} in node["Description"]["Resources"]["GenericResources"]
    lab.shoal("manager1", "service", "create", "--name", "gpu", "--detach", "--replicas", "3", "--stop-signal", "KILL",
              "--generic-resource", "gpu=1", "--generic-resource", "SSD=1", image, "sleep", "3600", timeout=120)
    try:
        def settled():
            rows = [json.loads(line) for line in lab.shoal("manager1", "service", "ps", "--format", "json",
                                                           "gpu").stdout.splitlines()]
            running = [r for r in rows if r["CurrentState"].startswith("Running")]
            waiting = [r for r in rows if r["CurrentState"].startswith("Pending")]
            return (running, waiting) if len(running) == 2 and len(waiting) == 1 else None
        running, waiting = wait_for(settled, 90, what="two tasks running and one pending")
        task = json.loads(lab.shoal("manager1", "inspect", "--type", "task", waiting[0]["ID"]).stdout)[0]
        assert task["Status"]["Message"] == "no suitable node (insufficient resources on 1 node)"
        seen = set()
        for line in lab.shoal("manager1", "container", "ls", "--format", "json").stdout.splitlines():
            row = json.loads(line)
            if row["Names"].startswith("gpu.") and row["State"] == "running":
                env = lab.shoal("manager1", "container", "exec", row["ID"], "--", "sh", "-c",
                                "echo $DOCKER_RESOURCE_GPU $DOCKER_RESOURCE_SSD").stdout.split()
                assert env[0] == "1"
                seen.add(env[1])
        assert seen == {"ssd1", "ssd2"}            # each named unit to one task only
    finally:
        lab.shoal("manager1", "service", "rm", "gpu", check=False)
