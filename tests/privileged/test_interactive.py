"""`shoal run -it`, `run -i`, `exec -it` against a real shoal-runtimed, driven through a real
pseudo-terminal on the client's side (tests/support/terminal.py): the prompt, a command's output,
window sizes (at the start and on SIGWINCH), the detach keys, the exit code, and the client's
terminal restored afterwards."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from agent_runtime.api import ContainerSpec
from tests.support.runtime import IMAGE, VENV_BIN, cli_env, sh, wait_until
from tests.support.terminal import Terminal

SHOAL = str(VENV_BIN / "shoal")


@pytest.fixture
def env(runtimed):
    return {"SHOAL_RUNTIME_HOST": f"unix://{runtimed.socket}", "PS1": ""}


@pytest.fixture
def terminals():
    opened: list[Terminal] = []
    yield opened
    for t in opened:
        t.close()


def _open(terminals, argv, env, **kw) -> Terminal:
    t = Terminal(argv, env, **kw)
    terminals.append(t)
    return t


def _at_prompt_size_and_output(t: Terminal, size: str, command: str, output: str) -> None:
    """At the shell's prompt, `stty size` shows the size the client's terminal had at the start
    (ConsoleSize), and ``command``'s ``output`` comes back through the container's pty."""
    t.expect(r"/ # ")
    t.send(f"stty size; {command}\r")
    t.expect(size)
    t.expect(output)


def _exit_passes_on(t: Terminal, code: int) -> None:
    """``exit code`` in the shell: the client exits with it and restores its terminal."""
    t.send(f"exit {code}\r")
    assert t.wait() == code
    assert "TERMINAL-RESTORED" in t.text


def test_run_it_shell_prompt_output_size_resize_exit_code(client, env, terminals):
    t = _open(terminals, [SHOAL, "run", "-it", "--rm", "--name", "it-shell", IMAGE, "sh"], env, rows=33, columns=101)
    _at_prompt_size_and_output(t, "33 101", "echo out-$((6*7))", "out-42")   # busybox sh's root prompt
    mark = len(t.output)
    t.resize(40, 120)                                 # SIGWINCH to the client: POST /containers/{id}/resize
    t.send("stty size\r")
    deadline = time.monotonic() + 30
    while "40 120" not in t.output[mark:].decode(errors="replace"):   # the resize may land after the first stty
        assert time.monotonic() < deadline, t.text
        t.expect(r"\d+ \d+", start=mark)
        mark = len(t.output)
        t.send("stty size\r")
        t.expect(r"/ # ", start=mark)
    _exit_passes_on(t, 3)
    assert wait_until(lambda: not [c for c in client.list(all=True) if c.name == "it-shell"], 30)   # --rm


def test_run_it_detach_keys_leave_it_running(client, env, terminals):
    t = _open(terminals, [SHOAL, "run", "-it", "--name", "it-detach", "--detach-keys", "ctrl-x,x", IMAGE, "sh"], env)
    t.expect(r"/ # ")
    t.send("echo before-detach\r")
    t.expect("before-detach")
    t.send(b"\x18x")
    assert t.wait() == 0
    assert "TERMINAL-RESTORED" in t.text
    info = client.inspect("it-detach")
    assert info.state.status == "running"
    # attach again with the default keys, through exec -it into the same container
    t2 = _open(terminals, [SHOAL, "exec", "-it", "it-detach", "sh"], env, rows=20, columns=70)
    _at_prompt_size_and_output(t2, "20 70", "[ -t 0 ] && [ -t 1 ] && echo in-exec-$((2+3))", "in-exec-5")
    _exit_passes_on(t2, 5)
    client.remove("it-detach", force=True)


def test_exec_it_detach_with_default_keys(client, env, terminals):
    cid = client.create(ContainerSpec(image=IMAGE, command=["sleep", "300"], stop_signal="KILL"))
    client.start(cid)
    t = _open(terminals, [SHOAL, "exec", "-it", cid, "sh"], env)
    t.expect(r"/ # ")
    t.send(b"\x10\x11")
    assert t.wait() == 0
    assert "TERMINAL-RESTORED" in t.text


def test_run_i_pipes_stdin_and_ends_at_its_end(client, runtimed):
    env = cli_env(runtimed.socket)
    out = subprocess.run([SHOAL, "run", "-i", "--rm", IMAGE, "cat"], input=b"hi\n", capture_output=True,
                         env=env, timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (0, b"hi\n", b"")
    out = subprocess.run([SHOAL, "run", "-i", "--rm", IMAGE, "sh", "-c", "read x; echo got-$x >&2; exit 4"],
                         input=b"line\n", capture_output=True, env=env, timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (4, b"", b"got-line\n")


def test_exec_i_pipes_stdin(client, runtimed):
    cid = client.create(ContainerSpec(image=IMAGE, command=["sleep", "300"], stop_signal="KILL"))
    client.start(cid)
    env = cli_env(runtimed.socket)
    out = subprocess.run([SHOAL, "exec", "-i", cid, "sh", "-c", "tr a-z A-Z; exit 7"], input=b"hello\n",
                         capture_output=True, env=env, timeout=120)
    assert (out.returncode, out.stdout) == (7, b"HELLO\n")


def test_run_it_without_a_terminal_is_refused(client, runtimed):
    env = cli_env(runtimed.socket)
    out = subprocess.run([SHOAL, "run", "-it", IMAGE, "sh"], input=b"", capture_output=True, env=env, timeout=60)
    assert out.returncode == 1 and b"the input device is not a TTY" in out.stderr


def test_attach_before_start_sees_all_output_and_resize_needs_a_tty(client):
    from shoal.cli.interactive import Demux  # noqa: F401  (the CLI's demultiplexer reads these frames)
    cid = client.create(ContainerSpec(image=IMAGE, command=sh("echo one; echo two >&2")))
    upgraded = client.attach(cid)
    client.start(cid)
    data = upgraded.head
    while chunk := upgraded.sock.recv(65536):
        data += chunk
    upgraded.sock.close()
    assert data == b"\x01\x00\x00\x00\x00\x00\x00\x04one\n" + b"\x02\x00\x00\x00\x00\x00\x00\x04two\n" or \
        sorted([data[:12], data[12:]]) == sorted([b"\x01\x00\x00\x00\x00\x00\x00\x04one\n",
                                                  b"\x02\x00\x00\x00\x00\x00\x00\x04two\n"])
    from agent_runtime.errors import Conflict
    with pytest.raises(Conflict, match="no TTY"):
        client.resize(cid, 10, 10)


def _read_until(sock, head: bytes, needle: bytes, seconds: float = 60.0) -> bytes:
    import select
    data, deadline = head, time.monotonic() + seconds
    while needle not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not received within {seconds:g} s: {data!r}"
        if select.select([sock], [], [], left)[0]:
            chunk = sock.recv(65536)
            assert chunk, f"the stream ended before {needle!r}: {data!r}"
            data += chunk
    return data


def test_input_and_resize_survive_a_runtimed_restart(client, runtimed):
    """The pty master of a running container is taken back from its waiter (pidfd_getfd) by a
    restarted runtimed: attaching again still reaches the shell, and resizing still works."""
    cid = client.create(ContainerSpec(image=IMAGE, tty=True, open_stdin=True, command=["sh"], stop_signal="KILL"))
    upgraded = client.attach(cid, stdin=True)
    client.start(cid)
    upgraded.sock.sendall(b"echo first-$((1+1))\r")
    _read_until(upgraded.sock, upgraded.head, b"first-2")
    upgraded.sock.close()
    runtimed.stop()
    runtimed.start()
    again = runtimed.client()
    upgraded = again.attach(cid, stdin=True)
    again.resize(cid, 12, 34)
    upgraded.sock.sendall(b"stty size; echo second-$((2+2))\r")
    data = _read_until(upgraded.sock, upgraded.head, b"second-4")
    assert b"12 34" in data
    upgraded.sock.close()


# ---- the stock docker CLI against shoald's Docker API (the real app, on the test's runtimed) -------

@pytest.fixture(scope="module")
def docker_host(runtimed, tmp_path_factory):
    """shoald's Docker API app (shoal.dockerapi.server.make_app) serving this node's runtimed only,
    on its own loop in a thread: what `docker run|exec|attach` reach on a node."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from aiohttp import web

    from agent_runtime.api import AsyncRuntimeClient
    from shoal.dockerapi.server import make_app
    sock = str(tmp_path_factory.mktemp("dockerapi") / "docker.sock")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state = {}

    async def serve():
        daemon = SimpleNamespace(manager=None, node=None, runtime=AsyncRuntimeClient(runtimed.socket),
                                 info=lambda: SimpleNamespace(local_node_state="inactive", control_available=False))
        runner = web.AppRunner(make_app(daemon), access_log=None, handle_signals=False)
        await runner.setup()
        await web.UnixSite(runner, sock).start()
        state["runner"], state["client"] = runner, daemon.runtime
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield f"unix://{sock}"

    async def stop():
        await state["runner"].cleanup()
        await state["client"].close()
    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
    loop.close()


def test_docker_run_it_and_exec_it_through_shoalds_api(client, docker_host, terminals):
    env = {"DOCKER_HOST": docker_host, "DOCKER_CONFIG": "/nonexistent-docker-config"}
    t = _open(terminals, ["docker", "run", "-it", "--name", "docker-it", IMAGE, "sh"], env, rows=25, columns=90)
    _at_prompt_size_and_output(t, "25 90", "echo docker-$((3*3))", "docker-9")
    t.send(b"\x10\x11")                                   # docker's default detach keys
    assert t.wait() == 0
    assert "TERMINAL-RESTORED" in t.text
    assert client.inspect("docker-it").state.status == "running"
    t2 = _open(terminals, ["docker", "exec", "-it", "docker-it", "sh"], env, rows=21, columns=77)
    _at_prompt_size_and_output(t2, "21 77", "echo exec-$((4*4))", "exec-16")
    _exit_passes_on(t2, 6)
    t3 = _open(terminals, ["docker", "attach", "docker-it"], env)
    t3.send("\r")
    t3.expect(r"/ # ")
    _exit_passes_on(t3, 9)
    client.remove("docker-it", force=True)


def test_docker_run_i_pipes_stdin_through_shoalds_api(client, docker_host):
    env = {**os.environ, "DOCKER_HOST": docker_host, "DOCKER_CONFIG": "/nonexistent-docker-config"}
    out = subprocess.run(["docker", "run", "-i", "--rm", IMAGE, "cat"], input=b"hi\n", capture_output=True,
                         env=env, timeout=120)
    assert (out.returncode, out.stdout) == (0, b"hi\n"), out.stderr
    out = subprocess.run(["docker", "run", "-i", "--rm", IMAGE, "sh", "-c", "read x; echo err-$x >&2; exit 3"],
                         input=b"y\n", capture_output=True, env=env, timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (3, b"", b"err-y\n")


def test_input_sent_before_the_start_reaches_the_workload(client):
    """docker run -i sends its input (and its end) as soon as it is attached, before the start:
    the attach waits for the workload's stdin and then writes it (it waited for good before)."""
    import socket
    cid = client.create(ContainerSpec(image=IMAGE, open_stdin=True, stdin_once=True, command=["cat"]))
    upgraded = client.attach(cid, stdin=True)
    upgraded.sock.sendall(b"early\n")
    upgraded.sock.shutdown(socket.SHUT_WR)
    client.start(cid)
    data = _read_until(upgraded.sock, upgraded.head, b"early\n")
    assert data == b"\x01\x00\x00\x00\x00\x00\x00\x06early\n"
    assert client.wait(cid).status_code == 0
    upgraded.sock.close()


def test_shoal_attach_then_exit_code_and_start_a_of_an_exited_container(client, env, terminals):
    cid = client.create(ContainerSpec(image=IMAGE, tty=True, open_stdin=True, command=["sh"], name="att"))
    client.start(cid)
    t = _open(terminals, [SHOAL, "attach", "att"], env, rows=30, columns=60)
    t.send("stty size; echo attached-$((5*5))\r")
    t.expect("30 60")
    t.expect("attached-25")
    _exit_passes_on(t, 4)
    client.remove(cid, force=True)
    # docker start -a: an attach made while it is exited waits for the next start (it ended at once)
    cid = client.create(ContainerSpec(image=IMAGE, command=sh("echo run-$((1+1))")))
    client.start(cid)
    client.wait(cid)
    upgraded = client.attach(cid)
    client.start(cid)
    assert _read_until(upgraded.sock, upgraded.head, b"run-2\n").endswith(b"\x00\x00\x00\x00\x00\x00\x06run-2\n")
    upgraded.sock.close()


def test_a_client_killed_mid_session_leaves_the_container_attachable(client, env, terminals):
    """SIGKILL of `shoal run -it` while it is attached: the container runs on, runtimed lets go of
    that attach (its copy of the input closed), and a new attach types into the same shell."""
    import signal as signals
    t = _open(terminals, [SHOAL, "run", "-it", "--name", "killed-client", IMAGE, "sh"], env)
    t.expect(r"/ # ")
    t.send("echo one-$((1+0))\r")
    t.expect("one-1")
    children = open(f"/proc/{t.pid}/task/{t.pid}/children").read().split()
    assert len(children) == 1, children        # the wrapper's one child: the shoal CLI
    os.kill(int(children[0]), signals.SIGKILL)
    assert t.wait() == -signals.SIGKILL % 256       # the wrapper passes on subprocess.call's -9
    assert client.inspect("killed-client").state.status == "running"
    t2 = _open(terminals, [SHOAL, "attach", "killed-client"], env)
    t2.send("echo two-$((1+1))\r")
    t2.expect("two-2")
    _exit_passes_on(t2, 0)
    client.remove("killed-client", force=True)


def test_bad_sizes_and_detach_keys_are_refused(client):
    from agent_runtime.errors import InvalidArgument
    cid = client.create(ContainerSpec(image=IMAGE, tty=True, command=["sleep", "300"], stop_signal="KILL"))
    client.start(cid)
    with pytest.raises(InvalidArgument, match="window size"):
        client.resize(cid, 0, 80)
    with pytest.raises(InvalidArgument, match="Invalid detach keys"):
        client.attach(cid, stdin=True, detach_keys="ctrl-1")
    out = subprocess.run([SHOAL, "run", "-it", "--detach-keys", "bogus", IMAGE, "true"], capture_output=True,
                         env=cli_env(client.socket_path), timeout=60)
    assert out.returncode == 125 and b"Invalid detach keys" in out.stderr


def test_docker_run_it_rm_exit_code_through_shoalds_api(client, docker_host, terminals):
    env = {"DOCKER_HOST": docker_host, "DOCKER_CONFIG": "/nonexistent-docker-config"}
    t = _open(terminals, ["docker", "run", "-it", "--rm", "--name", "docker-it-rm", IMAGE, "sh"], env)
    t.expect(r"/ # ")
    _exit_passes_on(t, 2)
    assert not [c for c in client.list(all=True) if c.name == "docker-it-rm"]   # docker waits for removed
