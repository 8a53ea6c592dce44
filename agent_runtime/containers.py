"""The container manager: create, start, stop, kill, remove, wait, exec, stats, and re-adoption.

One ``ContainerManager`` per runtimed, used only from its event loop (single-threaded: no locks
besides per-container start/stop ordering). Containers are identified by id, unique id prefix or
name. See ``process.py`` for the process tree and ``container_record.py`` for the on-disk layout.

What re-adoption after a runtimed restart guarantees:
- a container that is still running is found again (waiter pid + start time), its exit code is
  still recorded (the waiter writes it to ``exitcode``), and its output is not lost: it waited in
  the pipes (1 MiB each, then the workload blocks) and is logged when runtimed is back, with the
  time it was read, not written;
- a container that exited while runtimed was down gets its exit code from ``exitcode`` and its
  OOM flag from the cgroup, which is then removed; output still in its pipes when the last holder
  (the waiter) exited is lost (at most 1 MiB per stream);
- ``exec`` sessions in flight and ``logs --follow`` streams end with the old process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import resource
import secrets
import shutil
import signal
import stat
import threading
import time
from pathlib import Path

from agent_runtime import capabilities, dns, events, files, process, seccomp
from agent_runtime.cgroups import Cgroup, detect_version, open_cgroup
from agent_runtime.cgroups.base import keep_migration_lock_warm
from agent_runtime.container_record import CREATED, EXITED, REMOVING, RUNNING, Container, Runtime, now_iso
from agent_runtime.errors import Conflict, InvalidArgument, NotFound, ShoalRuntimeError
from agent_runtime.imageconfig import merge_env, merge_process
from agent_runtime.logs import LogWriter
from agent_runtime.mounts import UserMount, plan_mounts
from agent_runtime.spec import (ContainerSpec, ContainerStats, ExecResult, Health, Healthcheck, signal_number,
                                validate_spec)
from agent_runtime.volumes import VolumeStore
from common.hostopts import ULIMITS

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
START_TIMEOUT = 30.0
EXEC_OUTPUT_CAP = 1024 * 1024
REMOVED_PREFIX = ".removed-"   # a removed container's directory, renamed while a thread deletes it


class ContainerManager:
    """Owns every container below ``root``; ``images`` resolves references (``resolve(ref)``)."""

    def __init__(self, root: Path, images, volumes: VolumeStore, cgroup_parent: str,
                 busybox: str, python: str, cgroup_version: int | None = None) -> None:
        self.root = root
        self.images = images
        self.volumes = volumes
        self.cgroup_parent = cgroup_parent.strip("/")
        self.cgroup_version = cgroup_version or detect_version()
        self.busybox = busybox
        self.python = python
        self.containers: dict[str, Container] = {}
        self._by_name: dict[str, str] = {}  # name -> id: lookups and the name check cost O(1), not O(containers)
        self.events = events.EventBus()  # create/start/kill/oom/die/stop/destroy, for GET /events
        self._health: dict[str, asyncio.Task] = {}  # container id -> its health check loop
        self._deleting: set[asyncio.Future] = set()  # directories of removed containers being deleted
        root.mkdir(parents=True, exist_ok=True)
        self.init = process.compile_init(root / ".init.pyc")
        volumes.users = self.volume_users

    # lookup --------------------------------------------------------------------------------
    def get(self, ref: str) -> Container:
        """By id, name or unique id prefix; NotFound otherwise."""
        if ref in self.containers:
            return self.containers[ref]
        if ref in self._by_name:
            return self.containers[self._by_name[ref]]
        matches = [c for c in self.containers.values() if ref and c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"container reference {ref!r} is ambiguous")
        raise NotFound(f"No such container: {ref}")

    def list(self, all: bool = False) -> list[Container]:
        out = [c for c in self.containers.values() if all or c.state.status == RUNNING]
        return sorted(out, key=lambda c: c.created, reverse=True)

    def volume_users(self, name: str) -> list[str]:
        return [c.name for c in self.containers.values() if name in c.volume_names()]

    def cgroup(self, c: Container) -> Cgroup:
        return open_cgroup(c.cgroup_path, self.cgroup_version)

    def _publish(self, action: str, c: Container, **extra: str) -> None:
        """Publish a container event (Docker's attributes: its labels, name and image)."""
        attributes = dict(c.spec.labels)
        attributes.update(name=c.name, image=c.spec.image or c.spec.rootfs, **extra)
        self.events.publish(action, c.id, attributes)

    # create --------------------------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> Container:
        """Validate, resolve the image and mounts, and write the container's directory.

        Leaves nothing behind on error. Creates named volumes on first use.
        """
        validate_spec(spec)
        if spec.name:
            if not NAME_RE.match(spec.name):
                raise InvalidArgument(f"invalid container name {spec.name!r}: use [A-Za-z0-9][A-Za-z0-9_.-]*")
            if spec.name in self._by_name:
                raise Conflict(f"container name {spec.name!r} is already in use")
        caps = capabilities.effective_caps(spec.cap_add, spec.cap_drop, spec.privileged)  # validates names
        _seccomp(spec, caps)  # compiles (and caches) the filter: a profile the kernel would refuse fails here
        self._network(spec)
        contents = files.decode(spec.files)
        spec = dataclasses.replace(spec, files=files.without_data(spec.files))  # data stays in memory only
        for i, m in enumerate(spec.mounts):
            if m.type == "bind" and not os.path.exists(m.source):
                raise InvalidArgument(f"invalid mount config for type \"bind\": bind source path does not "
                                      f"exist: {m.source} (Mounts[{i}])")
        if spec.rootfs:
            if not os.path.isdir(spec.rootfs):
                raise InvalidArgument(f"rootfs {spec.rootfs} is not a directory")
            lower, image_id, image_config = [spec.rootfs], "", {}
        else:
            image = self.images.resolve(spec.image)
            lower = [str(p) for p in reversed(image.layers)]
            image_id, image_config = image.id, image.config
        cid = secrets.token_hex(32)
        proc = merge_process(spec, image_config, cid)
        name = spec.name or cid[:12]
        directory = self.root / cid
        c = Container(id=cid, name=name, created=now_iso(), spec=spec, image_id=image_id,
                      lower_dirs=lower, process=proc, dir=directory,
                      cgroup_path=f"{self.cgroup_parent}/{cid}")
        try:
            directory.mkdir(mode=0o700)
            for sub in ("upper", "work", "merged"):
                (directory / sub).mkdir()
            for m in spec.mounts:
                if m.type == "volume":
                    self.volumes.create(m.source, m.volume_labels, m.volume_options)
                    self.volumes.mount(m.source)
                    if not m.no_copy:
                        self.volumes.populate(m.source, lower, m.target)
            if spec.files:
                files.write_files(directory, spec.files, contents)
            c.save_config()
            c.save_state()
        except BaseException:
            files.release(directory)
            c.remove_dir()
            raise
        self.containers[cid] = c
        self._by_name[c.name] = cid
        log.info("created container %s (%s) from %s", name, cid[:12], spec.image or spec.rootfs)
        self._publish(events.CREATE, c)
        return c

    @staticmethod
    def _network(spec: ContainerSpec) -> dict:
        net = spec.network or "none"
        if net in ("none", "host"):
            return {"mode": net}
        if not net.startswith("/") and "/" in net:
            raise InvalidArgument(f"NetworkMode {net!r}: use none, host, a netns name or an absolute path")
        path = net if net.startswith("/") else f"/run/netns/{net}"
        if not os.path.exists(path):
            raise InvalidArgument(f"NetworkMode: network namespace {net!r} not found ({path} does not exist)")
        return {"mode": "path", "path": path}

    # start ---------------------------------------------------------------------------------
    def _init_spec(self, c: Container, cg: Cgroup) -> dict:
        spec = c.spec
        user_mounts = []
        for m in spec.mounts:
            if m.type == "tmpfs":
                user_mounts.append(UserMount("tmpfs", m.target, read_only=m.read_only,
                                             tmpfs_size_bytes=m.tmpfs_size_bytes, tmpfs_mode=m.tmpfs_mode))
            else:
                source = m.source if m.type == "bind" else self.volumes.mount(m.source)
                if not os.path.exists(source):
                    raise InvalidArgument(f"container {c.name}: mount source {source} no longer exists")
                user_mounts.append(UserMount("bind", m.target, source, m.read_only,
                                             source_is_dir=stat.S_ISDIR(os.stat(source).st_mode),
                                             propagation=m.propagation))
        user_mounts += files.mount_sources(c.dir, spec.files)
        caps = capabilities.effective_caps(spec.cap_add, spec.cap_drop, spec.privileged)
        if not cg.restricts_devices and not spec.privileged:
            caps = [n for n in caps if n != capabilities.CAPABILITIES["MKNOD"]]
        ops = plan_mounts(user_mounts, spec.privileged)
        if not c.on_overlay():
            at = next((i for i, op in enumerate(ops) if op["kind"] in ("mask", "readonly")), len(ops))
            targets = {m.target for m in spec.mounts}
            ops[at:at] = [op for op in _name_files(c) if op["target"] not in targets]
        return {
            "mode": "run", "sync_fd": process.SYNC_FD, "cgroup_procs": cg.procs_files(),
            "network": self._network(spec), "hostname": c.process.hostname,
            "rootfs": {"lower": c.lower_dirs, "upper": str(c.dir / "upper"),
                       "work": str(c.dir / "work"), "target": str(c.dir / "merged")},
            "ops": ops,
            "readonly_rootfs": spec.readonly_rootfs,
            "sysctls": sorted(spec.sysctls.items()),
            **_limits(spec),
            "process": {"args": c.process.args, "env": c.process.env, "cwd": c.process.cwd,
                        "user": c.process.user, "groups": spec.group_add, "caps": capabilities.cap_mask(caps),
                        "no_new_privileges": spec.no_new_privileges, "seccomp": _seccomp(spec, caps)},
            "init": spec.init, "tty": spec.tty,
        }

    async def start(self, ref: str) -> Container:
        """Start a created or exited container; returns once the workload's exec succeeded.

        On failure the container is marked exited with the error, its cgroup removed, and the
        error raised (InvalidArgument for a command that cannot be executed).
        """
        c = self.get(ref)
        if c.state.status == RUNNING:
            return c
        if c.state.status not in (CREATED, EXITED):
            raise Conflict(f"cannot start container {c.name}: it is {c.state.status}")
        cg = self.cgroup(c)
        cg.destroy()
        cg.create(c.spec.resources, c.spec.privileged)
        spawned = None
        try:
            init_json = c.dir / "init.spec"
            process.write_init_spec(init_json, self._init_spec(c, cg))
            (c.dir / "exitcode").unlink(missing_ok=True)
            c.log_writer = _log_writer(c)
            loop = asyncio.get_running_loop()
            stop_warming = threading.Event()
            warming = loop.run_in_executor(None, keep_migration_lock_warm, self.cgroup_version, stop_warming)
            spawned = process.spawn_waiter(self.busybox, self.python, init_json, c.dir / "exitcode", self.init,
                                           tty=c.spec.tty, open_stdin=c.spec.open_stdin,
                                           stdin_once=c.spec.stdin_once,
                                           console_size=tuple(c.spec.console_size[:2]) or None)
            _close_stdin(c)
            c.stdin_fd = spawned.stdin_fd
            c.input_ready.set()
            c.runtime = Runtime(waiter_pid=spawned.waiter_pid, waiter_start=process.start_time(spawned.waiter_pid),
                                restart_count=c.runtime.restart_count, manually_stopped=c.runtime.manually_stopped)
            self._watch(c, spawned.waiter_pid, spawned.stdout_fd, spawned.stderr_fd)
            try:
                messages = await process.read_sync(spawned.sync_fd, START_TIMEOUT)
            except asyncio.TimeoutError:
                raise ShoalRuntimeError(f"cannot start container {c.name}: init did not finish in "
                                        f"{START_TIMEOUT:.0f}s") from None
            finally:
                stop_warming.set()
                await warming
        except BaseException as exc:
            if spawned is None:
                cg.destroy()
                if c.log_writer:
                    c.log_writer.close()
                    c.log_writer = None
                c.state.error = str(exc)
                c.set_status(EXITED)
                c.input_ready.set()
                for attachment in list(c.attached):   # clients attached before this start: it ended
                    attachment.ended()
            else:
                process.signal_process(spawned.waiter_pid, c.runtime.waiter_start, signal.SIGKILL)
                cg.kill_all()
                await c.exited_event.wait()
            raise
        pid = next((m["pid"] for m in messages if "pid" in m), 0)
        error = next((m for m in messages if "error" in m), None)
        if error or not pid:
            await c.exited_event.wait()
            message = error["error"] if error else "init exited before reporting (see the container's logs)"
            c.state.error = message
            c.save_state()
            cls = InvalidArgument if error and error.get("exit_code") == 127 else ShoalRuntimeError
            raise cls(f"cannot start container {c.name}: {message}")
        c.state.started_at = now_iso()
        if c.exited_event.is_set():  # it already exited (``true``); _finish recorded it
            c.save_state()
            return c
        c.state.pid = pid
        c.runtime.pid_start = process.start_time(pid)
        c.state.exit_code, c.state.oom_killed, c.state.error, c.state.finished_at = 0, False, "", ""
        hc = c.process.healthcheck
        c.state.health = Health() if hc is not None and hc.test and hc.test[0] != "NONE" else None
        c.set_status(RUNNING)
        log.info("started container %s pid %d", c.name, pid)
        self._publish(events.START, c)
        self._start_health_check(c)
        return c

    def _watch(self, c: Container, waiter_pid: int, out_fd: int, err_fd: int) -> None:
        """Copy the pipes into the log and react to the waiter's exit (loop callbacks)."""
        loop = asyncio.get_running_loop()
        c.exited_event = asyncio.Event()
        c.pidfd = os.pidfd_open(waiter_pid)
        c.pipes = {out_fd: "stdout", err_fd: "stderr"}
        for fd, stream in c.pipes.items():
            loop.add_reader(fd, self._pump, c, fd, stream)
        loop.add_reader(c.pidfd, self._on_exit, c)

    def _pump(self, c: Container, fd: int, stream: str, drain: bool = False) -> bool:
        """Move available pipe data into the log; returns False (and closes fd) at EOF."""
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                data = b""
            if not data:
                asyncio.get_running_loop().remove_reader(fd)
                os.close(fd)
                del c.pipes[fd]
                return False
            c.log_writer.feed(stream, data)
            for attachment in list(c.attached):
                attachment.output(stream, data)
            if not drain:
                return True

    def _on_exit(self, c: Container) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(c.pidfd)
        os.close(c.pidfd)
        c.pidfd = -1
        code = process.reap(c.runtime.waiter_pid)
        self._finish(c, code)

    def _finish(self, c: Container, waiter_code: int | None) -> None:
        """Record the exit (code, OOM), release pipes, the cgroup and the files' tmpfs. Idempotent per run."""
        loop = asyncio.get_running_loop()
        for fd, stream in list(c.pipes.items()):
            if self._pump(c, fd, stream, drain=True):
                loop.remove_reader(fd)
                os.close(fd)
        c.pipes = {}
        if c.log_writer:
            c.log_writer.close()
            c.log_writer = None
        _close_stdin(c)
        for attachment in list(c.attached):
            attachment.ended()
        code = _read_exit_file(c.dir / "exitcode")
        if code is None:
            code = waiter_code if waiter_code is not None else -1
            if waiter_code is None:
                c.state.error = c.state.error or "exit status lost: the waiter exited without recording it"
        cg = self.cgroup(c)
        try:
            oom = cg.exists() and cg.oom_kills() > 0
            cg.destroy()
        except ShoalRuntimeError as exc:
            log.warning("container %s: %s", c.name, exc)
            oom = False
        if c.spec.files:
            try:  # secrets and configs live no longer than the process that used them (as Docker's)
                files.release(c.dir)
            except ShoalRuntimeError as exc:
                log.warning("container %s: %s", c.name, exc)
        c.state.exit_code, c.state.oom_killed = code, oom
        c.state.pid, c.state.finished_at = 0, now_iso()
        c.runtime = Runtime(restart_count=c.runtime.restart_count, manually_stopped=c.runtime.manually_stopped)
        if c.state.status != REMOVING:
            c.set_status(EXITED)
        c.exited_event.set()
        health = self._health.pop(c.id, None)
        if health is not None:
            health.cancel()
        log.info("container %s exited with %d%s", c.name, code, " (OOM killed)" if oom else "")
        if oom:
            self._publish(events.OOM, c)
        self._publish(events.DIE, c, exitCode=str(code), oomKilled=str(oom).lower())

    # health checks ---------------------------------------------------------------------------
    def _start_health_check(self, c: Container) -> None:
        hc = c.process.healthcheck
        if c.state.health is None or hc is None or c.id in self._health:
            return
        self._health[c.id] = asyncio.get_running_loop().create_task(self._health_loop(c, hc),
                                                                    name=f"health-{c.id[:12]}")

    async def _health_loop(self, c: Container, hc: Healthcheck) -> None:
        """Docker's health check: the test now and then every interval, in the container (as exec);
        ``retries`` failures in a row make it unhealthy (those in the start period, before a first
        success, do not count); each change is published as ``health_status: STATUS``."""
        test = hc.test
        argv = ["/bin/sh", "-c", " ".join(test[1:])] if test[0] == "CMD-SHELL" else list(
            test[1:] if test[0] == "CMD" else test)
        started = time.monotonic()
        health = c.state.health
        while health is not None and c.state.status == RUNNING:
            try:
                ok = (await self.exec(c.id, argv, timeout=hc.timeout_s)).exit_code == 0
            except (ShoalRuntimeError, OSError):
                ok = False
            if c.state.status != RUNNING:
                return
            status = health.status
            if ok:
                health.failing_streak, status = 0, "healthy"
            elif health.status != "starting" or time.monotonic() - started >= hc.start_period_s:
                health.failing_streak += 1
                if health.failing_streak >= hc.retries:
                    status = "unhealthy"
            if status != health.status:
                health.status = status
                c.save_state()
                log.info("container %s is %s", c.name, status)
                self._publish(f"{events.HEALTH_STATUS}: {status}", c)
            await asyncio.sleep(_probe_interval(hc, health.status, time.monotonic() - started))

    # stop / kill / wait / remove -------------------------------------------------------------
    def kill(self, ref: str, sig: str | int = "SIGKILL") -> None:
        c = self.get(ref)
        signum = signal_number(sig)
        if c.state.status != RUNNING or not process.signal_process(c.state.pid, c.runtime.pid_start, signum):
            raise Conflict(f"cannot kill container {c.name}: container is not running")
        self._publish(events.KILL, c, signal=str(signum))

    async def stop(self, ref: str, timeout: float | None = None) -> Container:
        """Send the stop signal, wait up to the grace period, then SIGKILL everything."""
        c = self.get(ref)
        if c.state.status != RUNNING:
            return c
        grace = c.spec.stop_grace_period_s if timeout is None else timeout
        process.signal_process(c.state.pid, c.runtime.pid_start, signal_number(c.process.stop_signal))
        try:
            await asyncio.wait_for(c.exited_event.wait(), grace)
        except asyncio.TimeoutError:
            log.info("container %s did not stop in %.1fs, killing it", c.name, grace)
            process.signal_process(c.state.pid, c.runtime.pid_start, signal.SIGKILL)
            self.cgroup(c).kill_all()
            await c.exited_event.wait()
        self._publish(events.STOP, c)
        return c

    async def wait(self, ref: str) -> Container:
        c = self.get(ref)
        if c.state.status in (RUNNING,) or (c.state.status == REMOVING and not c.exited_event.is_set()):
            await c.exited_event.wait()
        return c

    async def remove(self, ref: str, force: bool = False) -> None:
        """Delete the container and everything it made (cgroup, upper dir, logs). Volumes stay."""
        c = self.get(ref)
        if c.state.status == RUNNING and not force:
            raise Conflict(f"cannot remove container {c.name}: container is running: stop it first or use force")
        if c.state.status == REMOVING and not c.exited_event.is_set() and c.runtime.waiter_pid:
            await c.exited_event.wait()
            return
        was_running = c.state.status == RUNNING
        c.set_status(REMOVING)
        if was_running:
            process.signal_process(c.state.pid, c.runtime.pid_start, signal.SIGKILL)
            self.cgroup(c).kill_all()
            await c.exited_event.wait()
        self.cgroup(c).destroy()
        files.release(c.dir)
        self._delete_dir(c)
        self.containers.pop(c.id, None)
        if self._by_name.get(c.name) == c.id:
            del self._by_name[c.name]
        log.info("removed container %s", c.name)
        self._publish(events.DESTROY, c)

    def _delete_dir(self, c: Container) -> None:
        """Rename the container's directory aside and delete it in a worker thread: the removal is
        answered once the container is gone from the API and from ``root``, without waiting for the
        overlay's upper and work trees and the logs to be deleted (most of a remove's time, paid by
        every `shoal run --rm`). A directory still there when runtimed stops is deleted by ``load``."""
        aside = self.root / f"{REMOVED_PREFIX}{c.id}"
        try:
            os.rename(c.dir, aside)
        except OSError as exc:
            log.warning("container %s: cannot rename %s aside (%s); deleting it in place", c.name, c.dir, exc)
            c.remove_dir()
            return
        deleting = asyncio.get_running_loop().run_in_executor(None, _delete_tree, aside)
        self._deleting.add(deleting)
        deleting.add_done_callback(self._deleting.discard)

    # exec / stats ----------------------------------------------------------------------------
    def exec_spec(self, ref: str, cmd: list[str], env: list[str] | None = None, user: str = "",
                  workdir: str = "", tty: bool = False) -> tuple[Container, dict, int, int]:
        """The container, init.py's exec spec and the sync pipe (read end, write end) of an exec."""
        c = self.get(ref)
        if c.state.status != RUNNING or not process.alive(c.state.pid, c.runtime.pid_start):
            raise Conflict(f"cannot exec in container {c.name}: container is not running")
        if not cmd:
            raise InvalidArgument("exec: no command given")
        spec = c.spec
        caps = capabilities.effective_caps(spec.cap_add, spec.cap_drop, spec.privileged)
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        exec_spec = {
            "mode": "exec", "target_pid": c.state.pid, "sync_fd": sync_w, "tty": tty,
            "namespaces": ["ipc", "uts", "net", "pid", "mnt"], "cgroup_procs": self.cgroup(c).procs_files(),
            "process": {"args": cmd, "env": merge_env(c.process.env, env or []),
                        "cwd": workdir or c.process.cwd, "user": user or c.process.user,
                        "groups": spec.group_add,
                        "caps": capabilities.cap_mask(caps), "no_new_privileges": spec.no_new_privileges,
                        "seccomp": _seccomp(spec, caps)},
            **_limits(spec),   # as runc's exec: the container's ulimits and OOM score, not runtimed's
        }
        return c, exec_spec, sync_r, sync_w

    async def exec(self, ref: str, cmd: list[str], env: list[str] | None = None, user: str = "",
                   workdir: str = "", timeout: float | None = None) -> ExecResult:
        """Run ``cmd`` in the container's namespaces and cgroup; output capped at 1 MiB/stream."""
        c, exec_spec, sync_r, sync_w = self.exec_spec(ref, cmd, env, user, workdir)
        spec_path = c.dir / f"exec-{secrets.token_hex(4)}.spec"
        process.write_init_spec(spec_path, exec_spec)
        try:
            proc = await asyncio.create_subprocess_exec(
                self.python, "-I", "-S", str(self.init), str(spec_path), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, pass_fds=(sync_w,))
            os.close(sync_w)
            sync_w = -1
            try:
                out, err = await asyncio.wait_for(asyncio.gather(
                    _read_capped(proc.stdout), _read_capped(proc.stderr)), timeout)
                code = await proc.wait()
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                raise ShoalRuntimeError(f"exec in container {c.name}: {cmd[0]} timed out after {timeout}s") from None
            os.set_blocking(sync_r, False)
            try:
                report = os.read(sync_r, 65536)
            except BlockingIOError:
                report = b""
        finally:
            spec_path.unlink(missing_ok=True)
            os.close(sync_r)
            if sync_w >= 0:
                os.close(sync_w)
        errors = [m for m in process.parse_sync(report) if "error" in m]
        if errors:
            raise (InvalidArgument if errors[0]["exit_code"] == 127 else ShoalRuntimeError)(
                f"exec in container {c.name}: {errors[0]['error']}")
        return ExecResult(exit_code=code, stdout=out.decode("utf-8", "replace"),
                          stderr=err.decode("utf-8", "replace"))

    def stats(self, ref: str) -> ContainerStats:
        c = self.get(ref)
        out = ContainerStats(id=c.id, read=now_iso())
        if c.state.status == RUNNING:
            s = self.cgroup(c).stats()
            out.cpu_usage_ns, out.memory_usage_bytes, out.memory_limit_bytes = (
                s.cpu_usage_ns, s.memory_usage_bytes, s.memory_limit_bytes)
            out.pids_current, out.pids_limit = s.pids_current, s.pids_limit
        return out

    # restart of runtimed ---------------------------------------------------------------------
    def load(self) -> None:
        """Read every container directory and re-adopt running ones; call from the loop at start."""
        for directory in sorted(self.root.iterdir()):
            if directory.name.startswith(REMOVED_PREFIX):   # removed; runtimed stopped before it was deleted
                _delete_tree(directory)
                continue
            if not (directory / "state.json").exists():
                continue
            try:
                c = Container.load(directory)
            except (OSError, ValueError, KeyError, ShoalRuntimeError) as exc:
                log.warning("skipping unreadable container directory %s: %s", directory, exc)
                continue
            self.containers[c.id] = c
            self._by_name[c.name] = c.id
            if c.state.status == REMOVING:
                self.cgroup(c).destroy()
                files.release(c.dir)
                c.remove_dir()
                del self.containers[c.id]
                del self._by_name[c.name]
            elif c.state.status == RUNNING:
                self._readopt(c)
            else:
                c.exited_event.set()

    def _readopt(self, c: Container) -> None:
        rt = c.runtime
        if process.alive(rt.waiter_pid, rt.waiter_start):
            try:
                out_fd, err_fd = process.reopen_pipes(rt.waiter_pid)
                c.stdin_fd = _reopen_stdin(c)
                c.log_writer = _log_writer(c)
                self._watch(c, rt.waiter_pid, out_fd, err_fd)
                log.info("re-adopted running container %s (pid %d)", c.name, c.state.pid)
                self._start_health_check(c)
                return
            except (OSError, ProcessLookupError) as exc:
                log.warning("cannot re-adopt container %s: %s", c.name, exc)
        c.exited_event = asyncio.Event()
        self._finish(c, None)


def _close_stdin(c: Container) -> None:
    if c.stdin_fd >= 0:
        os.close(c.stdin_fd)
        c.stdin_fd = -1
    # A fresh event for the next start; those waiting on the old one wake and look again (replacing
    # it without setting it left an attach made before the start waiting for good)
    old, c.input_ready = c.input_ready, asyncio.Event()
    old.set()


def _reopen_stdin(c: Container) -> int:
    """The input of a re-adopted container: the pty master the waiter keeps (fd 6), or the write
    end of its stdin pipe (fd 7; gone with StdinOnce, whose input ended with the old runtimed)."""
    pid = c.runtime.waiter_pid
    try:
        if c.spec.tty:
            return process.take_fd(pid, 6)
        if c.spec.open_stdin and not c.spec.stdin_once:
            return os.open(f"/proc/{pid}/fd/7", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        log.warning("container %s: its input cannot be attached again: %s", c.name, exc)
    return -1


def _delete_tree(path: Path) -> None:
    """Delete a removed container's directory; a failure is logged (the next start tries again)."""
    def failed(function, name, exc_info) -> None:
        log.warning("deleting %s: %s failed: %s", name, function.__name__, exc_info[1])
    shutil.rmtree(path, onerror=failed)


def _log_writer(c: Container) -> LogWriter:
    config = c.spec.log_config.merged(None)     # the server filled in the daemon's defaults
    return LogWriter(c.log_path, config.max_size_bytes, config.max_files)


def _probe_interval(hc: Healthcheck, status: str, running_for: float) -> float:
    """Docker's: inside the start period a container still starting is checked every start
    interval (default 5 s), afterwards every interval."""
    if running_for < hc.start_period_s and status == "starting":
        return hc.start_interval_s or 5.0
    return hc.interval_s


def _limits(spec: ContainerSpec) -> dict:
    """The init spec's ``rlimits`` ((RLIMIT_* number, soft, hard)) and ``oom_score_adj``."""
    return {"rlimits": [(getattr(resource, "RLIMIT_" + ULIMITS[u.name]), u.soft, u.hard) for u in spec.ulimits],
            "oom_score_adj": spec.oom_score_adj}


def _name_files(c: Container) -> list[dict]:
    """For a container without overlay networks: the resolv.conf its ``dns*`` options ask for
    (the host's nameservers when only search domains or options are given) and the hosts file its
    ``extra_hosts`` ask for, written in its directory, as bind-mount operations. None asked: none
    (the image's files stay)."""
    spec, ops = c.spec, []
    directory = c.dir / "etc"
    wanted = []
    if spec.dns or spec.dns_search or spec.dns_options:
        wanted.append(("resolv.conf", dns.resolv_conf(spec.dns or dns.nameservers(), spec.dns_search,
                                                      spec.dns_options)))
    if spec.extra_hosts:
        wanted.append(("hosts", dns.hosts_text(spec.extra_hosts)))
    for name, text in wanted:
        directory.mkdir(mode=0o755, exist_ok=True)
        path = directory / name
        path.write_text(text)
        os.chmod(path, 0o644)
        ops.append({"kind": "mount", "source": str(path), "target": f"/etc/{name}", "fstype": "",
                    "flags": ["bind", "rec"], "data": "", "mkdir": "file"})
    return ops


def _seccomp(spec: ContainerSpec, caps: list[int]) -> bytes | None:
    """The container's seccomp BPF program (None: unconfined, as privileged containers are)."""
    if spec.privileged:
        return None
    return seccomp.program(spec.seccomp, capabilities.names(capabilities.cap_mask(caps)))


async def _read_capped(stream: asyncio.StreamReader, cap: int = EXEC_OUTPUT_CAP) -> bytes:
    """Read to EOF, keeping the first ``cap`` bytes (the rest is drained so the child never blocks)."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < cap:
            kept += chunk[:cap - len(kept)]
    return bytes(kept)


def _read_exit_file(path: Path) -> int | None:
    for _ in range(3):
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        if text.lstrip("-").isdigit():
            return int(text)
        time.sleep(0.001)
    return None
