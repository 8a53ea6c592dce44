"""``shoal run`` without click: what the command does once its spec is built (``execute``, for
both paths), and a parser for its common command lines that needs no click at all.

Importing click and building ``run``'s fifty options is about half of a short ``shoal run --rm
IMAGE true`` (docs/front-door.md). The entry point (``shoal.cli.entry``) therefore tries
``main`` first: a command line that is ``run`` with only the options in ``FLAGS``, ``VALUED``
and ``MULTIPLE``, each spelled ``--opt VALUE``, ``--opt=VALUE`` or ``-o VALUE``, then the image
and its command, is turned here into a create call that gives runtimed the same ContainerSpec the
click command builds (tests/unit/test_run_fast.py compares the two on many command lines), and
run with ``Runtimed``: RuntimeClient's requests through agent_runtime.blocking, without loading
the typed API and its dataclasses. Anything else — another option, ``--help``, bundled short
flags, docker's ``--flag=BOOL``, ``--``, a swarm network, a remote host — returns None and the
click command runs it, usage errors included.
"""

from __future__ import annotations

import json
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


def spec_json(p: dict) -> dict:
    """The create call's body for these parameters: the fields these options set; runtimed gives
    every other field its default (ContainerSpec.from_json), which is what the click command's
    spec holds for an option not given."""
    doc = {"Image": p["image"], "Cmd": list(p["command"]), "Env": list(p["env"]), "WorkingDir": p["workdir"],
           "User": p["user"], "Hostname": p["hostname"], "Name": p["name"],
           "Labels": dict(item.partition("=")[::2] for item in p["label"]), "Privileged": p["privileged"],
           "Init": p["init"], "StopSignal": p["stop_signal"], "NetworkMode": p["network"],
           "ReadonlyRootfs": p["read_only"], "AutoRemove": p["remove"] and p["detach"],
           "RestartPolicy": {"Name": "no"}}
    if p["entrypoint"] is not None:
        doc["Entrypoint"] = [p["entrypoint"]]
    return doc


class Spec:
    """A create call's body where execute wants a spec: ``image`` and ``to_json()``."""

    def __init__(self, doc: dict) -> None:
        self.doc, self.image = doc, doc["Image"]

    def to_json(self) -> dict:
        return self.doc


class Record:
    __slots__ = ("stream", "log")

    def __init__(self, stream: str, log: str) -> None:
        self.stream, self.log = stream, log


class Exit:
    __slots__ = ("status_code",)

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class Runtimed:
    """The calls of a run (create, start, logs, wait, remove) as RuntimeClient makes them, through
    agent_runtime.blocking (same requests, same errors) without loading the typed API; the
    unusual ones (inspect after a failed start, pull, stop on ^C) through RuntimeClient."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._typed = None

    def _open(self, method: str, path: str, query: str = "", body: dict | None = None):
        from agent_runtime import blocking
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        return blocking.open_call(self.socket_path, None, method, path + query, f"{method} {path}", data, headers)

    def _json(self, method: str, path: str, query: str = "", body: dict | None = None):
        conn, resp = self._open(method, path, query, body)
        try:
            payload = resp.read()
        finally:
            conn.close()
        return json.loads(payload) if payload else None

    def typed(self):
        if self._typed is None:
            from agent_runtime.api import RuntimeClient
            self._typed = RuntimeClient(self.socket_path)
        return self._typed

    def create(self, spec: Spec) -> str:
        return self._json("POST", "/containers/create", body=spec.to_json())["Id"]

    def start(self, cid: str) -> None:
        self._json("POST", f"/containers/{cid}/start")

    def logs(self, cid: str, follow: bool = False):
        conn, resp = self._open("GET", f"/containers/{cid}/logs",
                                f"?follow={int(follow)}&tail=all&stdout=1&stderr=1")
        try:
            while line := resp.readline():
                if line.strip():
                    d = json.loads(line)
                    yield Record(d["stream"], d["log"])
        finally:
            conn.close()

    def wait(self, cid: str) -> Exit:
        return Exit(self._json("POST", f"/containers/{cid}/wait")["StatusCode"])

    def remove(self, cid: str, force: bool = False) -> None:
        self._json("DELETE", f"/containers/{cid}", f"?force={int(force)}")

    def inspect(self, cid: str):
        return self.typed().inspect(cid)

    def stop(self, cid: str):
        return self.typed().stop(cid)

    def image_pull(self, ref: str):
        return self.typed().image_pull(ref)


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
        from agent_runtime.blocking import default_socket
        execute(Runtimed(default_socket()), Spec(spec_json(params)), params["remove"], params["detach"])
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


def create(client, spec) -> str:
    """create_pulling; the runtime refusing it exits 125, as docker run's create does."""
    from agent_runtime.errors import ShoalRuntimeError
    try:
        return create_pulling(client, spec)
    except ShoalRuntimeError as exc:
        fail(exc, 125)


def remove_container(client, ref: str) -> None:
    """Remove a container (exits on a runtime error). A swarm network attachment it carried is
    released by the node's shoald, which sees the container go (worker/attachments.py)."""
    from agent_runtime.errors import ShoalRuntimeError
    try:
        client.remove(ref, force=True)
    except ShoalRuntimeError as exc:
        fail(exc)


def execute(client, spec, remove: bool, detach: bool, started: str | None = None) -> None:
    """Create and start the container (``started``: the ID of one shoald already created and
    started), then print its ID (``-d``) or stream its output, wait for it, remove it (``--rm``) and
    exit with its status. Exit codes are docker's: 125 when the runtime refused, 126/127 when the
    command cannot run."""
    from agent_runtime.errors import ShoalRuntimeError
    cid = started
    if cid is None:
        cid = create(client, spec)
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
