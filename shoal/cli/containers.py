"""Node-local, Docker-shaped commands that talk to this node's shoal-runtimed:
``shoal run``, ``shoal ps``, ``shoal container ls|inspect|logs|exec|stop|kill|rm|stats``,
``shoal volume create|ls|inspect|rm``.

The runtimed socket comes from SHOAL_RUNTIME_HOST, else ``runtimed.sock`` beside the shoald socket
(``-H``/SHOAL_HOST), else /run/shoal/runtimed.sock. Exit codes follow docker: ``run`` passes the
container's code through, 125 when the runtime refused, 126/127 when the command cannot run.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import click

from common import hostopts, syntax
from shoal.cli.formatting import FORMAT_HELP, INSPECT_FORMAT_HELP, print_objects, print_rows
from shoal.cli.output import flag_value, print_json_lines, print_table
from shoal.cli.security import parse_security_opts



def register(cli: click.Group) -> None:
    cli.add_command(run)
    cli.add_command(container)
    cli.add_command(container_ls, "ps")
    cli.add_command(container_exec, "exec")
    cli.add_command(container_attach, "attach")
    cli.add_command(container_logs, "logs")
    cli.add_command(container_port, "port")
    for command in (container_start, container_stop, container_restart, container_kill, container_rm):
        cli.add_command(command, command.name)    # docker start|stop|restart|kill|rm
    cli.add_command(volume)


def parse_bytes(text: str, flag: str = "--memory") -> int:
    """Docker's sizes: ``512``, ``64m``, ``1g``, ``10kb`` (binary units)."""
    return flag_value(syntax.parse_bytes, flag, text)


def _client(ctx: click.Context):
    from agent_runtime.api import RuntimeClient, default_socket
    from shoal.cli.client import host_url
    host = getattr(ctx.find_root().obj, "host", None)
    if host_url(host).startswith("tcp://") and not os.environ.get("SHOAL_RUNTIME_HOST"):
        raise click.UsageError(f"{ctx.command_path} runs on this machine's shoal-runtimed: it is not served over "
                               f"{host_url(host)} (the remote API serves the cluster commands; use docker -H for "
                               "a node's containers)")
    if not os.environ.get("SHOAL_RUNTIME_HOST") and host:
        path = host[len("unix://"):] if host.startswith("unix://") else host
        return RuntimeClient(os.path.join(os.path.dirname(path), "runtimed.sock"))
    return RuntimeClient(default_socket())


def _fail(exc: Exception, code: int = 1) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(code)


def _calling(fn, *args, code: int = 1, **kwargs):
    from agent_runtime.api import ShoalRuntimeError
    try:
        return fn(*args, **kwargs)
    except ShoalRuntimeError as exc:
        _fail(exc, code)


def parse_volume(text: str):
    """``-v SRC:DST[:ro]``: an absolute SRC is a bind mount, anything else a named volume."""
    from agent_runtime.api import Mount
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise click.BadParameter(f"invalid volume spec {text!r}: use SRC:DST[:ro]")
    src, dst = parts[0], parts[1]
    read_only = len(parts) == 3 and parts[2] == "ro"
    return Mount(type="bind" if src.startswith("/") else "volume", source=src, target=dst, read_only=read_only)


def parse_tmpfs(text: str):
    """``--tmpfs /path[:size=64m,mode=1777]``."""
    from agent_runtime.api import Mount
    target, _, opts = text.partition(":")
    mount = Mount(type="tmpfs", target=target)
    for opt in filter(None, opts.split(",")):
        key, _, value = opt.partition("=")
        if key == "size":
            mount.tmpfs_size_bytes = parse_bytes(value, "--tmpfs")
        elif key == "mode":
            mount.tmpfs_mode = int(value, 8)
        elif key == "ro":
            mount.read_only = True
        else:
            raise click.BadParameter(f"unknown tmpfs option {key!r} in {text!r}")
    return mount


def _stream(client, ref: str, follow: bool = True, tail=None, since=None, timestamps: bool = False) -> None:
    for rec in client.logs(ref, follow=follow, tail=tail, since=since):
        out = sys.stdout if rec.stream == "stdout" else sys.stderr
        out.write((rec.time + " " if timestamps else "") + rec.log)
        out.flush()


@click.command(context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]})
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits")
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the container ID")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("--detach-keys", default="", help="Override the key sequence for detaching a container")
@click.option("--name", default="")
@click.option("-e", "--env", multiple=True, help="NAME=VALUE")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables")
@click.option("--mount", "mounts", multiple=True,
              help="Attach a filesystem mount: type=bind|volume|tmpfs,source=,target=,readonly,tmpfs-size=")
@click.option("--health-cmd", default=None, help="Command to run to check health")
@click.option("--health-interval", default=None, help="Time between running the check (ms|s|m|h) (default 0s)")
@click.option("--health-timeout", default=None,
              help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)")
@click.option("--health-retries", type=int, default=None, help="Consecutive failures needed to report unhealthy")
@click.option("--health-start-period", default=None,
              help="Start period for the container to initialize before starting health-retries countdown "
                   "(ms|s|m|h) (default 0s)")
@click.option("--no-healthcheck", is_flag=True, help="Disable any container-specified HEALTHCHECK")
@click.option("--restart", default="no", show_default=True,
              help="Restart policy to apply when a container exits: no, always, unless-stopped, on-failure[:N]")
@click.option("-m", "--memory", default=None, help="Memory limit (e.g. 64m)")
@click.option("--memory-reservation", default=None)
@click.option("--cpus", default=None, help="Number of CPUs (e.g. 0.5)")
@click.option("--cpu-shares", type=int, default=0)
@click.option("--pids-limit", type=int, default=0)
@click.option("-v", "--volume", "volumes", multiple=True, help="SRC:DST[:ro]")
@click.option("--tmpfs", multiple=True, help="/path[:size=64m]")
@click.option("--network", default="none",
              help="none, host, a network namespace (name or path), or an attachable swarm network")
@click.option("--network-alias", "network_aliases", multiple=True,
              help="Add network-scoped alias for the container (swarm networks)")
@click.option("--init", is_flag=True, help="Run an init as pid 1 that reaps zombies")
@click.option("--cap-add", multiple=True)
@click.option("--cap-drop", multiple=True)
@click.option("--privileged", is_flag=True)
@click.option("--security-opt", multiple=True,
              help="Security options: seccomp=unconfined|builtin|PROFILE.json, no-new-privileges")
@click.option("-u", "--user", default="")
@click.option("-w", "--workdir", default="")
@click.option("-h", "--hostname", default="", help="Container host name")
@click.option("--entrypoint", default=None)
@click.option("--stop-signal", default="")
@click.option("--stop-timeout", type=float, default=10.0)
@click.option("-l", "--label", multiple=True, help="KEY=VALUE")
@click.option("--dns", multiple=True, help="Set custom DNS servers")
@click.option("--dns-search", multiple=True, help="Set custom DNS search domains")
@click.option("--dns-option", multiple=True, help="Set DNS options")
@click.option("--add-host", multiple=True, help="Add a custom host-to-IP mapping (host:ip)")
@click.option("--read-only", is_flag=True, help="Mount the container's root filesystem as read only")
@click.option("--sysctl", multiple=True, help="Sysctl options (namespaced only: net.*, kernel.shm*, ...)")
@click.option("--ulimit", multiple=True, help="Ulimit options (name=soft[:hard])")
@click.option("--oom-score-adj", type=int, default=0, help="Tune host's OOM preferences (-1000 to 1000)")
@click.option("-p", "--publish", multiple=True, help="Publish a container's port(s) to the host")
@click.option("-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random ports")
@click.option("--expose", multiple=True, help="Expose a port or a range of ports")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx, remove, detach, interactive, tty, detach_keys, name, env, env_file, mounts, health_cmd, health_interval, health_timeout,
        health_retries, health_start_period, no_healthcheck, restart, memory, memory_reservation, cpus, cpu_shares, pids_limit, volumes,
        tmpfs, network, network_aliases, init, cap_add, cap_drop, privileged, security_opt, user, workdir,
        hostname, entrypoint, stop_signal, stop_timeout, label, dns, dns_search, dns_option, add_host,
        read_only, sysctl, ulimit, oom_score_adj, publish, publish_all, expose, image, command) -> None:
    """Run a command in a new container on this node.

    With ``--network NET`` naming a swarm network created with ``--attachable``, one call to
    shoald allocates the container's address (the cluster's IPAM), creates and starts it; shoald
    releases the address when the container is removed (``--rm``, ``-d --rm``, ``container rm``)."""
    from agent_runtime.api import ContainerSpec, Resources
    security = parse_security_opts(security_opt)
    env = read_env_files(env_file) + list(env)
    policy = restart_policy(restart)
    if remove and policy.name not in ("", "no"):
        raise click.UsageError("conflicting options: cannot specify both --restart and --rm")
    extra_mounts = [run_mount(text) for text in mounts]
    health = {"cmd": health_cmd, "interval": health_interval, "timeout": health_timeout,
              "retries": health_retries, "start_period": health_start_period}
    client = _client(ctx)
    health_config = healthcheck(health, no_healthcheck, lambda: _image_healthcheck(client, image))
    swarm_network = network if is_swarm_network(network) else None
    if swarm_network:
        import secrets      # not at the top: it loads OpenSSL (hmac), a few ms of every run
        hostname = hostname or secrets.token_hex(6)
        network = "none"
    elif network_aliases:
        raise click.UsageError("--network-alias needs --network naming an attachable swarm network")
    spec = ContainerSpec(
        image=image, command=list(command), entrypoint=[entrypoint] if entrypoint is not None else None,
        env=list(env), workdir=workdir, user=user, hostname=hostname, name=name,
        labels=dict(item.partition("=")[::2] for item in label),
        mounts=[parse_volume(v) for v in volumes] + [parse_tmpfs(t) for t in tmpfs] + extra_mounts,
        resources=Resources(nano_cpus=flag_value(syntax.parse_cpus, "--cpus", cpus) if cpus else 0,
                            memory_bytes=parse_bytes(memory) if memory else 0,
                            memory_reservation_bytes=parse_bytes(memory_reservation, "--memory-reservation") if memory_reservation else 0,
                            pids_limit=pids_limit, cpu_shares=cpu_shares),
        cap_add=list(cap_add), cap_drop=list(cap_drop), privileged=privileged,
        no_new_privileges=bool(security.no_new_privileges), seccomp=security.seccomp or "",
        init=init, stop_signal=stop_signal, stop_grace_period_s=stop_timeout, network=network,
        **runtime_options(dns, dns_search, dns_option, add_host, read_only, sysctl, ulimit, oom_score_adj))
    spec.healthcheck = health_config
    spec.ports = port_bindings(publish, publish_all, expose, lambda: _image_config(client, image))
    if spec.ports and network == "host" and not swarm_network:
        click.echo("WARNING: Published ports are discarded when using host network mode", err=True)
        spec.ports = []
    attached = (interactive or tty) and not detach      # run -it, -i, -t: runtimed's attach (shoal/cli/interactive.py)
    keys = _interactive_setup(spec, interactive, tty, detach, detach_keys)
    # -d --rm, and --rm of an attached run (the client may detach): runtimed removes it on exit
    spec.auto_remove = remove and (detach or attached)
    spec.restart_policy = policy
    from shoal.cli.run_fast import create, execute
    started = run_attached(ctx, client, swarm_network, name or hostname, network_aliases, spec) if swarm_network else None
    if attached:
        cid = started or create(client, spec)
        from shoal.cli import interactive as session
        sys.exit(session.run_attached(client, cid, start=started is None, stdin=interactive, tty=tty,
                                      detach_keys=keys, remove=remove))
    execute(client, spec, remove, detach, started)


def _interactive_setup(spec, interactive: bool, tty: bool, detach: bool, detach_keys: str) -> bytes:
    """-i/-t/--detach-keys into the spec, as docker's: OpenStdin with -i, StdinOnce when attached,
    the terminal's size for the pty; the detach keys parsed (a bad one: exit 125)."""
    from agent_runtime.detachkeys import parse_detach_keys
    from shoal.cli.interactive import check_tty, window_size
    try:
        keys = parse_detach_keys(detach_keys)
    except ValueError as exc:
        _fail(exc, 125)
    if not detach and (problem := check_tty(interactive, tty)):
        _fail(problem, 1)
    spec.tty, spec.open_stdin, spec.stdin_once = tty, interactive, interactive and not detach
    if tty:
        spec.console_size = list(window_size() or ())
    return keys


def restart_policy(text: str):
    """docker/cli's ParseRestartPolicy: NAME[:MAX-RETRIES] (the daemon checks the name)."""
    from agent_runtime.spec import RestartPolicy
    name, sep, retries = text.partition(":")
    if sep and not name:
        raise click.UsageError("invalid restart policy format: no policy provided before colon")
    policy = RestartPolicy(name=name)
    if retries:
        if not re.fullmatch(r"[+-]?\d+", retries):
            raise click.UsageError("invalid restart policy format: maximum retry count must be an integer")
        policy.maximum_retry_count = int(retries)
    return policy


def read_env_files(paths) -> list[str]:
    """--env-file: KEY=VALUE lines as docker reads them (a bare KEY from this environment)."""
    from shoal.cli.flag_errors import FlagError
    from shoal.cli.flag_errors import read_env_files as read
    try:
        return read(paths)
    except FlagError as err:
        raise click.UsageError(str(err)) from None


_MOUNT_TYPES = {0: "bind", 1: "volume", 2: "tmpfs"}


def run_mount(text: str):
    """``--mount`` as ``service create`` reads it, for a container on this node; an option the
    runtime cannot apply to a container is refused naming it."""
    from agent_runtime.api import Mount
    from shoal.cli.service_flags import FlagError, parse_mount
    try:
        parsed = parse_mount(text)
    except FlagError as err:
        raise click.UsageError(str(err)) from None
    known = {"type", "source", "target", "read_only", "tmpfs_size_bytes", "tmpfs_mode", "volume_options"}
    extra = [f.name for f, _ in parsed.ListFields() if f.name not in known]
    if extra:
        raise click.UsageError(f'invalid argument "{text}" for "--mount" flag: '
                               f'{", ".join(extra)} is not supported by shoal run')
    mount = Mount(type=_MOUNT_TYPES[parsed.type], source=parsed.source, target=parsed.target,
                  read_only=parsed.read_only, tmpfs_size_bytes=parsed.tmpfs_size_bytes)
    if getattr(parsed, "tmpfs_mode", 0):
        mount.tmpfs_mode = parsed.tmpfs_mode
    mount.volume_options = dict(parsed.volume_options)
    return mount


def _image_config(client, image: str) -> dict:
    """The image's inspect document (pulled first when this node lacks the image)."""
    from agent_runtime.errors import NotFound
    try:
        return client.image_inspect(image)
    except NotFound:
        click.echo(f"Unable to find image '{image}' locally", err=True)
        _calling(client.image_pull, image, code=125)
        return _calling(client.image_inspect, image, code=125)


def _image_healthcheck(client, image: str):
    """The image's HEALTHCHECK (pulled first when this node lacks the image), or None."""
    from agent_runtime.imageconfig import image_healthcheck
    return image_healthcheck(_image_config(client, image).get("Config") or {})


def port_bindings(publish, publish_all: bool, expose, image_config) -> list:
    """``-p``, ``-P`` (the image's EXPOSE and ``--expose`` ports, each on a free host port) and
    ``--expose`` as runtimed's PortBindings; a bad value is Docker's message (exit 125)."""
    from agent_runtime.spec import PortBinding
    from shoal.cli import ports
    try:
        published = [b for text in publish for b in ports.parse_publish(text)]
        exposed = [e for text in expose for e in ports.parse_expose(text)]
    except ports.PortError as err:
        raise click.UsageError(str(err)) from None
    if publish_all:
        published += ports.publish_all(ports.image_exposed(image_config()) + exposed, published)
    return [PortBinding(container_port=c, protocol=proto, host_ip=ip, host_port=h) for ip, h, c, proto in published]


def healthcheck(flags: dict, disabled: bool, image_check):
    """Docker's health flags of ``run``: ``--health-cmd`` (CMD-SHELL) and the others override the
    image's HEALTHCHECK field by field, as moby's daemon merges them (0 or unset: the image's
    value, else Docker's default of 30 s, 30 s, 3 retries); ``--no-healthcheck`` turns any off.
    None: the image's, unchanged."""
    from agent_runtime.api import Healthcheck
    given = {k: v for k, v in flags.items() if v is not None}
    if disabled:
        if given:
            raise click.UsageError("--no-healthcheck conflicts with --health-* options")
        return Healthcheck(test=["NONE"])
    if not given:
        return None
    seconds = {}
    for key in ("interval", "timeout", "start_period"):
        if key in given:
            flag = f"--health-{key.replace('_', '-')}"
            value = flag_value(syntax.parse_duration, flag, given[key])
            if value < 0:
                raise click.UsageError(f"{flag} cannot be negative")
            seconds[key] = value
    if given.get("retries", 0) < 0:
        raise click.UsageError("--health-retries cannot be negative")
    base = image_check()
    test = ["CMD-SHELL", given["cmd"]] if given.get("cmd") else (list(base.test) if base else [])
    if not test:
        return None                         # docker: nothing to run, the flags change nothing
    return Healthcheck(
        test=test,
        interval_s=seconds.get("interval") or (base.interval_s if base else 30.0),
        timeout_s=seconds.get("timeout") or (base.timeout_s if base else 30.0),
        retries=given.get("retries") or (base.retries if base else 3),
        start_period_s=seconds.get("start_period") or (base.start_period_s if base else 0.0))


def runtime_options(dns, dns_search, dns_option, add_host, read_only, sysctl, ulimit, oom_score_adj) -> dict:
    """The ContainerSpec fields of docker run's --dns*, --add-host, --read-only, --sysctl, --ulimit
    and --oom-score-adj, each checked with docker's words."""
    from agent_runtime.api import Ulimit
    sysctls = dict(flag_value(hostopts.parse_sysctl, "--sysctl", t) for t in sysctl)
    limits = {}
    for text in ulimit:
        name, soft, hard = flag_value(hostopts.parse_ulimit, "--ulimit", text)
        limits[name] = Ulimit(name=name, soft=soft, hard=hard)
    flag_value(lambda v: hostopts.check_oom_score_adj(int(v)), "--oom-score-adj", str(oom_score_adj))
    return {"dns": [flag_value(hostopts.check_ip, "--dns", t) for t in dns],
            "dns_search": [flag_value(hostopts.check_dns_search, "--dns-search", t) for t in dns_search],
            "dns_options": list(dns_option),
            "extra_hosts": [_checked_host(t) for t in add_host],
            "readonly_rootfs": read_only, "sysctls": sysctls,
            "ulimits": [limits[n] for n in sorted(limits)], "oom_score_adj": oom_score_adj}


def _checked_host(text: str) -> str:
    flag_value(hostopts.parse_extra_host, "--add-host", text)
    return text


def is_swarm_network(network: str) -> bool:
    """Whether ``--network`` names a swarm network rather than none, host or a network namespace
    (a path, or a name under /run/netns)."""
    return (network not in ("none", "host", "") and not network.startswith("/")
            and not os.path.exists(os.path.join("/run/netns", network)))


def run_attached(ctx, client, network: str, container: str, aliases, spec) -> str:
    """One call to shoald: attach ``container`` to the swarm ``network``, create and start it
    (shoal/netattach.py); the image is pulled first if this node lacks it. Exits with docker's
    message (code 125) when the daemon refuses."""
    import json

    import grpc

    from agent_runtime.errors import NotFound
    from proto import control_pb2
    try:
        client.image_inspect(spec.image)
    except NotFound:
        click.echo(f"Unable to find image '{spec.image}' locally", err=True)
        _calling(client.image_pull, spec.image, code=125)
    daemon = ctx.find_root().obj
    request = control_pb2.AttachNetworkRequest(network_id=network, container_id=container, aliases=list(aliases),
                                               container=json.dumps(spec.to_json()).encode())
    try:
        return daemon.stub.AttachNetwork(request, timeout=max(daemon.timeout or 0, 120)).created_container_id
    except grpc.RpcError as err:
        click.echo(f"Error response from daemon: {err.details() or err.code().name}", err=True)
        sys.exit(125)


def _remove_container(client, ref: str, force: bool = True) -> None:
    """Remove a container (exits on a runtime error). A swarm network attachment it carried is
    released by the node's shoald, which sees the container go (worker/attachments.py)."""
    _calling(client.remove, ref, force=force)


@click.group()
def container() -> None:
    """Manage containers on this node."""


def _ellipsis(text: str, width: int) -> str:
    """docker's formatter.Ellipsis: at most ``width`` characters, the last one "…" when cut."""
    return text if len(text) <= width else text[:width - 1] + "…"


def _go_time(seconds: int) -> str:
    """Go's time.Time.String() of a unix time, in UTC: "2026-12-03 12:45:00 +0000 UTC"."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(seconds))


def summary(c, now: float, trunc: bool = True) -> dict:
    """The fields of a `docker ps` row (``--format json`` prints them), with docker's values:
    the command quoted (cut at 20 characters), STATUS as the daemon words it ("Up 5 minutes
    (healthy)"), CREATED as "5 minutes ago", PORTS as "0.0.0.0:8080->80/tcp"."""
    from shoal.cli.ports import ports_text
    from shoal.cli.service_format import human_duration
    from shoal.dockerjson import container_status, unix_seconds
    created = unix_seconds(c.created)
    command = " ".join((c.config.entrypoint or []) + c.config.command)
    volumes = [m for m in c.config.mounts if m.type == "volume"]
    return {"ID": c.id[:12] if trunc else c.id, "Image": c.image,
            "Command": json.dumps(_ellipsis(command, 20) if trunc else command, ensure_ascii=False),
            "CreatedAt": _go_time(created), "RunningFor": f"{human_duration(max(now - created, 0))} ago",
            "Status": container_status(c.state, now), "State": c.state.status,
            "Ports": ports_text(c.config.ports), "Names": c.name,
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.config.labels.items())),
            "Mounts": ",".join(_ellipsis(m.source or m.target, 15) if trunc else (m.source or m.target)
                               for m in c.config.mounts),
            "LocalVolumes": str(len(volumes)),
            "Networks": ",".join([n.network_id for n in c.config.networks] or [c.config.network]),
            "Size": "0B"}


PS_COLUMNS = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
PS_KEYS = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]


@container.command("ls")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states)")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container (includes all states)")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.pass_context
def container_ls(ctx, all_, quiet, no_trunc, filters, last, latest, fmt) -> None:
    """List containers (newest first)."""
    from shoal.cli import ps_filters
    wanted = ps_filters.parse(filters)
    client = _client(ctx)
    images = {}
    if wanted.get("ancestor"):
        images = {name: img["Id"] for img in _calling(client.images) for tag in img.get("RepoTags") or ()
                  for name in (tag, tag.removesuffix(":latest"))}       # busybox is busybox:latest
    found = ps_filters.apply(_calling(client.list, all=True), wanted, all_, images, last=1 if latest else last)
    now = time.time()
    rows = [summary(c, now, trunc=not no_trunc) for c in found]
    if quiet:
        for r in rows:
            click.echo(r["ID"])
    else:
        print_rows(fmt, rows, "*formatter.ContainerContext", lambda: print_table(
            PS_COLUMNS, [[r[k] for k in PS_KEYS] for r in rows]),
            headers={"ID": "CONTAINER ID", "CreatedAt": "CREATED AT", "RunningFor": "CREATED"})


@container.command("inspect")
@click.option("-f", "--format", "fmt", default="", help=INSPECT_FORMAT_HELP)
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def container_inspect(ctx, fmt, refs) -> None:
    """Show low-level information on containers as a JSON array."""
    from agent_runtime.spec import to_json
    client = _client(ctx)
    print_objects(fmt, [to_json(_calling(client.inspect, ref)) for ref in refs])


@container.command("logs")
@click.option("-f", "--follow", is_flag=True)
@click.option("-n", "--tail", default="all", help='Number of lines to show from the end of the logs (default "all")')
@click.option("--since", default=None, help="Unix time, RFC 3339 time, or a duration such as 10m")
@click.option("-t", "--timestamps", is_flag=True)
@click.argument("ref")
@click.pass_context
def container_logs(ctx, follow, tail, since, timestamps, ref) -> None:
    """Fetch the logs of a container."""
    if since:
        since = str(flag_value(lambda t: syntax.parse_since(t, time.time()), "--since", since))
    from agent_runtime.api import ShoalRuntimeError
    try:
        _stream(_client(ctx), ref, follow=follow, tail=None if tail == "all" else int(tail), since=since,
                timestamps=timestamps)
    except ShoalRuntimeError as exc:
        _fail(exc)


@container.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("--detach-keys", default="", help="Override the key sequence for detaching a container")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables")
@click.option("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])")
@click.option("-w", "--workdir", default="", help="Working directory inside the container")
@click.argument("ref")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def container_exec(ctx, detach, interactive, tty, detach_keys, env, env_file, user, workdir, ref, command) -> None:
    """Run a command in a running container (without -i/-t: output is printed when it finishes)."""
    from agent_runtime.api import InvalidArgument, ShoalRuntimeError
    env = read_env_files(env_file) + list(env)
    command = list(command)
    if command[:1] == ["--"]:  # `exec CONTAINER -- CMD…` as well as `exec CONTAINER CMD…`
        command = command[1:]
    if interactive or tty or detach:
        _exec_session(ctx, detach, interactive, tty, detach_keys, env, user, workdir, ref, command)
    try:
        result = _client(ctx).exec(ref, command, env=list(env), user=user, workdir=workdir)
    except InvalidArgument as exc:
        _fail(exc, 127 if "not found" in str(exc) else 126)
    except ShoalRuntimeError as exc:
        _fail(exc, 126)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.exit_code)


@container.command("attach")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@click.option("--detach-keys", default="", help="Override the key sequence for detaching a container")
@click.argument("ref", metavar="CONTAINER")
@click.pass_context
def container_attach(ctx, no_stdin, detach_keys, ref) -> None:
    """Attach local standard input, output, and error streams to a running container."""
    from agent_runtime.api import ShoalRuntimeError
    from agent_runtime.detachkeys import parse_detach_keys
    from shoal.cli import interactive as session
    try:
        keys = parse_detach_keys(detach_keys)
    except ValueError as exc:
        _fail(exc, 1)
    client = _client(ctx)
    try:
        info = client.inspect(ref)
        if info.state.status != "running":
            _fail("You cannot attach to a stopped container, start it first", 1)
        stdin = not no_stdin and info.config.open_stdin
        if problem := session.check_tty(stdin, info.config.tty):
            _fail(problem, 1)
        sys.exit(session.attach_running(client, info.id, stdin, info.config.tty, keys))
    except ShoalRuntimeError as exc:
        _fail(exc, 1)


def _exec_session(ctx, detach, interactive, tty, detach_keys, env, user, workdir, ref, command) -> None:
    """exec -i/-t (attached, through runtimed's exec session) or -d (started, not waited for)."""
    from agent_runtime.api import ShoalRuntimeError
    from agent_runtime.detachkeys import parse_detach_keys
    from shoal.cli import interactive as session
    try:
        keys = parse_detach_keys(detach_keys)
    except ValueError as exc:
        _fail(exc, 125)
    if not detach and (problem := session.check_tty(interactive, tty)):
        _fail(problem, 1)
    client = _client(ctx)
    try:
        if detach:
            exec_id = client.exec_create(ref, command, env=env, user=user, workdir=workdir, tty=tty)
            client.exec_start(exec_id).sock.close()   # runtimed runs it to its end without a client
            sys.exit(0)
        sys.exit(session.exec_attached(client, ref, command, env, user, workdir, interactive, tty, keys))
    except ShoalRuntimeError as exc:
        _fail(exc, 126)


@container.command("port")
@click.argument("ref", metavar="CONTAINER")
@click.argument("private", metavar="[PRIVATE_PORT[/PROTO]]", required=False, default="")
@click.pass_context
def container_port(ctx, ref, private) -> None:
    """List port mappings or a specific mapping for the container."""
    from shoal.cli import ports
    c = _calling(_client(ctx).inspect, ref)
    try:
        lines = ports.port_lines(c.config.ports, private)
    except ports.PortError as err:
        _fail(f"{str(err).removeprefix('Error: ')} {ref}" if "No public port" in str(err)
              else str(err).removeprefix("Error: "))
    for line in lines:
        click.echo(line)


@container.command("stop")
@click.option("-t", "--time", "timeout", type=float, default=None, help="Seconds to wait before killing")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def container_stop(ctx, timeout, refs) -> None:
    """Stop running containers (stop signal, grace period, then SIGKILL)."""
    client = _client(ctx)
    for ref in refs:
        _calling(client.stop, ref, timeout)
        click.echo(ref)


@container.command("start")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def container_start(ctx, refs) -> None:
    """Start stopped containers (in the background; each name is printed once it runs)."""
    client = _client(ctx)
    for ref in refs:
        _calling(client.start, ref)
        click.echo(ref)


@container.command("restart")
@click.option("-t", "--time", "timeout", type=float, default=None, help="Seconds to wait before killing")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def container_restart(ctx, timeout, refs) -> None:
    """Restart containers: stop (stop signal, grace period, SIGKILL), then start."""
    client = _client(ctx)
    for ref in refs:
        _calling(client.stop, ref, timeout)
        _calling(client.start, ref)
        click.echo(ref)


@container.command("kill")
@click.option("-s", "--signal", "sig", default="SIGKILL")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def container_kill(ctx, sig, refs) -> None:
    """Send a signal to containers."""
    client = _client(ctx)
    for ref in refs:
        _calling(client.kill, ref, sig)
        click.echo(ref)


@container.command("rm")
@click.option("-f", "--force", is_flag=True, help="Kill and remove a running container")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def container_rm(ctx, force, refs) -> None:
    """Remove containers."""
    client = _client(ctx)
    for ref in refs:
        _remove_container(client, ref, force=force)
        click.echo(ref)


def _stats_row(s, name: str, prev=None, dt: float = 0.0) -> dict:
    """The fields of a `stats` line, named as docker's --format names them."""
    cpu = "--"
    if prev is not None and dt > 0:
        cpu = f"{(s.cpu_usage_ns - prev.cpu_usage_ns) / (dt * 1e9) * 100:.2f}%"
    limit = f"{s.memory_limit_bytes / 2**20:.1f}MiB" if s.memory_limit_bytes else "unlimited"
    return {"Container": s.id[:12], "ID": s.id[:12], "Name": name, "CPUPerc": cpu,
            "MemUsage": f"{s.memory_usage_bytes / 2**20:.2f}MiB / {limit}", "PIDs": str(s.pids_current)}


@container.command("stats")
@click.option("--no-stream", is_flag=True, help="Print one sample and exit")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.argument("refs", nargs=-1)
@click.pass_context
def container_stats(ctx, no_stream, fmt, refs) -> None:
    """Show CPU, memory and pids use of running containers."""
    from agent_runtime.spec import to_json
    client = _client(ctx)
    names = {c.id: c.name for c in _calling(client.list)}
    ids = [client.inspect(r).id for r in refs] if refs else list(names)
    prev, t_prev = {}, 0.0
    while True:
        now = time.monotonic()
        samples = [_calling(client.stats, i) for i in ids]
        if fmt == "json":
            print_json_lines([to_json(s) for s in samples])
        elif not no_stream or prev:
            rows = [_stats_row(s, names.get(s.id, ""), prev.get(s.id), now - t_prev) for s in samples]
            print_rows(fmt, rows, "*formatter.statsContext", lambda: print_table(
                ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"],
                [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["PIDs"]] for r in rows]),
                headers={"Container": "CONTAINER", "ID": "CONTAINER ID", "CPUPerc": "CPU %",
                         "MemUsage": "MEM USAGE / LIMIT", "PIDs": "PIDS"})
        if no_stream and (prev or fmt == "json"):
            return
        prev, t_prev = {s.id: s for s in samples}, now
        time.sleep(0.5 if no_stream else 1.0)


@click.group()
def volume() -> None:
    """Manage named volumes on this node."""


def _volume_row(v) -> dict:
    return {"Driver": v.driver, "Name": v.name, "Mountpoint": v.mountpoint, "CreatedAt": v.created_at,
            "Labels": ",".join(f"{k}={val}" for k, val in v.labels.items()), "Scope": "local"}


@volume.command("create")
@click.option("-d", "--driver", default="local", show_default=True, help="Specify volume driver name")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options (local: type, device, o)")
@click.option("-l", "--label", multiple=True, help="Set metadata for a volume")
@click.argument("name")
@click.pass_context
def volume_create(ctx, driver, opt, label, name) -> None:
    """Create a named volume.

    The local driver's options mount a device at the volume's directory when a container first
    uses it, as Docker's: ``-o type=tmpfs -o device=tmpfs -o o=size=64m``, ``-o type=none -o o=bind
    -o device=/srv/data``, ``-o type=nfs -o o=addr=10.0.0.1,rw -o device=:/export``."""
    if driver != "local":
        _fail(f"volume driver {driver!r} is not available on this node (it has local)")
    options = {}
    for item in opt:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise click.UsageError(f'invalid argument "{item}" for "-o, --opt" flag: invalid key value pair format')
        options[key] = value
    v = _calling(_client(ctx).volume_create, name, dict(item.partition("=")[::2] for item in label), options)
    click.echo(v.name)


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names")
@click.option("-f", "--filter", "filters", multiple=True,
              help="Provide filter values (e.g. 'dangling=true', 'name=data', 'driver=local', 'label=k')")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.pass_context
def volume_ls(ctx, quiet, filters, fmt) -> None:
    """List volumes."""
    from shoal.cli import ps_filters
    wanted = ps_filters.parse_volume_filters(filters)
    rows = [_volume_row(v) for v in _calling(_client(ctx).volumes) if ps_filters.volume_matches(v, wanted)]
    if quiet:
        for r in rows:
            click.echo(r["Name"])
    else:
        print_rows(fmt, rows, "*formatter.volumeContext",
                   lambda: print_table(["DRIVER", "VOLUME NAME"], [[r["Driver"], r["Name"]] for r in rows]),
                   headers={"Name": "VOLUME NAME"})


@volume.command("inspect")
@click.option("-f", "--format", "fmt", default="", help=INSPECT_FORMAT_HELP)
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def volume_inspect(ctx, fmt, names) -> None:
    """Show volumes as a JSON array."""
    from agent_runtime.spec import to_json
    client = _client(ctx)
    print_objects(fmt, [to_json(_calling(client.volume_inspect, n)) for n in names])


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def volume_rm(ctx, names) -> None:
    """Remove volumes no container uses."""
    client = _client(ctx)
    for n in names:
        _calling(client.volume_remove, n)
        click.echo(n)
