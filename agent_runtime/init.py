"""The namespace worker: turns a JSON spec into a running container process (or an exec in one).

Run as ``<venv python> -I -S /path/to/agent_runtime/init.py SPEC_FILE``: standard library and
ctypes only, no package imports (with -I -S there is no site-packages and no script directory on
sys.path). Nothing else in the project imports this file, and it trusts its spec: runtimed wrote it.
The spec is a ``marshal`` dump (not JSON: importing json pulls in re and enum, which cost 10 ms
of a start that takes 20); for the same reason this file avoids socket, signal and warnings.

Modes (``spec["mode"]``):

``run``  This process is already pid 1 of a fresh pid namespace: runtimed spawned
         ``busybox unshare -p busybox sh -c ...`` and that shell (the per-container waiter, which
         records the exit code) forked us. We report our host pid, join the cgroups, enter or
         create the network namespace, unshare mount/uts/ipc, write sysctls, set rlimits and
         oom_score_adj, mount the overlay root and the planned mounts, pivot_root (remount it
         read-only for ``readonly_rootfs``), set hostname, the seccomp filter, user, capabilities and
         no-new-privs, and exec
         the workload (with ``init``: fork it and stay as a zombie-reaping pid 1).
``exec`` Join the cgroups and the namespaces of ``target_pid``, fork (to enter its pid
         namespace), set up user and capabilities and exec the command; the parent exits with the
         child's status.

Protocol with runtimed, on the sync channel (an inherited pipe fd, made close-on-exec): a line
``pid HOST_PID`` early, then either nothing (the channel closes when the workload's exec
succeeds) or ``error CODE MESSAGE`` before exiting with CODE: 127 (command not found), 126 (setup
or exec failed).
"""

import _signal as signal
import ctypes
import errno
import fcntl
import marshal
import os
import stat
import struct
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWNET, CLONE_NEWPID = 0x40000000, 0x20000000
NS_FLAGS = {"ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS, "net": CLONE_NEWNET, "pid": CLONE_NEWPID,
            "mnt": CLONE_NEWNS}
MS_FLAGS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "remount": 32, "bind": 4096,
            "rec": 16384, "private": 1 << 18, "slave": 1 << 19, "shared": 1 << 20, "strictatime": 1 << 24}
MNT_DETACH = 2
PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 8, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
RLIM_INFINITY = 2**64 - 1

libc = ctypes.CDLL(None, use_errno=True)
TIOCSCTTY = 0x540E
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


class SetupError(Exception):
    """A step of container setup failed; the message names the step and the object."""


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags=0, data=""):
    _check(libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                      data.encode() if data else None), f"mount {source} on {target}")


def unshare(flags):
    _check(libc.unshare(flags), "unshare")


def setns(path, nstype):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(libc.setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


def prctl(option, arg2=0, arg3=0):
    _check(libc.prctl(option, arg2, arg3, 0, 0), f"prctl {option}")


def secure_join(root, path):
    """Resolve ``path`` inside ``root`` as if root were /, following symlinks without escaping."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise SetupError(f"too many symlinks resolving {path}")
            link = os.readlink(candidate)
            if link.startswith("/"):
                resolved = []
            parts = [p for p in link.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _mkdirs(path):
    os.makedirs(path, exist_ok=True)


def apply_op(root, op):
    """Apply one planned mount operation (see agent_runtime/mounts.py) under ``root``."""
    kind = op["kind"]
    target = secure_join(root, op["target"])
    if kind == "mount":
        flags = 0
        for name in op["flags"]:
            flags |= MS_FLAGS[name]
        if op.get("mkdir") == "file":
            _mkdirs(os.path.dirname(target))
            if not os.path.exists(target):
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        else:
            _mkdirs(target)
        ro = flags & MS_FLAGS["ro"]
        if flags & MS_FLAGS["bind"]:
            mount(op["source"], target, "", flags & ~MS_FLAGS["ro"])
            if ro:
                mount("", target, "", flags | MS_FLAGS["remount"])
            if op.get("propagation"):
                mount("", target, "", sum(MS_FLAGS[name] for name in op["propagation"]))
        else:
            mount(op["source"], target, op["fstype"], flags, op.get("data", ""))
    elif kind == "mknod":
        os.mknod(target, stat.S_IFCHR | op["mode"], os.makedev(op["major"], op["minor"]))
        os.chmod(target, op["mode"])
    elif kind == "symlink":
        os.symlink(op["link"], target)
    elif kind == "mask":
        if not os.path.exists(target):
            return
        if os.path.isdir(target):
            mount("tmpfs", target, "tmpfs", MS_FLAGS["ro"])
        else:
            mount("/dev/null", target, "", MS_FLAGS["bind"])
    elif kind == "readonly":
        if not os.path.exists(target):
            return
        mount(target, target, "", MS_FLAGS["bind"] | MS_FLAGS["rec"])
        mount("", target, "", MS_FLAGS["bind"] | MS_FLAGS["rec"] | MS_FLAGS["remount"] | MS_FLAGS["ro"]
              | MS_FLAGS["nosuid"] | MS_FLAGS["nodev"] | MS_FLAGS["noexec"])
    else:
        raise SetupError(f"unknown mount operation {kind!r}")


def pivot_root(root):
    os.chdir(root)
    _check(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), f"pivot_root {root}")
    _check(libc.umount2(b".", MNT_DETACH), "unmount the old root")
    os.chdir("/")


def loopback_up():
    fd = libc.socket(2, 2 | 0o2000000, 0)  # AF_INET, SOCK_DGRAM | SOCK_CLOEXEC
    if fd < 0:
        raise SetupError(f"socket: {os.strerror(ctypes.get_errno())}")
    try:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(fd, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(fd, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    finally:
        os.close(fd)


def sethostname(name):
    raw = name.encode()
    _check(libc.sethostname(raw, len(raw)), f"sethostname {name}")


def write_sysctl(key, value):
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as exc:
        raise SetupError(f"sysctl {key}={value}: {exc.strerror}") from None


def set_limits(rlimits, oom_score_adj):
    """``--ulimit`` (while init still has CAP_SYS_RESOURCE, so a hard limit may be raised) and
    ``--oom-score-adj`` (always written, as Docker does: the container does not inherit runtimed's)."""
    # ctypes, not the resource module: in exec mode this runs after joining the container's mount
    # namespace, where the standard library's extension modules are not there to import
    for number, soft, hard in rlimits:
        limit = (ctypes.c_ulong * 2)(soft if soft >= 0 else RLIM_INFINITY, hard if hard >= 0 else RLIM_INFINITY)
        _check(libc.setrlimit(number, limit), f"setrlimit {number} to {soft}:{hard}")
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(oom_score_adj))
    except OSError as exc:
        raise SetupError(f"oom_score_adj {oom_score_adj}: {exc.strerror}") from None


def _read_db(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def resolve_user(spec_user, group_add=()):
    """``name|uid[:group|gid]`` -> (uid, gid, supplementary gids, home) from the container's files;
    ``group_add`` (names or GIDs, Docker's --group-add / a service's --group) joins the user's groups."""
    user, _, group = (spec_user or "0").partition(":")
    passwd = _read_db("/etc/passwd")
    groups = _read_db("/etc/group")
    uid = gid = None
    home = "/"
    name = None
    for row in passwd:
        if len(row) >= 7 and (row[0] == user or row[2] == user):
            name, uid, gid, home = row[0], int(row[2]), int(row[3]), row[5] or "/"
            break
    if uid is None:
        if not user.isdigit():
            raise SetupError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = int(user), 0
    if group:
        for row in groups:
            if len(row) >= 3 and (row[0] == group or row[2] == group):
                gid = int(row[2])
                break
        else:
            if not group.isdigit():
                raise SetupError(f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
    extra = {int(row[2]) for row in groups if len(row) >= 4 and name and name in row[3].split(",")} - {gid}
    for wanted in group_add:
        row = next((r for r in groups if len(r) >= 3 and r[0] == wanted), None)
        if row is not None:
            extra.add(int(row[2]))
        elif wanted.isdigit():
            extra.add(int(wanted))
        else:
            raise SetupError(f"unable to find group {wanted}: no matching entries in group file")
    return uid, gid, sorted(extra), home


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(program):
    """Install a seccomp filter: ``program`` is the BPF (struct sock_filter[], 8 bytes an
    instruction) runtimed compiled from the container's profile (agent_runtime/seccomp.py)."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "install the seccomp filter")


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_bounding(mask):
    """Drop every capability outside ``mask`` from the bounding set (needs CAP_SETPCAP: do it first)."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        if not mask >> cap & 1:
            prctl(PR_CAPBSET_DROP, cap)


def set_caps(mask):
    """Set permitted, effective and inheritable to ``mask`` and clear the ambient set."""
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = data[i].inheritable = word
    _check(libc.capset(ctypes.byref(header), data), "capset")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def become(proc):
    """Switch user, capabilities and no-new-privs, then chdir to the workdir. Returns the env."""
    uid, gid, extra, home = resolve_user(proc.get("user", ""), proc.get("groups", ()))
    env = list(proc["env"])
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={home}")
    cwd = proc.get("cwd") or "/"
    if not os.path.isdir(cwd):
        os.makedirs(cwd, exist_ok=True)
        os.chown(cwd, uid, gid)
    seccomp = proc.get("seccomp")
    nnp = proc.get("no_new_privileges")
    if seccomp and not nnp:
        # Without no-new-privileges, installing a filter needs CAP_SYS_ADMIN: do it before the
        # capabilities go (runc's order); the filter allows what follows (Docker's profile does).
        load_seccomp(seccomp)
    drop_bounding(proc["caps"])
    if uid != 0:
        prctl(PR_SET_KEEPCAPS, 1)
    os.setgroups(extra)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    set_caps(proc["caps"])
    if nnp:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        if seccomp:
            load_seccomp(seccomp)  # as late as possible: few syscalls left before the exec
    os.chdir(cwd)
    return env


def exec_workload(args, env, sync):
    """Exec ``args`` searching the container's PATH (as execvp does); on failure report and exit
    like a shell: 127 when nothing was found, 126 when found but not executable."""
    environ = dict(e.split("=", 1) for e in env)
    name = args[0]
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in environ.get("PATH", "/usr/bin:/bin").split(":")]
    last = None
    for path in candidates:
        try:
            os.execve(path, args, environ)
        except OSError as exc:
            if last is None or exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                last = exc
    code = 127 if last.errno in (errno.ENOENT, errno.ENOTDIR) else 126
    what = "executable file not found in $PATH" if code == 127 else os.strerror(last.errno)
    report_error(sync, code, f"exec: {name!r}: {what}")
    os._exit(code)


def report(sync, line):
    if sync is not None:
        try:
            os.write(sync, (line.replace("\n", " ") + "\n").encode())
        except OSError:
            pass


def report_error(sync, code, message):
    report(sync, f"error {code} {message}")


def join_cgroups(paths):
    for path in paths:
        with open(path, "w") as f:
            f.write("0")


def run_init(child):
    """Stay as pid 1: forward signals to ``child``, reap every zombie, exit with its status."""
    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGWINCH):
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)


def reset_signals():
    """Undo what Python (SIGPIPE, SIGXFSZ ignored) and the waiter's background job (SIGINT,
    SIGQUIT ignored) did to dispositions, which an exec would otherwise pass on."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
                signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def run_mode(spec):
    sync = spec["sync_fd"]
    os.set_inheritable(sync, False)
    reset_signals()
    try:
        report(sync, f"pid {os.readlink('/proc/self')}")
        if spec.get("tty"):
            # fds 0-2 are the slave of the container's pty: make it our controlling terminal
            os.setsid()
            fcntl.ioctl(0, TIOCSCTTY, 0)
        join_cgroups(spec["cgroup_procs"])
        net = spec["network"]
        if net["mode"] == "path":
            setns(net["path"], CLONE_NEWNET)
        elif net["mode"] == "none":
            unshare(CLONE_NEWNET)
        unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC)
        if net["mode"] == "none":
            loopback_up()
        # In the container's new network and IPC namespaces, but still with the host's /proc (its
        # /proc/sys/net and kernel.shm* are those of the namespaces of whoever opens them), before
        # the container's /proc/sys is made read-only (runc's order).
        for key, value in spec.get("sysctls", ()):
            write_sysctl(key, value)
        set_limits(spec.get("rlimits", ()), spec.get("oom_score_adj", 0))
        mount("", "/", "", MS_FLAGS["rec"] | MS_FLAGS["private"])
        rootfs = spec["rootfs"]
        root = rootfs["target"]
        mount("overlay", root, "overlay", 0,
              f"lowerdir={':'.join(rootfs['lower'])},upperdir={rootfs['upper']},workdir={rootfs['work']}")
        for op in spec["ops"]:
            apply_op(root, op)
        if spec.get("hostname"):
            sethostname(spec["hostname"])
        pivot_root(root)
        if spec.get("readonly_rootfs"):
            # the root mount only: /dev, /proc, volumes, tmpfs mounts and resolv.conf stay as they were
            mount("", "/", "", MS_FLAGS["bind"] | MS_FLAGS["remount"] | MS_FLAGS["ro"])
        proc = spec["process"]
        env = become(proc)
        # The container never outlives its waiter (whose exit status runtimed relies on); set after
        # become() because a change of credentials clears it. It survives the exec.
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (SetupError, OSError, ValueError) as exc:
        report_error(sync, 126, f"container setup: {exc}")
        os._exit(126)
    if spec.get("init"):
        child = os.fork()
        if child == 0:
            exec_workload(proc["args"], env, sync)
        os.close(sync)
        run_init(child)
    exec_workload(proc["args"], env, sync)


def exec_mode(spec):
    sync = spec.get("sync_fd")
    if sync is not None:
        os.set_inheritable(sync, False)
    reset_signals()
    try:
        target = spec["target_pid"]
        fds = {ns: os.open(f"/proc/{target}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in spec["namespaces"]}
        join_cgroups(spec["cgroup_procs"])
        for ns in spec["namespaces"]:
            _check(libc.setns(fds[ns], NS_FLAGS[ns]), f"setns {ns} of pid {target}")
            os.close(fds[ns])
    except (SetupError, OSError) as exc:
        report_error(sync, 126, f"exec setup: {exc}")
        os._exit(126)
    child = os.fork()
    if child == 0:
        try:
            if spec.get("tty"):
                # fds 0-2 are the slave of the exec's own pty (`exec -t`): our controlling terminal
                os.setsid()
                fcntl.ioctl(0, TIOCSCTTY, 0)
            set_limits(spec.get("rlimits", ()), spec.get("oom_score_adj", 0))
            env = become(spec["process"])
        except (SetupError, OSError, ValueError) as exc:
            report_error(sync, 126, f"exec setup: {exc}")
            os._exit(126)
        exec_workload(spec["process"]["args"], env, sync)
    if sync is not None:
        os.close(sync)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _f: os.kill(child, signum))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


def main():
    with open(sys.argv[1], "rb") as f:
        spec = marshal.load(f)
    if spec["mode"] == "run":
        run_mode(spec)
    elif spec["mode"] == "exec":
        exec_mode(spec)
    else:
        sys.stderr.write(f"init: unknown mode {spec['mode']!r}\n")
        os._exit(2)


if __name__ == "__main__":
    main()
