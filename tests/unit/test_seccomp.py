"""The seccomp profile model: Docker's default profile resolved per capability and architecture,
Docker-format profiles parsed with clear errors, and compiled programs cached and well formed."""

from __future__ import annotations

import json

import pytest

from agent_runtime import capabilities, seccomp
from agent_runtime.errors import InvalidArgument

AMD64 = seccomp.Host("x86_64", "6.1.0")
DEFAULT_CAPS = list(capabilities.DOCKER_DEFAULT)


def allowed(rules) -> set[str]:
    return {n for r in rules if r.action == "SCMP_ACT_ALLOW" and not r.args for n in r.names}


def test_default_profile_for_a_default_container():
    arches, rules = seccomp.resolve(seccomp.default_profile(), DEFAULT_CAPS, AMD64)
    assert arches == ["x86_64", "x86", "x32"]
    names = allowed(rules)
    assert {"read", "execve", "arch_prctl", "chroot", "ptrace"} <= names      # ptrace: kernel >= 4.8
    assert not {"unshare", "mount", "setns", "clone3", "bpf", "reboot", "kexec_load"} & names
    clone = [r for r in rules if r.names == ("clone",)]
    assert [(a.index, a.value, a.op) for r in clone for a in r.args] == [(0, 0x7E020000, "SCMP_CMP_MASKED_EQ")]
    assert [r.errno for r in rules if r.names == ("clone3",)] == [38]


def test_cap_sys_admin_allows_namespaces_and_arm64_gets_its_syscalls():
    _, rules = seccomp.resolve(seccomp.default_profile(), DEFAULT_CAPS + ["SYS_ADMIN"], AMD64)
    assert {"unshare", "mount", "clone", "clone3", "setns"} <= allowed(rules)
    assert not [r for r in rules if r.names == ("clone3",) and r.action == "SCMP_ACT_ERRNO"]
    arches, rules = seccomp.resolve(seccomp.default_profile(), ["CHOWN"], seccomp.Host("aarch64", "6.1"))
    assert arches == ["aarch64", "arm"]
    assert "set_tls" in allowed(rules) and "arch_prctl" not in allowed(rules) and "chroot" not in allowed(rules)
    _, rules = seccomp.resolve(seccomp.default_profile(), DEFAULT_CAPS, seccomp.Host("x86_64", "4.4.0"))
    assert "ptrace" not in allowed(rules)


def test_docker_format_profile_parses():
    text = json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                       "architectures": ["SCMP_ARCH_X86_64"],
                       "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                    {"name": "personality", "action": "SCMP_ACT_ALLOW",
                                     "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
                                     "includes": {"caps": ["CAP_SYS_ADMIN"], "minKernel": "4.8"}}]})
    p = seccomp.parse_profile(text)
    assert p.architectures == ("x86_64",) and p.rules[1].names == ("personality",)
    assert p.rules[1].include_caps == ("CAP_SYS_ADMIN",) and p.rules[1].args[0].value == 8


@pytest.mark.parametrize("text, match", [
    ("[]", "neither .unconfined. nor a JSON profile"),
    ("{", "not valid JSON"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["x86_64"]}', "is not an architecture"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"], "archMap": [{}]}', "use either"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}', "no syscall names"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
     '"args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}', "not an integer"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
     '"args": [{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}]}]}', "unknown comparison"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
     '"includes": {"minKernel": "new"}}]}', "not a kernel version"),
])
def test_bad_profiles_name_what_is_wrong(text, match):
    with pytest.raises(InvalidArgument, match=match):
        seccomp.validate(text)


def test_unconfined_has_no_program_and_programs_are_cached():
    assert seccomp.program("unconfined", DEFAULT_CAPS) is None
    bpf = seccomp.program("", DEFAULT_CAPS, AMD64)
    assert len(bpf) % 8 == 0 and 100 < len(bpf) // 8 < 4096              # sock_filter[], BPF_MAXINSNS
    assert seccomp.program("", list(reversed(DEFAULT_CAPS)), AMD64) is bpf
    assert seccomp.program("", DEFAULT_CAPS + ["SYS_ADMIN"], AMD64) != bpf


def _syscalls_under(bpf: bytes, numbers: list[int]) -> list[str]:
    """Install ``bpf`` in a forked child (no-new-privileges: no root needed) and return, per
    syscall number, "ok" or the errno name it failed with (called with zero arguments)."""
    import ctypes
    import errno
    import os
    libc = ctypes.CDLL(None, use_errno=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            class Prog(ctypes.Structure):
                _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
            buf = ctypes.create_string_buffer(bpf, len(bpf))
            prog = Prog(len(bpf) // 8, ctypes.addressof(buf))
            out = []
            if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.c_void_p(ctypes.addressof(prog)), 0, 0):
                out = ["install failed"]
            for nr in numbers:
                ret = libc.syscall(nr, 0, 0, 0, 0, 0)
                out.append("ok" if ret >= 0 or ctypes.get_errno() not in (errno.EPERM, errno.ENOSYS)
                           else errno.errorcode[ctypes.get_errno()])
            os.write(w, " ".join(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        return f.read().split(" ")


@pytest.mark.skipif(seccomp.Host.current().machine != "x86_64", reason="x86-64 syscall numbers")
def test_default_filter_in_the_kernel_eperm_for_denied_enosys_for_newer_syscalls():
    bpf = seccomp.program("", DEFAULT_CAPS)
    # getpid, unshare, mount, clone3, fchmodat2 (newer than the profile), 999 (no such syscall yet)
    assert _syscalls_under(bpf, [39, 272, 165, 435, 452, 999]) == ["ok", "EPERM", "EPERM", "ENOSYS", "ENOSYS",
                                                                   "ENOSYS"]
    # a permissive profile gets no stub: everything the kernel has is allowed
    permissive = seccomp.program('{"defaultAction": "SCMP_ACT_ALLOW"}', DEFAULT_CAPS)
    assert _syscalls_under(permissive, [39, 999]) == ["ok", "ENOSYS"]   # 999: the kernel's own ENOSYS
