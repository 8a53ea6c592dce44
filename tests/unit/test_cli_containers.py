"""The node-local container commands as a Docker user sees them: `ps` rows (STATUS with health,
quoted COMMAND, CREATED, PORTS), `run`'s --mount and health flags, and `inspect`'s lookup order
and errors (docker/cli's inspectAll)."""

from __future__ import annotations

import pytest

from agent_runtime.api import Healthcheck, Mount
from agent_runtime.spec import ContainerInfo, ContainerSpec, ContainerState, Health
from shoal.cli import main
from shoal.cli.containers import PS_COLUMNS, healthcheck, run_mount, summary
from shoal.cli.inspect import ORDER, Failed, Skip, find
from shoal.dockerjson import container_status

START = 1767323045          # 2026-01-02T03:04:05Z


def state(status="running", health=None, exit_code=0, finished=""):
    return ContainerState(status=status, running=status == "running", started_at="2026-01-02T03:04:05Z",
                          exit_code=exit_code, finished_at=finished,
                          health=Health(status=health) if health else None)


@pytest.mark.parametrize("st,text", [
    (state(), "Up 5 minutes"),
    (state(health="starting"), "Up 5 minutes (health: starting)"),
    (state(health="healthy"), "Up 5 minutes (healthy)"),
    (state(health="unhealthy"), "Up 5 minutes (unhealthy)"),
    (state("exited", exit_code=137, finished="2026-01-02T03:06:05.5Z"), "Exited (137) 3 minutes ago"),
    (ContainerState(status="created"), "Created"),
])
def test_status_is_the_daemons_text(st, text):
    assert container_status(st, START + 300) == text


def test_ps_row_has_dockers_values():
    info = ContainerInfo(id="c" * 64, name="web", created="2026-01-02T03:00:05.123456789Z", image="busybox",
                         image_id="sha256:x", state=state(health="healthy"),
                         config=ContainerSpec(image="busybox", command=["sleep", "3600000000000000000"],
                                              labels={"b": "2", "a": "1"},
                                              mounts=[Mount(type="volume", source="data", target="/d")]))
    row = summary(info, START + 300)
    assert PS_COLUMNS == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert row["ID"] == "cccccccccccc" and row["Command"] == '"sleep 3600000000000…"'
    assert (row["RunningFor"], row["Status"], row["Ports"]) == ("9 minutes ago", "Up 5 minutes (healthy)", "")
    assert row["CreatedAt"] == "2026-01-02 03:00:05 +0000 UTC"
    assert (row["Labels"], row["Mounts"], row["LocalVolumes"]) == ("a=1,b=2", "data", "1")
    full = summary(info, START + 300, trunc=False)
    assert full["ID"] == "c" * 64 and full["Command"] == '"sleep 3600000000000000000"'


def test_run_mount_takes_service_syntax_for_a_container():
    assert run_mount("type=bind,source=/srv,target=/data,readonly") == Mount(
        type="bind", source="/srv", target="/data", read_only=True)
    assert run_mount("source=cache,target=/c") == Mount(type="volume", source="cache", target="/c")
    assert run_mount("type=tmpfs,target=/t,tmpfs-size=1m").tmpfs_size_bytes == 1 << 20
    with pytest.raises(Exception, match='for "--mount" flag'):
        run_mount("type=bind,source=/srv")


IMAGE = Healthcheck(test=["CMD", "true"], interval_s=5.0, timeout_s=2.0, retries=7, start_period_s=1.0)


def flags(**given):
    return {"cmd": None, "interval": None, "timeout": None, "retries": None, "start_period": None} | given


def test_health_flags_merge_with_the_images_field_by_field():
    """moby's daemon merge: a zero/unset field takes the image's, else Docker's default."""
    assert healthcheck(flags(), False, lambda: IMAGE) is None                      # the image's, as it is
    assert healthcheck(flags(interval="1s"), False, lambda: IMAGE) == Healthcheck(
        test=["CMD", "true"], interval_s=1.0, timeout_s=2.0, retries=7, start_period_s=1.0)
    assert healthcheck(flags(cmd="wget -q localhost", retries=2), False, lambda: None) == Healthcheck(
        test=["CMD-SHELL", "wget -q localhost"], interval_s=30.0, timeout_s=30.0, retries=2, start_period_s=0.0)
    assert healthcheck(flags(timeout="3s"), False, lambda: None) is None            # nothing to run
    assert healthcheck(flags(), True, lambda: IMAGE) == Healthcheck(test=["NONE"])


@pytest.mark.parametrize("given,disabled,message", [
    (flags(cmd="true"), True, "--no-healthcheck conflicts with --health-\\* options"),
    (flags(interval="-1s"), False, "--health-interval cannot be negative"),
    (flags(interval="5"), False, 'invalid argument "5" for "--health-interval" flag: time: missing unit'),
    (flags(retries=-1), False, "--health-retries cannot be negative"),
])
def test_bad_health_flags_are_refused(given, disabled, message):
    import click
    with pytest.raises(click.UsageError, match=message):
        healthcheck(given, disabled, lambda: IMAGE)


def test_inspect_looks_kinds_up_in_dockers_order():
    asked = []

    def lookup(kind):
        def get(ref):
            asked.append(kind)
            if (kind, ref) in {("volume", "data"), ("service", "data"), ("task", "t1")}:
                return {"Kind": kind}
            raise Skip(f"No such {kind}: {ref}")
        return get
    lookups = {kind: lookup(kind) for kind in ORDER}
    assert find("data", list(ORDER), lookups, "") == {"Kind": "volume"}        # volume before service
    assert asked == ["container", "image", "network", "volume"]
    assert find("data", ["service"], lookups, "service") == {"Kind": "service"}
    with pytest.raises(Failed, match="^error: no such object: nosuch$"):
        find("nosuch", list(ORDER), lookups, "")
    with pytest.raises(Failed, match="^Error response from daemon: No such volume: t1$"):
        find("t1", ["volume"], lookups, "volume")


def test_inspect_stops_at_a_failure_that_is_not_not_found():
    def broken(ref):
        raise Failed("Error response from daemon: ambiguous")
    with pytest.raises(Failed, match="ambiguous"):
        find("x", ["container", "image"], {"container": broken, "image": lambda ref: {}}, "")


def test_exec_logs_and_inspect_are_top_level_commands(capsys):
    for name in ("exec", "logs", "inspect"):
        assert name in main.cli.commands
    assert main.run(["inspect", "-h"]) == 0 and "--type" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main.run(["inspect", "--type", "bogus", "x"])
    assert exited.value.code == 1
    assert capsys.readouterr().err.startswith('unknown type: "bogus": must be one of "config", "container"')
    assert main.run(["logs", "--bogus", "x"]) == 125
    assert capsys.readouterr().err == "unknown flag: --bogus\nSee 'shoal logs --help'.\n"


def _c(cid, name, created, status="running", exit_code=0, labels=None, image="busybox", health=None):
    st = ContainerState(status=status, running=status == "running", started_at="" if status == "created" else "x",
                        exit_code=exit_code, health=Health(status=health) if health else None)
    return ContainerInfo(id=cid * 64, name=name, created=f"2026-01-02T03:04:0{created}Z", image=image,
                         image_id="sha256:" + cid * 64, state=st,
                         config=ContainerSpec(image=image, labels=labels or {},
                                              mounts=[Mount(type="volume", source=f"{name}-data", target="/d")]))


LISTED = [_c("a", "web", 1), _c("b", "done", 2, "exited", 3), _c("c", "task.1.x", 3, labels={
    "com.docker.swarm.task.id": "x", "tier": "front"}, health="healthy"), _c("d", "fresh", 4, "created")]


@pytest.mark.parametrize("flags,show_all,last,names", [
    ([], False, 0, ["task.1.x", "web"]),                               # running only, newest first
    ([], True, 0, ["fresh", "task.1.x", "done", "web"]),
    (["status=exited"], False, 0, ["done"]),                           # status implies -a
    (["exited=3"], True, 0, ["done"]),
    (["name=^t"], False, 0, ["task.1.x"]), (["id=bbbb"], True, 0, ["done"]),
    (["label=tier=front"], False, 0, ["task.1.x"]), (["label=tier=back"], False, 0, []),
    (["is-task=true"], True, 0, ["task.1.x"]), (["is-task=false"], False, 0, ["web"]),
    (["health=healthy"], False, 0, ["task.1.x"]), (["health=none"], False, 0, ["web"]),
    (["volume=web-data"], False, 0, ["web"]), (["volume=/d"], False, 0, ["task.1.x", "web"]),
    (["before=task.1.x"], True, 0, ["done", "web"]), (["since=done"], True, 0, ["fresh", "task.1.x"]),
    (["ancestor=busybox"], True, 0, ["fresh", "task.1.x", "done", "web"]), (["ancestor=alpine"], True, 0, []),
    (["publish=80"], True, 0, []),
    ([], False, 2, ["fresh", "task.1.x"]),                             # -n 2: any state
])
def test_ps_filters_are_mobys(flags, show_all, last, names):
    from shoal.cli import ps_filters
    assert [c.name for c in ps_filters.apply(LISTED, ps_filters.parse(flags), show_all, last=last)] == names


@pytest.mark.parametrize("flag,message", [
    ("bogus=1", "invalid filter 'bogus'"),
    ("status=sleeping", "invalid filter 'status=sleeping': invalid value for state (sleeping): must be one of "
                        "created, running, paused, restarting, removing, exited, dead"),
    ("health=fine", "invalid filter 'health=fine': invalid value for health (fine): must be one of starting, "
                    "healthy, unhealthy, none"),
    ("exited=x", "invalid filter 'exited=x'"),
])
def test_bad_ps_filters_are_the_daemons_errors(flag, message):
    from shoal.cli import ps_filters
    from shoal.cli.output import DaemonError
    with pytest.raises(DaemonError) as err:
        ps_filters.parse([flag])
    assert err.value.message.startswith(message)


def test_restart_policy_is_dockerds():
    from agent_runtime.restart import FIRST_DELAY, MAX_DELAY, next_delay, should_restart, starts_with_daemon
    from common.backoff import Backoff
    from agent_runtime.spec import RestartPolicy
    always, on_failure = RestartPolicy("always"), RestartPolicy("on-failure", 2)
    assert should_restart(always, 0, False, 50) and not should_restart(always, 1, True, 0)   # a user stopped it
    assert should_restart(on_failure, 3, False, 1) and not should_restart(on_failure, 3, False, 2)
    assert not should_restart(on_failure, 0, False, 0) and should_restart(RestartPolicy("on-failure"), 1, False, 99)
    assert not should_restart(RestartPolicy("no"), 1, False, 0) and not should_restart(RestartPolicy(), 1, False, 0)
    assert starts_with_daemon(always, True, 0, 9) and starts_with_daemon(RestartPolicy("unless-stopped"), False, 0, 0)
    assert not starts_with_daemon(RestartPolicy("unless-stopped"), True, 1, 0)
    assert starts_with_daemon(on_failure, True, 137, 1) and not starts_with_daemon(on_failure, False, 137, 2)
    assert not starts_with_daemon(on_failure, False, 0, 0)
    backoff = Backoff(FIRST_DELAY, MAX_DELAY)
    delays = [next_delay(backoff, 1.0) for _ in range(13)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8] and delays[-1] == MAX_DELAY
    assert next_delay(backoff, 10.0) == FIRST_DELAY                 # ran 10 s: back to the start
    assert next_delay(backoff, 1.0) == 0.2


@pytest.mark.parametrize("text,message", [
    (":3", "invalid restart policy format: no policy provided before colon"),
    ("on-failure:x", "invalid restart policy format: maximum retry count must be an integer"),
])
def test_restart_flag_format_errors_are_docker_clis(text, message):
    import click

    from shoal.cli.containers import restart_policy
    with pytest.raises(click.UsageError, match=message):
        restart_policy(text)


@pytest.mark.parametrize("name,retries,auto_remove,message", [
    ("sometimes", 0, False, "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', "
                            "'on-failure', or 'unless-stopped'"),
    ("always", 3, False, "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
    ("on-failure", -1, False, "invalid restart policy: maximum retry count cannot be negative"),
    ("always", 0, True, "can't create 'AutoRemove' container with restart policy"),
])
def test_bad_restart_policies_are_the_daemons_errors(name, retries, auto_remove, message):
    from agent_runtime.errors import InvalidArgument
    from agent_runtime.spec import RestartPolicy, validate_spec
    spec = ContainerSpec(image="busybox", restart_policy=RestartPolicy(name, retries), auto_remove=auto_remove)
    with pytest.raises(InvalidArgument) as err:
        validate_spec(spec)
    assert str(err.value) == message


def test_run_refuses_restart_with_rm():
    assert main.run(["run", "--rm", "--restart", "always", "busybox"]) == 125


def test_volume_ls_filters_are_mobys():
    from agent_runtime.spec import VolumeInfo
    from shoal.cli import ps_filters
    from shoal.cli.output import DaemonError
    volumes = [VolumeInfo(name="data", mountpoint="/m/data", created_at="", labels={"keep": "1"}, in_use_by=["web"]),
               VolumeInfo(name="cache", mountpoint="/m/cache", created_at="")]

    def names(*flags):
        wanted = ps_filters.parse_volume_filters(flags)
        return [v.name for v in volumes if ps_filters.volume_matches(v, wanted)]
    assert names("dangling=true") == ["cache"] and names("dangling=0") == ["data"]
    assert names("name=^c") == ["cache"] and names("label=keep=1") == ["data"]
    assert names("driver=local") == ["data", "cache"] and names("driver=nfs") == []
    for flag, message in (("bogus=1", "invalid filter 'bogus'"), ("dangling=maybe", "invalid filter 'dangling=[maybe]'")):
        with pytest.raises(DaemonError) as err:
            ps_filters.parse_volume_filters([flag])
        assert err.value.message == message


def test_a_pending_restart_shows_as_dockers_restarting():
    from shoal.cli import ps_filters
    st = state("exited", exit_code=3, finished="2026-01-02T03:08:05Z")
    st.restarting = True
    assert container_status(st, START + 300) == "Restarting (3) About a minute ago"
    flaky = _c("e", "flaky", 5, "exited", 3)
    flaky.state.restarting = True
    assert [c.name for c in ps_filters.apply(LISTED + [flaky], {}, False)] == ["flaky", "task.1.x", "web"]
    assert [c.name for c in ps_filters.apply(LISTED + [flaky], ps_filters.parse(["status=restarting"]), False)] == \
        ["flaky"]


async def test_restarter_backs_off_restarts_and_yields_to_a_user():
    """The scheduling of agent_runtime/restart.py over a stand-in container manager (the real one
    needs root: tests/cluster/test_cli_commands.py drives it end to end)."""
    import asyncio
    from types import SimpleNamespace

    from agent_runtime.container_record import Runtime
    from agent_runtime.restart import Restarter
    from agent_runtime.spec import RestartPolicy
    started = []

    def container(cid):
        c = SimpleNamespace(id=cid, name=cid, spec=ContainerSpec(image="x", restart_policy=RestartPolicy("always")),
                            state=ContainerState(status="exited", exit_code=1, started_at="2026-01-02T03:04:05Z",
                                                 finished_at="2026-01-02T03:04:06Z"),
                            runtime=Runtime(), save_state=lambda: None, on_overlay=lambda: False)
        return c

    async def start(cid):
        started.append(cid)
        containers[cid].state.status = "running"
    containers = {"a": container("a"), "b": container("b")}
    daemon = SimpleNamespace(manager=SimpleNamespace(containers=containers, start=start), network=None)
    restarter = Restarter(daemon)
    restarter._on_exit(containers["a"])
    restarter._on_exit(containers["b"])
    task = restarter._pending["a"]
    assert containers["a"].state.restarting and containers["b"].state.restarting
    restarter.forget("b")                                   # a user's stop during the back-off
    assert not containers["b"].state.restarting
    await asyncio.wait_for(task, 5)
    assert started == ["a"] and containers["a"].runtime.restart_count == 1
    assert not containers["a"].state.restarting and not restarter._pending
