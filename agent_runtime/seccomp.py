"""Seccomp filters for containers: profiles in Docker's JSON format, compiled to BPF by libseccomp.

A container that is not privileged runs under a seccomp filter, as with Docker:

- ``ContainerSpec.seccomp`` empty: Docker's default profile (``seccomp_default``);
- ``"unconfined"``: no filter (so is ``privileged``);
- otherwise the text of a profile in Docker's format (``docker run --security-opt seccomp=FILE``
  sends the file's content; so do ``shoal run`` and ``shoal service create``).

``parse_profile`` checks a profile (pure; InvalidArgument names what is wrong). ``program(profile,
caps)`` resolves it for this host and the container's capabilities, as dockerd does (rules whose
``includes``/``excludes`` do not match are left out), and compiles it with libseccomp
(libseccomp.so.2, through ctypes) into the classic BPF program the kernel takes. The program, a
few KiB of bytes, goes to ``init.py`` in the container's spec; init installs it with
``prctl(PR_SET_SECCOMP)`` just before it drops its capabilities (or, with no-new-privileges,
last before exec), as runc does. Programs are cached per (profile, capabilities): compiling costs
a few milliseconds, a container start should not.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import struct
import threading
from dataclasses import dataclass, field

from agent_runtime import seccomp_default as default
from agent_runtime.errors import InvalidArgument, ShoalRuntimeError

log = logging.getLogger(__name__)

UNCONFINED = "unconfined"
MAX_PROFILE_BYTES = 1 << 20
BPF_MAXINSNS = 4096      # the kernel's limit on one classic BPF program
EPERM = 1

# libseccomp's action values (seccomp.h): ERRNO and TRACE carry a 16-bit value.
_ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
            "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000,
            "SCMP_ACT_TRACE": 0x7FF00000, "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
_WITH_VALUE = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
# uname's machine -> Go's GOARCH (the names Docker's includes/excludes use)
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "i386": "386", "armv7l": "arm",
           "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64"}


@dataclass(frozen=True)
class Arg:
    """One argument comparison: ``op`` is a SCMP_CMP_* name; MASKED_EQ compares arg & value == value_two."""

    index: int
    value: int
    op: str
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: str
    errno: int | None = None
    args: tuple[Arg, ...] = ()
    include_caps: tuple[str, ...] = ()
    include_arches: tuple[str, ...] = ()
    include_kernel: str = ""
    exclude_caps: tuple[str, ...] = ()
    exclude_arches: tuple[str, ...] = ()
    exclude_kernel: str = ""


@dataclass(frozen=True)
class Profile:
    default_action: str
    default_errno: int | None = None
    architectures: tuple[str, ...] = ()          # libseccomp names; () = the native one only
    arch_map: tuple[tuple[str, tuple[str, ...]], ...] = ()
    rules: tuple[Rule, ...] = field(default=())


# ---- profiles ------------------------------------------------------------------------------------

@functools.cache
def default_profile() -> Profile:
    """Docker's default profile (see ``seccomp_default``), built on first use."""
    rules = [Rule(tuple(default.ALWAYS), "SCMP_ACT_ALLOW"),
             Rule(("socket",), "SCMP_ACT_ALLOW", args=(Arg(0, default.AF_VSOCK, "SCMP_CMP_NE"),))]
    rules += [Rule(("personality",), "SCMP_ACT_ALLOW", args=(Arg(0, p, "SCMP_CMP_EQ"),))
              for p in default.PERSONALITIES]
    for names, (kind, value) in default.CONDITIONAL:
        cond = {"cap": {"include_caps": (value,)}, "arch": {"include_arches": value},
                "kernel": {"include_kernel": value}}[kind]
        rules.append(Rule(tuple(names.split()), "SCMP_ACT_ALLOW", **cond))
    # Without CAP_SYS_ADMIN: clone only without namespace flags (its flags are the 2nd argument on
    # s390), and clone3, whose flags seccomp cannot see, fails with ENOSYS so that libc falls back
    # to clone. This, with unshare and setns needing CAP_SYS_ADMIN, keeps user namespaces out.
    flags = default.CLONE_NAMESPACE_FLAGS
    rules += [Rule(("clone",), "SCMP_ACT_ALLOW", args=(Arg(0, flags, "SCMP_CMP_MASKED_EQ"),),
                   exclude_caps=("CAP_SYS_ADMIN",), exclude_arches=("s390", "s390x")),
              Rule(("clone",), "SCMP_ACT_ALLOW", args=(Arg(1, flags, "SCMP_CMP_MASKED_EQ"),),
                   include_arches=("s390", "s390x"), exclude_caps=("CAP_SYS_ADMIN",)),
              Rule(("clone3",), "SCMP_ACT_ERRNO", errno=default.ENOSYS, exclude_caps=("CAP_SYS_ADMIN",))]
    return Profile(default_action="SCMP_ACT_ERRNO", default_errno=EPERM,
                   arch_map=tuple(default.ARCH_MAP.items()), rules=tuple(rules))


def _int(value, where: str, bits: int = 64) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** bits:
        raise InvalidArgument(f"seccomp profile: {where}: {value!r} is not an integer in 0..2^{bits}-1")
    return value


def _strings(value, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"seccomp profile: {where}: expected a list of strings")
    return tuple(value)


def _action(value, where: str) -> str:
    if value not in _ACTIONS:
        raise InvalidArgument(f"seccomp profile: {where}: unknown action {value!r} "
                              f"(one of {', '.join(sorted(_ACTIONS))})")
    return value


def _filter(obj, where: str) -> dict:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidArgument(f"seccomp profile: {where}: expected an object")
    out = {"caps": _strings(obj.get("caps"), f"{where}.caps"),
           "arches": _strings(obj.get("arches"), f"{where}.arches"), "kernel": obj.get("minKernel") or ""}
    if out["kernel"] and _kernel_tuple(out["kernel"]) is None:
        raise InvalidArgument(f"seccomp profile: {where}.minKernel: {out['kernel']!r} is not a kernel version")
    return out


def parse_profile(text: str) -> Profile:
    """A profile in Docker's JSON format (``defaultAction``, ``architectures`` or ``archMap``,
    ``syscalls`` with ``names``, ``action``, ``errnoRet``, ``args``, ``includes``, ``excludes``).
    Raises InvalidArgument naming the first thing that is wrong."""
    if len(text.encode()) > MAX_PROFILE_BYTES:
        raise InvalidArgument(f"seccomp profile: larger than {MAX_PROFILE_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"seccomp profile: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("seccomp profile: expected a JSON object")
    default_action = _action(data.get("defaultAction"), "defaultAction")
    errno = data.get("defaultErrnoRet")
    if errno is not None:
        _int(errno, "defaultErrnoRet", 16)
    if data.get("architectures") and data.get("archMap"):
        raise InvalidArgument("seccomp profile: 'architectures' and 'archMap' were specified, use either "
                              "'architectures' or 'archMap'")
    arches = tuple(_arch_name(a) for a in _strings(data.get("architectures"), "architectures"))
    arch_map = []
    for i, entry in enumerate(data.get("archMap") or []):
        if not isinstance(entry, dict):
            raise InvalidArgument(f"seccomp profile: archMap[{i}]: expected an object")
        arch_map.append((_arch_name(entry.get("architecture")),
                         tuple(_arch_name(a) for a in _strings(entry.get("subArchitectures"),
                                                                f"archMap[{i}].subArchitectures"))))
    rules = []
    syscalls = data.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise InvalidArgument("seccomp profile: syscalls: expected a list")
    for i, s in enumerate(syscalls):
        where = f"syscalls[{i}]"
        if not isinstance(s, dict):
            raise InvalidArgument(f"seccomp profile: {where}: expected an object")
        if s.get("name") and s.get("names"):
            raise InvalidArgument(f"seccomp profile: {where}: 'name' and 'names' were specified, use 'names'")
        names = _strings(s.get("names"), f"{where}.names") or ((s["name"],) if isinstance(s.get("name"), str) else ())
        if not names:
            raise InvalidArgument(f"seccomp profile: {where}: no syscall names")
        args = []
        for j, a in enumerate(s.get("args") or []):
            if not isinstance(a, dict):
                raise InvalidArgument(f"seccomp profile: {where}.args[{j}]: expected an object")
            if a.get("op") not in _OPS:
                raise InvalidArgument(f"seccomp profile: {where}.args[{j}].op: unknown comparison {a.get('op')!r}")
            index = a.get("index", 0)
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
                raise InvalidArgument(f"seccomp profile: {where}.args[{j}].index: {index!r} is not 0..5")
            args.append(Arg(index, _int(a.get("value", 0), f"{where}.args[{j}].value"), a["op"],
                            _int(a.get("valueTwo", 0), f"{where}.args[{j}].valueTwo")))
        errno_ret = s.get("errnoRet")
        if errno_ret is not None:
            _int(errno_ret, f"{where}.errnoRet", 16)
        inc, exc = _filter(s.get("includes"), f"{where}.includes"), _filter(s.get("excludes"), f"{where}.excludes")
        rules.append(Rule(names, _action(s.get("action"), f"{where}.action"), errno_ret, tuple(args),
                          inc.get("caps", ()), inc.get("arches", ()), inc.get("kernel", ""),
                          exc.get("caps", ()), exc.get("arches", ()), exc.get("kernel", "")))
    return Profile(default_action, errno, arches, tuple(arch_map), tuple(rules))


def _arch_name(value) -> str:
    """``SCMP_ARCH_X86_64`` -> ``x86_64`` (libseccomp's name)."""
    if not isinstance(value, str) or not value.startswith("SCMP_ARCH_"):
        raise InvalidArgument(f"seccomp profile: {value!r} is not an architecture (SCMP_ARCH_...)")
    return value[len("SCMP_ARCH_"):].lower()


def _kernel_tuple(text: str) -> tuple[int, ...] | None:
    parts = text.split("-")[0].split(".")[:3]
    if not all(p.isdigit() for p in parts[:2]) or len(parts) < 2:
        return None
    return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts)


# ---- resolving for a host and a container ----------------------------------------------------------

@dataclass(frozen=True)
class Host:
    """What a profile's includes/excludes are checked against."""

    machine: str          # uname -m
    kernel: str           # uname -r

    @property
    def goarch(self) -> str:
        return _GOARCH.get(self.machine, self.machine)

    @classmethod
    def current(cls) -> "Host":
        u = os.uname()
        return cls(u.machine, u.release)


def _kernel_at_least(host: Host, version: str) -> bool:
    have, want = _kernel_tuple(host.kernel) or (0,), _kernel_tuple(version) or (0,)
    return have >= want


def applies(rule: Rule, caps: frozenset[str], host: Host) -> bool:
    """Docker's selection: an excluded arch, any excluded capability held, or a kernel at least
    the excluded version drops the rule; so does a missing included capability (all must be held),
    an arch not among the included ones, or a kernel older than the included version."""
    if host.goarch in rule.exclude_arches or any(c in caps for c in rule.exclude_caps):
        return False
    if rule.exclude_kernel and _kernel_at_least(host, rule.exclude_kernel):
        return False
    if rule.include_arches and host.goarch not in rule.include_arches:
        return False
    if not all(c in caps for c in rule.include_caps):
        return False
    return not rule.include_kernel or _kernel_at_least(host, rule.include_kernel)


def resolve(profile: Profile, cap_names: list[str], host: Host) -> tuple[list[str], list[Rule]]:
    """(architectures, rules) of ``profile`` for a container holding ``cap_names`` (``CHOWN``...)."""
    caps = frozenset("CAP_" + c for c in cap_names)
    native = _native_arch(host)
    arches = list(profile.architectures)
    for arch, subs in profile.arch_map:
        if arch == native:
            arches = [arch, *subs]
    return arches, [r for r in profile.rules if applies(r, caps, host)]


def _native_arch(host: Host) -> str:
    return {"i686": "x86", "i386": "x86", "armv7l": "arm", "armv6l": "arm"}.get(host.machine, host.machine)


# ---- compiling with libseccomp ---------------------------------------------------------------------

# ctypes is imported only where libseccomp is used (runtimed): the CLI imports this module through
# agent_runtime.spec to check profiles, and its start-up time counts.

@functools.cache
def _arg_cmp():
    import ctypes

    class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                    ("datum_b", ctypes.c_uint64)]
    return ArgCmp


@functools.cache
def _lib():
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise ShoalRuntimeError(f"seccomp: cannot load libseccomp ({name}): {exc}; install libseccomp2 "
                                "(make install) or run containers with --security-opt seccomp=unconfined") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_arg_cmp()))
    lib.seccomp_syscall_resolve_name_arch.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    return lib


NR_SCMP_ERROR = -1


def _action_value(action: str, errno: int | None) -> int:
    base = _ACTIONS[action]
    return base | ((EPERM if errno is None else errno) & 0xFFFF) if action in _WITH_VALUE else base


def compile_rules(default_action: int, arches: list[str], rules: list[Rule]) -> bytes:
    """The BPF program (struct sock_filter[]) of ``rules`` over ``arches``, via libseccomp."""
    lib = _lib()
    ctx = lib.seccomp_init(default_action)
    if not ctx:
        raise ShoalRuntimeError("seccomp: seccomp_init failed")
    try:
        native = lib.seccomp_arch_native()
        for arch in arches:
            token = lib.seccomp_arch_resolve_name(arch.encode())
            if token == 0:
                raise InvalidArgument(f"seccomp profile: architecture {arch!r} is unknown to libseccomp")
            if token == native:
                continue
            rc = lib.seccomp_arch_add(ctx, token)
            if rc not in (0, -17):  # -EEXIST: already there
                raise ShoalRuntimeError(f"seccomp: adding architecture {arch}: {os.strerror(-rc)}")
        for rule in rules:
            action = _action_value(rule.action, rule.errno)
            if action == default_action:
                continue  # libseccomp refuses a rule that repeats the default
            groups = _arg_groups(rule.args)
            for name in rule.names:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == NR_SCMP_ERROR:
                    log.debug("seccomp: syscall %s is unknown to libseccomp, skipped", name)
                    continue
                for group in groups:
                    cmp = _arg_cmp()
                    cmps = (cmp * max(len(group), 1))(*[cmp(a.index, _OPS[a.op], a.value, a.value_two) for a in group])
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(group), cmps)
                    if rc < 0:
                        raise InvalidArgument(f"seccomp profile: rule for {name}: {os.strerror(-rc)}")
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise ShoalRuntimeError(f"seccomp: exporting the filter: {os.strerror(-rc)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            bpf = b"".join(chunks)
        finally:
            os.close(fd)
        if default_action not in (_ACTIONS["SCMP_ACT_ALLOW"], _ACTIONS["SCMP_ACT_LOG"]):
            bpf = _enosys_stub(lib, arches or [_native_name(lib)], rules) + bpf
        if len(bpf) // 8 > BPF_MAXINSNS:
            raise InvalidArgument(f"seccomp profile: compiles to {len(bpf) // 8} BPF instructions; the kernel "
                                  f"takes at most {BPF_MAXINSNS} in one filter")
        return bpf
    finally:
        lib.seccomp_release(ctx)


# classic BPF (linux/filter.h) and the seccomp_data offsets of the syscall number and the arch
_LD_ABS, _JEQ, _JGT, _JSET, _JA, _RET = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06
_NR, _ARCH = 0, 4
_X32_BIT = 0x40000000
_AUDIT_ARCH_X86_64 = 0xC000003E


def _native_name(lib) -> str:
    native = lib.seccomp_arch_native()
    return next((n for n in ("x86_64", "aarch64", "x86", "arm", "s390x", "riscv64", "ppc64le")
                 if lib.seccomp_arch_resolve_name(n.encode()) == native), "x86_64")


def _enosys_stub(lib, arches: list[str], rules: list[Rule]) -> bytes:
    """runc's answer to new syscalls, as BPF put before libseccomp's program: a syscall whose
    number is above every syscall the profile names (on that architecture) fails with ENOSYS, not
    the default EPERM, so that a newer libc falls back to the older call it knows (glibc's
    fchmodat -> fchmodat2, clone3 -> clone) instead of failing. Numbers up to the highest named
    one keep the profile's default action."""
    names = {n for r in rules for n in r.names}
    tops: dict[str, int] = {}
    for arch in arches:
        token = lib.seccomp_arch_resolve_name(arch.encode())
        numbers = [lib.seccomp_syscall_resolve_name_arch(token, n.encode()) for n in names]
        tops[arch] = max([n for n in numbers if n >= 0], default=-1)
    prog: list[tuple] = [(_LD_ABS, None, None, _ARCH)]
    sections: list[tuple[str, int]] = []
    for arch in arches:
        if arch == "x32" or tops[arch] < 0:
            continue
        audit = lib.seccomp_arch_resolve_name(arch.encode())
        prog.append((_JEQ, f"arch-{arch}", None, audit))
        sections.append((arch, audit))
    prog.append((_JA, None, None, "end"))
    for arch, audit in sections:
        prog += [("label", f"arch-{arch}"), (_LD_ABS, None, None, _NR)]
        if audit == _AUDIT_ARCH_X86_64:     # x32 syscalls come as x86-64 with bit 30 set
            prog.append((_JSET, "x32" if tops.get("x32", -1) >= 0 else "end", None, _X32_BIT))
        prog.append((_JGT, "enosys", "end", tops[arch]))
        if audit == _AUDIT_ARCH_X86_64 and tops.get("x32", -1) >= 0:
            prog += [("label", "x32"), (_JGT, "enosys", "end", tops["x32"])]
    prog += [("label", "enosys"), (_RET, None, None, _ACTIONS["SCMP_ACT_ERRNO"] | default.ENOSYS)]
    prog.append(("label", "end"))
    labels, code = {}, []
    for ins in prog:
        if ins[0] == "label":
            labels[ins[1]] = len(code)
        else:
            code.append(ins)
    labels["end"] = len(code)
    out = bytearray()
    for i, (op, jt, jf, k) in enumerate(code):
        rel = (lambda target: 0 if target is None else labels[target] - i - 1)
        if op == _JA:
            out += struct.pack("=HBBI", op, 0, 0, labels[k] - i - 1)
        else:
            out += struct.pack("=HBBI", op, rel(jt), rel(jf), k)
    return bytes(out)


def _arg_groups(args: tuple[Arg, ...]) -> list[tuple[Arg, ...]]:
    """Conditions of one rule: all together (AND) when each argument appears once; one rule per
    condition (OR) when an argument is compared more than once, as runc does."""
    if len({a.index for a in args}) == len(args):
        return [args]
    return [(a,) for a in args]


_cache: dict[tuple[str, tuple[str, ...]], bytes] = {}
_cache_lock = threading.Lock()


def program(profile_text: str, cap_names: list[str], host: Host | None = None) -> bytes | None:
    """The BPF program for a container: ``profile_text`` is ``ContainerSpec.seccomp`` ("" for the
    default profile, "unconfined" for none), ``cap_names`` its capabilities. None when unconfined."""
    if profile_text == UNCONFINED:
        return None
    key = (hashlib.sha256(profile_text.encode()).hexdigest(), tuple(sorted(cap_names)))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    profile = parse_profile(profile_text) if profile_text else default_profile()
    arches, rules = resolve(profile, cap_names, host or Host.current())
    bpf = compile_rules(_action_value(profile.default_action, profile.default_errno), arches, rules)
    with _cache_lock:
        if len(_cache) > 256:
            _cache.clear()
        _cache[key] = bpf
    return bpf


def validate(profile_text: str) -> None:
    """InvalidArgument unless ``profile_text`` is "", "unconfined" or a profile ``parse_profile`` takes."""
    if profile_text and profile_text != UNCONFINED:
        if not profile_text.lstrip().startswith("{"):
            raise InvalidArgument(f"seccomp: {profile_text[:40]!r} is neither 'unconfined' nor a JSON profile")
        parse_profile(profile_text)
