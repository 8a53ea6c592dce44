"""Issue 5 as a user sees it: overlay networks, VIPs, DNS and the routing mesh on a lab of
3 managers + 2 workers with the real runtime. Backends are busybox httpd serving their
own hostname (the task's short ID); a CGI script shows the client address a backend sees.
Also: tasks on different hosts pinging each other, a published port that keeps the client's
address (traffic_policy=local), and one-off containers joining an attachable network."""

from __future__ import annotations

import collections
import json
import time

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"
HOST_IPS = ["manager1", "manager2", "manager3", "worker1", "worker2"]


def tasks(lab, service: str) -> list[dict]:
    out = lab.shoal("manager1", "service", "ps", "--format", "json", service).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def running(lab, service: str) -> list[dict]:
    return [t for t in tasks(lab, service) if t["DesiredState"] == "Running" and t["CurrentState"].startswith("Running")]


def fetch(lab, host: str, url: str, count: int = 1) -> list[str]:
    script = f"for i in $(seq {count}); do timeout 3 busybox wget -qO- {url} || echo FAIL; done"
    return lab.exec(host, ["sh", "-c", script], check=False).stdout.split()


def container_of(lab, service: str) -> tuple[str, str]:
    """(node, container id) of the first running task of ``service``."""
    task = running(lab, service)[0]
    node = task["Node"]
    for line in lab.shoal(node, "container", "ls", "--format", "json").stdout.splitlines():
        info = json.loads(line)
        if info.get("Names", "").startswith(f"{service}.") or f"{service}." in json.dumps(info):
            return node, info["ID"]
    raise AssertionError(f"no container of {service} on {node}")


def in_container(lab, service: str, script: str) -> str:
    node, container = container_of(lab, service)
    return lab.shoal(node, "container", "exec", container, "--", "sh", "-c", script, check=False).stdout


def remove(lab, *names: str) -> None:
    lab.shoal("manager1", "service", "rm", *names, check=False)


def test_published_port_answers_on_every_node_and_balances(lab, image):
    try:
        lab.shoal("manager1", "service", "create", "--name", "pub", "-p", "8080:80", "--replicas", "2",
                  "--constraint", "node.role==manager", "--stop-signal", "KILL", image, "sh", "-c", HTTPD,
                  timeout=120)
        backends = {t["ID"][:12] for t in running(lab, "pub")}
        for host in HOST_IPS:  # workers carry no task: the mesh forwards across hosts
            answers = wait_for(lambda: (lambda a: a if "FAIL" not in a else None)(
                fetch(lab, "worker1", f"http://{lab.address(host)}:8080/", 20)), 20,
                what=f"port 8080 on {host}")
            assert set(answers) <= backends, answers
        answers = collections.Counter(fetch(lab, "worker2", f"http://{lab.address('worker1')}:8080/", 60))
        assert set(answers) == backends and min(answers.values()) >= 12, answers
    finally:
        remove(lab, "pub")


def test_host_mode_port_answers_only_on_its_node(lab, image):
    try:
        lab.shoal("manager1", "service", "create", "--name", "hostport", "--publish",
                  "mode=host,published=8081,target=80", "--constraint", "node.hostname==worker1",
                  "--stop-signal", "KILL", image, "sh", "-c", HTTPD, timeout=120)
        wait_for(lambda: fetch(lab, "manager1", f"http://{lab.address('worker1')}:8081/")[0] != "FAIL", 20,
                 what="host port on worker1")
        assert fetch(lab, "manager1", f"http://{lab.address('worker2')}:8081/") == ["FAIL"]
    finally:
        remove(lab, "hostport")
def test_vip_dns_and_isolation_across_hosts(lab, image):
    lab.shoal("manager1", "network", "create", "-d", "overlay", "--subnet", "198.19.10.0/24", "front")
    lab.shoal("manager1", "network", "create", "-d", "overlay", "--subnet", "198.19.11.0/24", "back")
    try:
        lab.shoal("manager1", "service", "create", "--name", "web", "--network", "front", "--replicas", "3",
                  "--stop-signal", "KILL", image, "sh", "-c", HTTPD, timeout=120)
        lab.shoal("manager1", "service", "create", "--name", "client", "--network", "front",
                  "--constraint", "node.hostname==worker2", "--stop-signal", "KILL", image, "sleep", "3600",
                  timeout=120)
        lab.shoal("manager1", "service", "create", "--name", "other", "--network", "back",
                  "--constraint", "node.hostname==worker2", "--stop-signal", "KILL", image, "sleep", "3600",
                  timeout=120)
        backends = {t["ID"][:12] for t in running(lab, "web")}
        assert len({t["Node"] for t in running(lab, "web")}) >= 2  # spread over hosts
        out = in_container(lab, "client",
                           "for i in $(seq 300); do timeout 3 wget -qO- http://web/ || echo FAIL; done")
        counts = collections.Counter(out.split())
        assert set(counts) == backends, counts
        assert min(counts.values()) >= 60, counts  # none below 20 %
        ips = in_container(lab, "client", "nslookup tasks.web 127.0.0.11")
        assert ips.count("198.19.10.") >= 3 + 0, ips
        lab.shoal("manager1", "service", "scale", "web=5", timeout=120)   # returns once all 5 run
        started = time.monotonic()
        wait_for(lambda: in_container(lab, "client", "nslookup tasks.web 127.0.0.11").count("198.19.10.") >= 5,
                 2, interval=0.1, what="tasks.web to follow the scale within 2 s of the tasks running")
        print(f"tasks.web listed the new tasks {time.monotonic() - started:.2f} s after the scale converged")
        # Killing a backend's host takes its tasks out of the VIP and DNS.
        victim = next(t["Node"] for t in running(lab, "web") if t["Node"] not in ("worker2", "manager1"))
        gone = {t["ID"][:12] for t in running(lab, "web") if t["Node"] == victim}
        lab.kill(victim)
        try:
            def clean():
                answers = in_container(lab, "client",
                                       "for i in $(seq 30); do timeout 3 wget -qO- http://web/ || echo FAIL; done").split()
                return len(answers) == 30 and "FAIL" not in answers and not (set(answers) & gone)
            wait_for(clean, 40, interval=1, what=f"{victim}'s backends to leave the VIP")
        finally:
            lab.start(victim)
            lab.wait_ready()
        # A container on another network reaches neither the name nor the addresses.
        isolated = in_container(lab, "other", "timeout 3 wget -qO- http://web/ || echo FAIL")
        assert "FAIL" in isolated
        in_use = lab.shoal("manager1", "network", "rm", "front", check=False)
        assert in_use.returncode != 0 and "in use" in in_use.stderr
    finally:
        remove(lab, "web", "client", "other")
        def removed():
            result = lab.shoal("manager1", "network", "rm", "front", "back", check=False)
            return result.returncode == 0 or ("not found" in result.stderr and "in use" not in result.stderr)
        # Tasks of the killed host hold their addresses until that host reports them stopped.
        wait_for(removed, 90, interval=1, what="networks removable once their tasks are gone")


CGI = ("mkdir -p /www/cgi-bin && hostname > /www/index.html && "
       "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && "
       "chmod +x /www/cgi-bin/ip && exec httpd -f -p 80 -h /www")


def test_tasks_on_different_hosts_ping_each_other_over_the_overlay(lab, image):
    lab.shoal("manager1", "network", "create", "-d", "overlay", "--subnet", "198.19.12.0/24", "mesh")
    try:
        lab.shoal("manager1", "service", "create", "--name", "pinger", "--network", "mesh", "--replicas", "2",
                  "--max-replicas", "1", "--stop-signal", "KILL", image, "sleep", "3600", timeout=120)
        assert len({t["Node"] for t in running(lab, "pinger")}) == 2
        lookup = in_container(lab, "pinger", "nslookup tasks.pinger 127.0.0.11")
        ips = sorted({word for word in lookup.split() if word.startswith("198.19.12.")})
        assert len(ips) == 2, lookup
        for ip in ips:   # one of them is the container itself, the other is on the other host
            out = in_container(lab, "pinger", f"ping -c 1 -W 2 {ip} >/dev/null && echo OK || echo FAIL")
            assert out.split() == ["OK"], (ip, out)
    finally:
        remove(lab, "pinger")
        wait_for(lambda: lab.shoal("manager1", "network", "rm", "mesh", check=False).returncode == 0, 30,
                 interval=1, what="network mesh removable")


def test_traffic_policy_local_keeps_the_client_address(lab, image):
    try:
        lab.shoal("manager1", "service", "create", "--name", "whoami", "--publish",
                  "published=8090,target=80,traffic_policy=local", "--constraint", "node.hostname==worker1",
                  "--stop-signal", "KILL", image, "sh", "-c", CGI, timeout=120)
        listed = lab.shoal("manager1", "service", "ls", "--format", "json").stdout
        # Parsed: Docker's JSON escapes ">" as \u003e, as Go's encoder does.
        ports = {row["Name"]: row["Ports"] for row in map(json.loads, listed.splitlines()) if row}
        assert ports["whoami"] == "*:8090->80/tcp (local)"
        url = f"http://{lab.address('worker1')}:8090/cgi-bin/ip"
        seen = wait_for(lambda: (lambda a: a if a != ["FAIL"] else None)(fetch(lab, "manager2", url)), 20,
                        what="the local port on worker1")
        # busybox httpd listens dual-stack: it shows an IPv4 client as [::ffff:a.b.c.d]
        seen = [a.removeprefix("[::ffff:").removesuffix("]") for a in seen]
        assert seen == [lab.address("manager2")], seen      # the client's underlay address, no SNAT
        # A node without a local backend does not answer (its mesh has no local target).
        assert fetch(lab, "manager2", f"http://{lab.address('worker2')}:8090/cgi-bin/ip") == ["FAIL"]
    finally:
        remove(lab, "whoami")


def test_a_one_off_container_joins_an_attachable_network_and_reaches_a_service(lab, image):
    lab.shoal("manager1", "network", "create", "-d", "overlay", "--attachable", "--subnet", "198.19.13.0/24",
              "shared")
    lab.shoal("manager1", "network", "create", "-d", "overlay", "--subnet", "198.19.14.0/24", "closed")
    try:
        lab.shoal("manager1", "service", "create", "--name", "api", "--network", "shared",
                  "--constraint", "node.hostname==manager2", "--stop-signal", "KILL", image, "sh", "-c", HTTPD,
                  timeout=120)
        backend = running(lab, "api")[0]["ID"][:12]
        out = lab.shoal("worker1", "run", "--rm", "--network", "shared", "--network-alias", "probe", image,
                        "sh", "-c", "wget -qO- http://api/ && nslookup probe 127.0.0.11 | grep -c 198.19.13.",
                        timeout=60)
        assert out.stdout.split() == [backend, "1"], out
        # --rm detached it: the network has no user left but the service.
        lab.shoal("manager1", "service", "rm", "api")
        wait_for(lambda: lab.shoal("manager1", "network", "rm", "shared", check=False).returncode == 0, 30,
                 interval=1, what="network shared removable once the service is gone")
        refused = lab.shoal("worker2", "run", "--rm", "--network", "closed", image, "true", check=False)
        assert refused.returncode == 125
        assert "Could not attach to network closed: network closed not manually attachable" in refused.stderr
    finally:
        remove(lab, "api")
        lab.shoal("manager1", "network", "rm", "shared", "closed", check=False)


class Requests:
    """A client on ``host`` asking the published ``port`` of ``hosts`` in turn, 10 times a second,
    until ``stop()``: one line per request in a file ("ok ADDRESS" or "FAIL ADDRESS TIME"), so a
    test can wait until enough requests reached one node."""

    def __init__(self, lab, host: str, hosts: list[str], port: int, directory):
        import subprocess

        self._log, self._stop = directory / f"requests-{port}", directory / f"stop-{port}"
        self.address = {h: lab.address(h) for h in hosts}
        script = (f"while [ ! -e {self._stop} ]; do for a in {' '.join(self.address.values())}; do "
                  f"if timeout 2 busybox wget -qO- http://$a:{port}/ >/dev/null 2>&1; then echo ok $a; "
                  f"else echo FAIL $a $(date +%T); fi >> {self._log}; sleep 0.1; done; done")
        self._proc = subprocess.Popen(lab.exec_argv(host, ["sh", "-c", script]), env=lab.host_env(host))

    def lines(self) -> list[str]:
        return self._log.read_text().splitlines() if self._log.exists() else []

    def count(self, host: str | None = None) -> int:
        """Requests made so far (to ``host``'s address only, if named)."""
        return sum(1 for line in self.lines() if host is None or line.split()[1] == self.address[host])

    def stop(self) -> tuple[int, list[str]]:
        """Stop the client: (requests answered, the failed ones)."""
        import subprocess

        self._stop.touch()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        lines = self.lines()
        return sum(1 for line in lines if line.startswith("ok ")), [x for x in lines if x.startswith("FAIL")]


def test_a_node_marked_down_while_its_shoald_restarts_keeps_its_routing_mesh(lab, image, tmp_path):
    """On a slow machine (a software-emulated VM) a shoald restart outlasts the heartbeat grace:
    the node is marked Down and its tasks are replaced elsewhere, but its runtimed and routing
    mesh keep running. Requests it receives meanwhile are answered: the other nodes keep it among
    their overlay peers, so replies of remote backends find their way back (they did not, and 17
    of 1,661 requests failed in make vagrant-test's rolling restart)."""
    try:
        lab.shoal("manager1", "service", "create", "--name", "slow", "-p", "8082:80", "--replicas", "3",
                  "--stop-signal", "KILL", image, "sh", "-c", HTTPD, timeout=120)
        wait_for(lambda: len(running(lab, "slow")) == 3, 60, what="3 tasks of slow running")
        wait_for(lambda: "FAIL" not in fetch(lab, "worker2", f"http://{lab.address('worker1')}:8082/", 5), 30,
                 what="the published port answering on worker1")
        client = Requests(lab, "worker2", ["worker1", "manager1"], 8082, tmp_path)
        try:
            lab.stop_shoald("worker1")
            wait_for(lambda: {n["Hostname"]: n["Status"] for n in lab.nodes()}["worker1"] == "Down", 60,
                     what="worker1 marked Down")
            seen = client.count("worker1")
            wait_for(lambda: client.count("worker1") >= seen + 20, 120, what="20 requests to worker1 while Down")
            lab.start("worker1")
            wait_for(lambda: {n["Hostname"]: n["Status"] for n in lab.nodes()}["worker1"] == "Ready"
                     and len(running(lab, "slow")) == 3, 120, what="worker1 Ready again")
        finally:
            ok, failed = client.stop()
        print(f"worker1 Down during its shoald restart: {ok} requests answered, {len(failed)} failed")
        assert failed == [], f"{len(failed)} of {ok + len(failed)} requests failed: {failed[:10]}"
    finally:
        remove(lab, "slow")


def test_a_rolling_update_and_a_drain_fail_no_request(lab, image, tmp_path):
    """What a Docker user expects of `service update` and `node update --availability drain`
    while a client asks the published port on every node: each stopped task first leaves every
    node's routing mesh and keeps running for the drain delay (docs/rolling-upgrades.md), each new
    one gets traffic once it runs, so no request fails. (Here, with few containers per host, it
    held before the drain delay too: the failures needed a host whose runtimed converged slowly,
    which the component test of the delay stands for.)"""
    try:
        lab.shoal("manager1", "service", "create", "--name", "upd", "-p", "8083:80", "--replicas", "3", image,
                  "sh", "-c", HTTPD, timeout=120)
        wait_for(lambda: len(running(lab, "upd")) == 3, 60, what="3 tasks of upd running")
        wait_for(lambda: "FAIL" not in fetch(lab, "worker2", f"http://{lab.address('manager1')}:8083/", 5), 30,
                 what="the published port answering")
        client = Requests(lab, "worker2", HOST_IPS, 8083, tmp_path)
        node = None
        try:
            before = {t["ID"] for t in running(lab, "upd")}
            lab.shoal("manager1", "service", "update", "--force", "upd", timeout=300)
            wait_for(lambda: len(running(lab, "upd")) == 3 and not before & {t["ID"] for t in running(lab, "upd")},
                     120, what="3 new tasks of upd running")
            updated = client.count()
            node = running(lab, "upd")[0]["Node"]
            lab.shoal("manager1", "node", "update", "--availability", "drain", node)
            wait_for(lambda: len(running(lab, "upd")) == 3 and node not in {t["Node"] for t in running(lab, "upd")},
                     120, what=f"the tasks of upd moved off {node}")
            drained = client.count()
            wait_for(lambda: client.count() >= drained + 20, 60, what="20 more requests")
        finally:
            if node is not None:
                lab.shoal("manager1", "node", "update", "--availability", "active", node, check=False)
            ok, failed = client.stop()
        print(f"rolling update ({updated} requests) and drain of {node}: {ok} requests answered, "
              f"{len(failed)} failed")
        assert failed == [], f"{len(failed)} of {ok + len(failed)} requests failed: {failed[:10]}"
    finally:
        remove(lab, "upd")


def test_a_rolling_restart_of_every_shoald_fails_no_request(lab, image, tmp_path):
    """An upgrade of shoald, node after node (the leader included), while a client asks the published
    port 10 times a second on every node in turn: containers and the routing mesh belong to
    shoal-runtimed, so no request fails. Runs last in this module (it changes the leader)."""
    import subprocess

    # The lab's 1 s heartbeat (fast failure tests) would call a node Down 3 s into its restart;
    # production runs Docker's default 5 s (Down after 15 s without one).
    lab.shoal("manager1", "swarm", "update", "--dispatcher-heartbeat", "5s")
    try:
        lab.shoal("manager1", "service", "create", "--name", "roll", "-p", "8081:80", "--replicas", "3",
                  "--stop-signal", "KILL", image, "sh", "-c", HTTPD, timeout=120)
        wait_for(lambda: len(running(lab, "roll")) == 3, 60, what="3 tasks of roll running")
        addresses = " ".join(lab.address(h) for h in HOST_IPS)
        # The client stops once told to (the stop file) and it made at least 100 requests: on a fast
        # machine the five restarts take a few seconds, and a count that depends on how long they
        # took would fail there.
        stop = tmp_path / "stop"
        client = (f"n=0; while [ ! -e {stop} ] || [ $n -lt 100 ]; do for a in {addresses}; do "
                  "if timeout 2 busybox wget -qO- http://$a:8081/ >/dev/null 2>&1; then echo ok; "
                  "else echo FAIL $a $(date +%T); fi; n=$((n+1)); sleep 0.1; done; done")
        wait_for(lambda: "FAIL" not in fetch(lab, "worker2", f"http://{lab.address('manager1')}:8081/", 5), 30,
                 what="the published port answering")
        proc = subprocess.Popen(lab.exec_argv("worker2", ["sh", "-c", client]), env=lab.host_env("worker2"),
                                stdout=subprocess.PIPE, text=True)
        try:
            for host in HOST_IPS:
                lab.restart_shoald(host)
                other = "manager2" if host == "manager1" else "manager1"

                def settled(host=host, other=other):
                    nodes = {n["Hostname"]: n for n in lab.nodes(other)}
                    return nodes[host]["Status"] == "Ready" and len(running(lab, "roll")) == 3

                wait_for(settled, 120, interval=0.5, what=f"{host} Ready after its shoald restarted")
        finally:
            stop.touch()
            try:
                out, _ = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.terminate()
                out, _ = proc.communicate(timeout=30)
        answers = out.split("\n")
        failed = [line for line in answers if line.startswith("FAIL")]
        ok = sum(1 for line in answers if line == "ok")
        print(f"rolling restart of {len(HOST_IPS)} shoalds: {ok} requests answered, {len(failed)} failed")
        assert ok + len(failed) >= 100, f"the client made only {ok + len(failed)} requests"
        assert failed == [], f"{len(failed)} of {ok + len(failed)} requests failed: {failed[:10]}"
    finally:
        remove(lab, "roll")
        lab.shoal("manager1", "swarm", "update", "--dispatcher-heartbeat", "1s", check=False)
