"""``shoal run`` without click: what the command does once its spec is built (``execute``, for
both paths), and a parser for its common command lines that needs no click at all.

Importing click and building ``run``'s fifty options is about half of a short ``shoal run --rm
IMAGE true`` (docs/front-door.md). The entry point (``shoal.cli.entry``) therefore tries
``main`` first: a command line that is ``run`` with only the options in ``FLAGS``, ``VALUED``
and ``MULTIPLE``, each spelled ``--opt VALUE``, ``--opt=VALUE`` or ``-o VALUE``, then the image
and its command, is planned here into the same ContainerSpec the click command builds
(tests/unit/test_run_fast.py compares the two on many command lines). Anything else — another
option, ``--help``, bundled short flags, docker's ``--flag=BOOL``, ``--``, a swarm network, a
remote host — returns None and the click command runs it, usage errors included.
"""

from __future__ import annotations

import os
import sys

# option spellings -> the run command's parameter names
FLAGS = {"--rm": "remove", "-d": "detach", "--detach": "detach", "--init": "init", "--privileged": "privileged",
         "--read-only": "read_only"}
VALUED = {"--name": "name", "-u": "user", "--user": "user", "-w": "workdir", "--workdir": "workdir",
          "-h": "hostname", "--hostname": "hostname", "--entrypoint": "entrypoint", "--stop-signal": "stop_signal",
          "--network": "network"}
MULTIPLE = {"-e": "env", "--env": "env", "-l": "label", "--label": "label"}
NETWORKS = ("none", "host")     # others may name a swarm network (one call to shoald: the click command's)


def parse(args: list[str]) -> dict | None:
    """The parameters of ``run ARGS`` (after the word ``run``), or None when this parser does not
    take the command line."""
    params: dict = {"remove": False, "detach": False, "init": False, "privileged": False, "read_only": False,
                    "name": "", "user": "", "workdir": "", "hostname": "", "entrypoint": None, "stop_signal": "",
                    "network": "none", "env": [], "label": []}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            break
        name, sep, value = arg.partition("=")
        if name in FLAGS and not sep:
            params[FLAGS[name]] = True
        elif name in VALUED or name in MULTIPLE:
            if sep and not name.startswith("--"):
                return None                     # -e=X: click reads the value "=X"; leave it to click
            if not sep:
                i += 1
                if i == len(args) or args[i].startswith("-"):
                    return None
                value = args[i]
            if name in VALUED:
                params[VALUED[name]] = value
            else:
                params[MULTIPLE[name]].append(value)
        else:
            return None
        i += 1
    if i == len(args) or params["network"] not in NETWORKS:
        return None
    params["image"], params["command"] = args[i], args[i + 1:]
    return params


def build_spec(p: dict):
    """The ContainerSpec ``shoal.cli.containers.run`` builds for these parameters (every other
    option at its default)."""
    from agent_runtime.api import ContainerSpec, Resources
    from agent_runtime.spec import RestartPolicy
    spec = ContainerSpec(
        image=p["image"], command=list(p["command"]),
        entrypoint=[p["entrypoint"]] if p["entrypoint"] is not None else None,
        env=list(p["env"]), workdir=p["workdir"], user=p["user"], hostname=p["hostname"], name=p["name"],
        labels=dict(item.partition("=")[::2] for item in p["label"]), mounts=[],
        resources=Resources(nano_cpus=0, memory_bytes=0, memory_reservation_bytes=0, pids_limit=0, cpu_shares=0),
        cap_add=[], cap_drop=[], privileged=p["privileged"], no_new_privileges=False, seccomp="",
        init=p["init"], stop_signal=p["stop_signal"], stop_grace_period_s=10.0, network=p["network"],
        dns=[], dns_search=[], dns_options=[], extra_hosts=[], readonly_rootfs=p["read_only"], sysctls={},
        ulimits=[], oom_score_adj=0)
    spec.healthcheck = None
    spec.auto_remove = p["remove"] and p["detach"]
    spec.restart_policy = RestartPolicy(name="no")
    return spec


def _remote() -> bool:
    """Whether the CLI's host is a tcp:// one (the click command refuses `run` there, unless
    SHOAL_RUNTIME_HOST names runtimed's socket)."""
    if os.environ.get("SHOAL_RUNTIME_HOST"):
        return False
    host = os.environ.get("SHOAL_HOST") or os.environ.get("DOCKER_HOST", "")
    return host.startswith("tcp://")


def main(args: list[str]) -> None:
    """Run ``shoal ARGS`` here when it is a ``run`` this module takes (never returns then);
    return to let the click command run it."""
    if args[:1] != ["run"] or _remote():
        return
    params = parse(args[1:])
    if params is None:
        return
    try:
        from agent_runtime.api import RuntimeClient, default_socket
        execute(RuntimeClient(default_socket()), build_spec(params), params["remove"], params["detach"])
    except KeyboardInterrupt:               # as click reports an interrupt outside the command's own handling
        print(file=sys.stderr)
        print("Aborted!", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(0)


# ---- running it (both paths) -----------------------------------------------------------------

def fail(exc: Exception, code: int = 1):
    print(f"Error: {exc}", file=sys.stderr, flush=True)
    sys.exit(code)


def stream_logs(client, ref: str) -> None:
    for rec in client.logs(ref, follow=True):
        out = sys.stdout if rec.stream == "stdout" else sys.stderr
        out.write(rec.log)
        out.flush()


def create_pulling(client, spec) -> str:
    """Create the container; an image this node lacks is pulled first, as ``docker run`` does
    (its "Unable to find image 'REF' locally" on stderr)."""
    from agent_runtime.errors import NotFound
    try:
        return client.create(spec)
    except NotFound as exc:
        if not str(exc).startswith("No such image"):
            raise
    print(f"Unable to find image '{spec.image}' locally", file=sys.stderr, flush=True)
    client.image_pull(spec.image)
    return client.create(spec)


def remove_container(client, ref: str) -> None:
    """Remove a container (exits on a runtime error). A swarm network attachment it carried is
    released by the node's shoald, which sees the container go (worker/attachments.py)."""
    from agent_runtime.api import ShoalRuntimeError
    try:
        client.remove(ref, force=True)
    except ShoalRuntimeError as exc:
        fail(exc)


def execute(client, spec, remove: bool, detach: bool, started: str | None = None) -> None:
    """Create and start the container (``started``: the ID of one shoald already created and
    started), then print its ID (``-d``) or stream its output, wait for it, remove it (``--rm``) and
    exit with its status. Exit codes are docker's: 125 when the runtime refused, 126/127 when the
    command cannot run."""
    from agent_runtime.api import ShoalRuntimeError
    cid = started
    if cid is None:
        try:
            cid = create_pulling(client, spec)
        except ShoalRuntimeError as exc:
            fail(exc, 125)
        try:
            client.start(cid)
        except ShoalRuntimeError as exc:
            code = client.inspect(cid).state.exit_code or 125
            if remove:
                remove_container(client, cid)
            fail(exc, code if code in (126, 127) else 125)
    if detach:
        print(cid, flush=True)
        return
    try:
        stream_logs(client, cid)
        result = client.wait(cid)
    except KeyboardInterrupt:
        client.stop(cid)
        result = client.wait(cid)
    if remove:
        remove_container(client, cid)
    sys.exit(result.status_code)
