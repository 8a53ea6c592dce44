"""Docker's commands and results on a 1-manager lab, checked as a user sees them: DNS answers
from inside a container for a service's network aliases.
"""

from __future__ import annotations

import time

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=0)


def resolve(lab, container: str, name: str) -> list[str] | None:
    """The addresses ``nslookup NAME`` prints inside ``container`` (None when it fails)."""
    result = lab.shoal("manager1", "container", "exec", container, "nslookup", name, "127.0.0.11", check=False)
    if result.returncode != 0:
        return None
    answers = result.stdout.split("Name:", 1)[-1] if "Name:" in result.stdout else ""
    return sorted({line.split()[-1] for line in answers.splitlines() if line.startswith("Address")})


def test_network_aliases_of_dnsrr_and_vip_services_resolve_with_tasks_names(lab, image):
    lab.shoal("manager1", "network", "create", "--attachable", "aliasnet")
    lab.shoal("manager1", "service", "create", "-d", "--name", "rr", "--endpoint-mode", "dnsrr", "--replicas", "2",
              "--network", "name=aliasnet,alias=db", image, "sleep", "3600")
    lab.shoal("manager1", "service", "create", "-d", "--name", "vv", "--network", "name=aliasnet,alias=vdb",
              image, "sleep", "3600")
    lab.shoal("manager1", "run", "-d", "--name", "probe", "--network", "aliasnet", image, "sleep", "3600")
    try:
        tasks = wait_for(lambda: (lambda ips: ips if ips and len(ips) == 2 else None)(resolve(lab, "probe", "tasks.rr")),
                         90, what="both tasks of rr in DNS")
        assert wait_for(lambda: resolve(lab, "probe", "tasks.db"), 30, what="tasks.db") == tasks   # was SERVFAIL
        assert resolve(lab, "probe", "db") == tasks                       # dnsrr: the alias gives the tasks
        vip = lab.shoal("manager1", "service", "inspect", "-f",
                        "{{(index .Endpoint.VirtualIPs 0).Addr}}", "vv").stdout.strip().split("/")[0]
        task = wait_for(lambda: resolve(lab, "probe", "tasks.vv"), 60, what="tasks.vv")
        assert resolve(lab, "probe", "vdb") == [vip]                      # vip mode: the alias gives the VIP
        assert resolve(lab, "probe", "tasks.vdb") == task
    finally:
        lab.shoal("manager1", "container", "rm", "-f", "probe", check=False)
        lab.shoal("manager1", "service", "rm", "rr", "vv", check=False)


def test_run_flags_ps_exec_logs_and_inspect_as_docker(lab, image, tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\nGREETING=hello world\n")
    lab.shoal("manager1", "run", "-d", "--name", "hc", "--env-file", str(env_file), "-h", "box",
              "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m", "--health-cmd", "test -d /scratch",
              "--health-interval", "1s", image, "sh", "-c", "echo started; sleep 3600")
    try:
        def healthy():
            rows = [r for r in lab.shoal("manager1", "ps").stdout.splitlines() if r.endswith(" hc")]
            return rows and "(healthy)" in rows[0] and rows[0]
        row = wait_for(healthy, 60, what="hc healthy in shoal ps")
        header = lab.shoal("manager1", "ps").stdout.splitlines()[0].split()
        assert header == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        assert '"sh -c echo started;…"' in row and "Up " in row      # docker joins argv with spaces
        out = lab.shoal("manager1", "exec", "hc", "sh", "-c", "echo $GREETING; hostname; grep /scratch /proc/mounts")
        lines = out.stdout.splitlines()
        env_file.write_text("GREETING=bonjour\n")
        assert lab.shoal("manager1", "exec", "--env-file", str(env_file), "hc", "sh", "-c",
                         "echo $GREETING").stdout == "bonjour\n"
        assert lines[:2] == ["hello world", "box"] and "tmpfs" in lines[2] and "size=1024k" in lines[2]
        assert lab.shoal("manager1", "logs", "-n", "1", "hc").stdout == "started\n"
        short = row.split()[0]
        assert lab.shoal("manager1", "ps", "-q", "-f", "health=healthy", "-f", "name=^hc$").stdout == f"{short}\n"
        assert lab.shoal("manager1", "ps", "-q", "-f", "health=unhealthy").stdout == ""
        bad = lab.shoal("manager1", "ps", "-f", "status=sleeping", check=False)
        assert bad.returncode == 1 and bad.stderr.startswith("Error response from daemon: invalid filter 'status=sleeping'")
        assert lab.shoal("manager1", "inspect", "-f", "{{.Name}} {{.State.Health.Status}}", "hc").stdout == \
            "hc healthy\n"
        net = lab.shoal("manager1", "inspect", "--format", "{{.Name}} {{.Scope}}", "aliasnet", check=False)
        assert net.stdout == "aliasnet swarm\n" or "no such object" in net.stderr   # the other test's network
        missing = lab.shoal("manager1", "inspect", "hc", "nosuch", check=False)
        assert missing.returncode == 1 and missing.stderr == "error: no such object: nosuch\n"
        assert '"Name": "hc"' in missing.stdout
        typed = lab.shoal("manager1", "inspect", "--type", "service", "hc", check=False)
        assert typed.returncode == 1 and typed.stdout == "[]\n" and typed.stderr.startswith("Error response from daemon:")
    finally:
        lab.shoal("manager1", "container", "rm", "-f", "hc", check=False)


def test_prune_and_df_as_docker(lab, image):
    lab.shoal("manager1", "run", "--name", "writer", image, "sh", "-c", "head -c 1000000 /dev/zero > /junk")
    writer = lab.shoal("manager1", "inspect", "-f", "{{.Id}}", "writer").stdout.strip()
    bad = lab.shoal("manager1", "container", "prune", "-f", "--filter", "bogus=1", check=False)
    assert (bad.returncode, bad.stderr) == (1, "Error response from daemon: invalid filter 'bogus'\n")
    # until= a moment after the writer was made (Unix seconds), not a duration such as 1s: on a fast
    # machine the writer is younger than 1 s here and would rightly be kept.
    until = str(int(time.time()) + 60)
    pruned = lab.shoal("manager1", "container", "prune", "-f", "--filter", f"until={until}").stdout
    assert pruned.startswith("Deleted Containers:\n") and f"\n{writer}\n" in pruned
    assert pruned.endswith("\n\nTotal reclaimed space: 1MB\n")          # the 1,000,000 bytes it wrote
    assert lab.shoal("manager1", "inspect", "--type", "container", "writer", check=False).returncode == 1

    lab.shoal("manager1", "volume", "create", "keep")
    lab.shoal("manager1", "volume", "create", "--label", "tmp=1", "scratch")
    assert lab.shoal("manager1", "volume", "ls", "-q", "-f", "dangling=true", "-f", "label=tmp").stdout == "scratch\n"
    # named volumes are not anonymous: plain prune removes none, as Docker's
    assert lab.shoal("manager1", "volume", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    assert lab.shoal("manager1", "volume", "prune", "-a", "-f", "--filter", "label=tmp").stdout == \
        "Deleted Volumes:\nscratch\n\nTotal reclaimed space: 0B\n"
    assert lab.shoal("manager1", "volume", "ls", "-q").stdout.split() == ["keep"]

    lab.shoal("manager1", "network", "create", "spare")
    lab.shoal("manager1", "network", "create", "held")
    lab.shoal("manager1", "service", "create", "-d", "--name", "holder", "--network", "held", image, "sleep", "3600")
    try:
        out = lab.shoal("manager1", "network", "prune", "-f").stdout
        assert out.startswith("Deleted Networks:\n") and "spare\n" in out and "held" not in out
        assert "Total reclaimed space" not in out
        names = lab.shoal("manager1", "network", "ls", "--format", "{{.Name}}").stdout.split()
        assert "spare" not in names and "held" in names and "ingress" in names
    finally:
        lab.shoal("manager1", "service", "rm", "holder", check=False)

    df = lab.shoal("manager1", "system", "df").stdout.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split()[0] for line in df[1:]] == ["Images", "Containers", "Local", "Build"]
    rows = lab.shoal("manager1", "system", "df", "--format", "{{.Type}}={{.TotalCount}}/{{.Active}}").stdout
    assert "Local Volumes=1/0\n" in rows and "Build Cache=0/0\n" in rows      # keep: there, unused


def test_run_restart_policies(lab, image):
    def state(name):
        out = lab.shoal("manager1", "inspect", "-f", "{{.RestartCount}} {{.State.Status}}", name).stdout.split()
        return int(out[0]), out[1]
    lab.shoal("manager1", "run", "-d", "--name", "flaky", "--restart", "on-failure:2", image, "sh", "-c", "exit 3")
    lab.shoal("manager1", "run", "-d", "--name", "loop", "--restart", "always", image, "true")
    lab.shoal("manager1", "run", "-d", "--name", "svc", "--restart", "always", image, "sleep", "3600")
    try:
        wait_for(lambda: state("flaky") == (2, "exited"), 60, what="flaky restarted twice and exited")
        # the positive signal that restarts went on meanwhile: loop (always) restarted again and again
        wait_for(lambda: state("loop")[0] >= 4, 60, what="loop restarted 4 times")
        assert state("flaky") == (2, "exited")                    # on-failure:2 stopped there
        assert lab.shoal("manager1", "stop", "svc").stdout == "svc\n"
        count = state("loop")[0]
        wait_for(lambda: state("loop")[0] >= count + 2, 60, what="loop restarted twice more")
        assert state("svc") == (0, "exited")                      # stopped by a user: left stopped
        lab.shoal("manager1", "stop", "loop")
        assert lab.shoal("manager1", "ps", "-q", "-f", "name=^loop$").stdout == ""
        lab.shoal("manager1", "start", "svc")                    # started by a user: the count begins afresh
        assert state("svc") == (0, "running")
        bad = lab.shoal("manager1", "run", "--restart", "sometimes", image, "true", check=False)
        assert bad.returncode == 125 and "invalid restart policy: unknown policy 'sometimes'" in bad.stderr
    finally:
        lab.shoal("manager1", "rm", "-f", "flaky", "loop", "svc", check=False)


def test_restart_policies_when_runtimed_starts(lab, image):
    """Last in the module: it stops and starts the lab's only host. As dockerd's restore, an
    exited `always` container starts again with runtimed even after a user's stop; an
    `unless-stopped` one a user stopped does not."""
    lab.shoal("manager1", "run", "-d", "--name", "back", "--restart", "always", image, "sleep", "3600")
    lab.shoal("manager1", "run", "-d", "--name", "held", "--restart", "unless-stopped", image, "sleep", "3600")
    try:
        lab.shoal("manager1", "stop", "-t", "0", "back", "held")
        lab.stop("manager1")
        lab.start("manager1")

        def status(name):
            return lab.shoal("manager1", "inspect", "-f", "{{.State.Status}}", name).stdout.strip()
        wait_for(lambda: status("back") == "running", 60, what="the always container started with runtimed")
        assert status("held") == "exited"        # runtimed's start pass is over: back was in it
    finally:
        lab.shoal("manager1", "rm", "-f", "back", "held", check=False)
