"""Docker's runtime options (--dns*, --host, --read-only, --sysctl, --ulimit, --oom-score-adj) from
each door: the grammar (common.hostopts), the service flags, the ControlAPI check, the Compose keys,
the worker's task -> runtime spec mapping, and the runtime's own spec check and name files."""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from agent_runtime import dns
from agent_runtime.errors import InvalidArgument
from agent_runtime.network.plan import LocalContainer, LocalEndpoint
from agent_runtime.spec import ContainerSpec, Ulimit, validate_spec
from common import hostopts
from manager.controlapi.service_spec import SpecError, validate_spec as validate_service
from proto import objects_pb2 as pb
from shoal.cli.service_flags import FlagError, build_spec, update_spec
from shoal.stack import StackFileError, load_stack_sources, to_service_specs
from worker.executor import container_spec


# ---- the grammar: Docker's values and words ------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("nofile=1024:2048", ("nofile", 1024, 2048)), ("nofile=1024", ("nofile", 1024, 1024)),
    ("core=-1", ("core", -1, -1)), ("nproc=10:20", ("nproc", 10, 20)),
])
def test_ulimit(text, expected):
    assert hostopts.parse_ulimit(text) == expected


@pytest.mark.parametrize("text, error", [
    ("nofile", "invalid ulimit argument: nofile"),
    ("files=1", "invalid ulimit type: files"),
    ("nofile=1:2:3", "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"),
    ("nofile=2048:1024", "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
    ("nofile=lots", 'strconv.ParseInt: parsing "lots": invalid syntax'),
])
def test_bad_ulimit(text, error):
    with pytest.raises(ValueError) as info:
        hostopts.parse_ulimit(text)
    assert str(info.value) == error


@pytest.mark.parametrize("key", ["net.core.somaxconn", "net.ipv4.ip_forward", "kernel.shmmax", "kernel.sem",
                                 "fs.mqueue.msg_max", "kernel.shm_rmid_forced"])
def test_namespaced_sysctls_are_allowed(key):
    assert hostopts.parse_sysctl(f"{key}=1") == (key, "1")


@pytest.mark.parametrize("text, key", [("kernel.hostname=x", "kernel.hostname"), ("vm.swappiness=1", "vm.swappiness"),
                                       ("net.=1", "net."), ("fs.file-max=9", "fs.file-max")])
def test_other_sysctls_are_refused(text, key):
    with pytest.raises(ValueError, match=f"^sysctl '{key}' is not allowed$"):
        hostopts.parse_sysctl(text)


def test_hosts_dns_and_oom_grammar():
    assert hostopts.parse_extra_host("db:192.0.2.1") == "192.0.2.1 db"
    assert hostopts.parse_extra_host("v6:2001:db8::1") == "2001:db8::1 v6"
    assert hostopts.parse_extra_host("v6=[2001:db8::1]") == "2001:db8::1 v6"
    with pytest.raises(ValueError, match='bad format for add-host: "db"'):
        hostopts.parse_extra_host("db")
    with pytest.raises(ValueError, match='invalid IP address in add-host: "nowhere"'):
        hostopts.parse_extra_host("db:nowhere")
    assert hostopts.check_ip("192.0.2.53") == "192.0.2.53"
    with pytest.raises(ValueError, match="IP address is not correctly formatted: 1.2.3"):
        hostopts.check_ip("1.2.3")
    assert hostopts.check_dns_search("example.org") == "example.org"
    assert hostopts.check_dns_search(".") == "."
    with pytest.raises(ValueError, match="-bad.org is not a valid domain"):
        hostopts.check_dns_search("-bad.org")
    hostopts.check_oom_score_adj(-1000)
    with pytest.raises(ValueError, match=r"Invalid value -1001, range for oom score adj is \[-1000, 1000\]"):
        hostopts.check_oom_score_adj(-1001)


# ---- service create/update flags ---------------------------------------------------------------

def test_create_flags_fill_swarmkits_fields():
    spec = build_spec("busybox", [], {
        "dns": ("192.0.2.53",), "dns_search": ("example.org",), "dns_option": ("ndots:2",),
        "host": ("db:192.0.2.10", "cache:192.0.2.11"), "read_only": True,
        "sysctl": ("net.core.somaxconn=1024",), "ulimit": ("nproc=10", "nofile=1024:2048", "nproc=20"),
        "oom_score_adj": -500, "name": "web"})
    c = spec.task.container
    assert list(c.dns_config.nameservers) == ["192.0.2.53"]
    assert list(c.dns_config.search) == ["example.org"] and list(c.dns_config.options) == ["ndots:2"]
    assert list(c.hosts) == ["192.0.2.10 db", "192.0.2.11 cache"]
    assert c.read_only and dict(c.sysctls) == {"net.core.somaxconn": "1024"} and c.oom_score_adj == -500
    assert [(u.name, u.soft, u.hard) for u in c.ulimits] == [("nofile", 1024, 2048), ("nproc", 20, 20)]
    validate_service(spec)


@pytest.mark.parametrize("opts, message", [
    ({"dns": ("nameserver",)}, 'invalid argument "nameserver" for "--dns" flag: IP address is not correctly formatted'),
    ({"host": ("db",)}, 'invalid argument "db" for "--host" flag: bad format for add-host: "db"'),
    ({"sysctl": ("vm.swappiness=1",)}, "sysctl 'vm.swappiness' is not allowed"),
    ({"ulimit": ("nofile=9:1",)}, "ulimit soft limit must be less than or equal to hard limit: 9 > 1"),
    ({"oom_score_adj": 2000}, 'invalid argument "2000" for "--oom-score-adj" flag: Invalid value 2000'),
    ({"log_driver": "syslog"}, 'invalid argument "syslog" for "--log-driver" flag: log driver \'syslog\' is not '
                               'available: Shoal nodes log with the json-file driver only'),
    ({"log_opt": ("compress=true",)}, "unknown log opt 'compress' for json-file log driver"),
    ({"log_opt": ("max-size=1",)}, "invalid max-size '1': a size of at least 4k"),
    ({"log_opt": ("max-size",)}, 'invalid argument "max-size" for "--log-opt" flag: expected KEY=VALUE'),
    ({"group": ("a:b",)}, 'invalid argument "a:b" for "--group" flag: expected a group name or GID'),
    ({"max_concurrent": 2}, "max-concurrent can only be used with replicated-job mode"),
    ({"health_start_interval": "-1s"}, '"--health-start-interval" flag: must not be negative'),
])
def test_bad_create_flags(opts, message):
    """The runtime options of this file and those of test_service_runtime_flags.py: one table."""
    with pytest.raises(FlagError) as info:
        build_spec("busybox", [], {"name": "web", **opts})
    assert message in str(info.value)


def test_update_add_and_rm_forms():
    spec = build_spec("busybox", [], {"dns": ("192.0.2.1", "192.0.2.2"), "dns_search": ("a.test",),
                                      "dns_option": ("ndots:1",), "host": ("db:192.0.2.10", "old:192.0.2.9"),
                                      "sysctl": ("net.core.somaxconn=1", "kernel.shmmni=9"),
                                      "ulimit": ("nofile=10", "nproc=5"), "read_only": True})
    new = update_spec(spec, {"dns_add": ("192.0.2.3",), "dns_rm": ("192.0.2.1",), "dns_search_add": ("b.test",),
                             "dns_search_rm": ("a.test",), "dns_option_rm": ("ndots:1",),
                             "dns_option_add": ("timeout:2",), "host_add": ("new:192.0.2.12",),
                             "host_rm": ("old",), "sysctl_rm": ("kernel.shmmni",),
                             "sysctl_add": ("net.core.somaxconn=2",), "ulimit_rm": ("nproc",),
                             "ulimit_add": ("nofile=20:30",), "read_only": False, "oom_score_adj": 100})
    c = new.task.container
    assert list(c.dns_config.nameservers) == ["192.0.2.2", "192.0.2.3"]
    assert list(c.dns_config.search) == ["b.test"] and list(c.dns_config.options) == ["timeout:2"]
    assert list(c.hosts) == ["192.0.2.10 db", "192.0.2.12 new"]
    assert dict(c.sysctls) == {"net.core.somaxconn": "2"}
    assert [(u.name, u.soft, u.hard) for u in c.ulimits] == [("nofile", 20, 30)]
    assert not c.read_only and c.oom_score_adj == 100
    assert list(spec.task.container.dns_config.nameservers) == ["192.0.2.1", "192.0.2.2"]   # a copy
    assert list(update_spec(spec, {"host_rm": ("db:192.0.2.10",)}).task.container.hosts) == ["192.0.2.9 old"]


def test_read_only_false_on_update_reaches_the_spec():
    """Go's `--read-only=false` must turn it off (a plain flag's =false would leave it unchanged)."""
    from shoal.cli.main import docker_bool_args
    from shoal.cli.services import service_update
    argv = docker_bool_args(service_update, ["--read-only=false", "web"])
    ctx = service_update.make_context("update", argv)
    assert ctx.params["read_only"] is False
    assert service_update.make_context("update", ["web"]).params["read_only"] is None


@pytest.mark.parametrize("argv, message", [
    (["service", "create", "--dns", "1.2.3", "busybox"], 'invalid argument "1.2.3" for "--dns" flag'),
    (["service", "create", "--read-only", "--ulimit", "nofile=9:1", "busybox"],
     "ulimit soft limit must be less than or equal to hard limit: 9 > 1"),
    (["service", "create", "--oom-score-adj", "-5000", "busybox"], "range for oom score adj"),
    (["run", "--add-host", "db", "busybox"], 'bad format for add-host: "db"'),
    (["run", "--sysctl", "kernel.panic=1", "busybox"], "sysctl 'kernel.panic' is not allowed"),
    (["run", "--ulimit", "nofile=x", "busybox"], 'invalid argument "nofile=x" for "--ulimit" flag'),
])
def test_cli_refuses_bad_values_before_anything_is_sent(argv, message, tmp_path, capsys, monkeypatch):
    from shoal.cli.main import run
    monkeypatch.setenv("SHOAL_HOST", f"unix://{tmp_path}/nothing.sock")   # nothing listens: no call is made
    assert run(argv) == 125
    assert message in capsys.readouterr().err


# ---- the ControlAPI refuses what the CLI would --------------------------------------------------

def _on_container(edit):
    return lambda spec: edit(spec.task.container)


@pytest.mark.parametrize("edit, message", [
    (_on_container(lambda c: c.dns_config.nameservers.append("x")),
     "invalid --dns: IP address is not correctly formatted: x"),
    (_on_container(lambda c: c.dns_config.search.append("a..b")), "invalid --dns-search: a..b is not a valid domain"),
    (_on_container(lambda c: c.hosts.append("db")), "invalid --host: invalid hosts entry 'db'"),
    (_on_container(lambda c: c.sysctls.update({"kernel.domainname": "x"})),
     "invalid --sysctl: sysctl 'kernel.domainname' is not allowed"),
    (_on_container(lambda c: c.ulimits.add(name="nofile", soft=5, hard=1)), "invalid --ulimit: ulimit soft limit"),
    (_on_container(lambda c: c.ulimits.add(name="bogus", soft=1, hard=1)),
     "invalid --ulimit: invalid ulimit type: bogus"),
    (_on_container(lambda c: (c.ulimits.add(name="nofile", soft=1, hard=1),
                             c.ulimits.add(name="nofile", soft=2, hard=2))),
     "invalid --ulimit: nofile is given more than once"),
    (_on_container(lambda c: setattr(c, "oom_score_adj", -2000)), "invalid --oom-score-adj: Invalid value -2000"),
    (lambda s: setattr(s.task.log_driver, "name", "fluentd"), "invalid --log-driver: log driver 'fluentd'"),
    (lambda s: s.task.log_driver.options.update({"tag": "x"}), "invalid --log-opt: unknown log opt 'tag'"),
    (lambda s: setattr(s, "max_concurrent", 2), "invalid --max-concurrent for mode replicated"),
    (lambda s: s.task.container.groups.append("a b"), "invalid --group 'a b'"),
    (lambda s: setattr(s.task.container.healthcheck, "start_interval", 0.0001), "invalid --health-start-interval"),
])
def test_controlapi_refuses_bad_values(edit, message):
    """The runtime options of this file and those of test_service_runtime_flags.py: one table."""
    spec = build_spec("busybox", [], {"name": "web"})
    edit(spec)
    with pytest.raises(SpecError, match=re.escape(message)):
        validate_service(spec)


# ---- Compose keys, converted as docker stack deploy converts them -------------------------------

def _load(text: str):
    return load_stack_sources([("stack.yml", textwrap.dedent(text))], {})


def test_compose_keys_convert():
    stack = _load("""\
        services:
          web:
            image: busybox
            dns: 192.0.2.53
            dns_search: [a.test, b.test]
            dns_opt: [ndots:2]
            extra_hosts: ["db:192.0.2.10", "v6=2001:db8::1"]
            read_only: true
            sysctls: [net.core.somaxconn=1024]
            ulimits:
              nproc: 65535
              nofile: {soft: 20000, hard: 40000}
            oom_score_adj: -100
          api:
            image: busybox
            extra_hosts: {db: 192.0.2.20}
            sysctls: {kernel.shmmax: "1000000"}
        """)
    specs = {s.annotations.name: s for s in to_service_specs(stack, "st")}
    c = specs["st_web"].task.container
    assert list(c.dns_config.nameservers) == ["192.0.2.53"]
    assert list(c.dns_config.search) == ["a.test", "b.test"] and list(c.dns_config.options) == ["ndots:2"]
    assert list(c.hosts) == ["192.0.2.10 db", "2001:db8::1 v6"]
    assert c.read_only and dict(c.sysctls) == {"net.core.somaxconn": "1024"} and c.oom_score_adj == -100
    assert [(u.name, u.soft, u.hard) for u in c.ulimits] == [("nofile", 20000, 40000), ("nproc", 65535, 65535)]
    a = specs["st_api"].task.container
    assert list(a.hosts) == ["192.0.2.20 db"] and dict(a.sysctls) == {"kernel.shmmax": "1000000"}
    for spec in specs.values():
        validate_service(spec)


@pytest.mark.parametrize("body, path, message", [
    ("dns: [not-an-ip]", "services.web.dns", "IP address is not correctly formatted: not-an-ip"),
    ("extra_hosts: [nohost]", "services.web.extra_hosts[0]", 'bad format for add-host: "nohost"'),
    ("sysctls: {vm.swappiness: 1}", "services.web.sysctls.vm.swappiness", "sysctl 'vm.swappiness' is not allowed"),
    ("ulimits: {nofile: {soft: 9, hard: 1}}", "services.web.ulimits.nofile", "ulimit soft limit must be less"),
    ("ulimits: {nofile: {soft: 9}}", "services.web.ulimits.nofile", "expected both soft and hard"),
    ("ulimits: {bogus: 1}", "services.web.ulimits.bogus", "invalid ulimit type: bogus"),
    ("oom_score_adj: 5000", "services.web.oom_score_adj", "at most 1000"),
    ("read_only: maybe", "services.web.read_only", ""),
    ("logging: {driver: syslog}", "services.web.logging.driver", "the 'syslog' logging driver is not available"),
    ("logging: {options: {max-file: lots}}", "services.web.logging.options.max-file", "invalid max-file 'lots'"),
    ("tty: sometimes", "services.web.tty", ""),
])
def test_bad_compose_values_name_the_key(body, path, message):
    with pytest.raises(StackFileError) as info:
        _load(f"services:\n  web:\n    image: busybox\n    {body}\n")
    assert path in str(info.value) and message in str(info.value)


# ---- the worker maps the task to the runtime's spec ---------------------------------------------

def test_task_to_runtime_spec():
    task = pb.Task(id="t1", service_id="s1", node_id="n1", slot=1)
    task.annotations.name = "web.1"
    c = task.spec.container
    c.image = "busybox"
    c.dns_config.nameservers.append("192.0.2.53")
    c.dns_config.search.append("a.test")
    c.dns_config.options.append("ndots:3")
    c.hosts.extend(["192.0.2.10 db db-alias", "2001:db8::1 v6"])
    c.read_only = True
    c.sysctls["net.core.somaxconn"] = "7"
    c.ulimits.add(name="nofile", soft=1, hard=2)
    c.oom_score_adj = 9
    spec = container_spec(task)
    assert (spec.dns, spec.dns_search, spec.dns_options) == (["192.0.2.53"], ["a.test"], ["ndots:3"])
    assert spec.extra_hosts == ["db:192.0.2.10", "db-alias:192.0.2.10", "v6:2001:db8::1"]
    assert spec.readonly_rootfs and spec.sysctls == {"net.core.somaxconn": "7"} and spec.oom_score_adj == 9
    assert spec.ulimits == [Ulimit(name="nofile", soft=1, hard=2)]
    validate_spec(spec)
    assert ContainerSpec.from_json(spec.to_json()) == spec


# ---- the runtime's spec check and its resolv.conf / hosts ---------------------------------------

@pytest.mark.parametrize("fields, message", [
    ({"dns": ["x"]}, "IP address is not correctly formatted"),
    ({"extra_hosts": ["db"]}, "bad format for add-host"),
    ({"sysctls": {"kernel.panic": "1"}}, "sysctl 'kernel.panic' is not allowed"),
    ({"sysctls": {"net.core.somaxconn": "1"}, "network": "host"}, "not allowed in host network namespace"),
    ({"ulimits": [Ulimit(name="nofile", soft=1, hard=1), Ulimit(name="nofile", soft=2, hard=2)]}, "more than once"),
    ({"oom_score_adj": 1001}, "range for oom score adj"),
    ({"dns_options": ["a b"]}, "not a resolv.conf option"),
])
def test_runtime_refuses_bad_options(fields, message):
    with pytest.raises(InvalidArgument, match=message):
        validate_spec(ContainerSpec(image="busybox", **fields))


def test_swarm_container_files_keep_the_embedded_dns_first(tmp_path: Path):
    lc = LocalContainer(id="c" * 64, name="web.1.x", hostname="web1", netns="ns",
                        endpoints=[LocalEndpoint(network_id="n1", ip="10.0.0.5", prefixlen=24, mac="02:42:0a:00:00:05",
                                                 aliases=("web",), host_if="v", ifname="eth0")],
                        dns=("192.0.2.53",), dns_search=("a.test",), dns_options=("timeout:2",),
                        extra_hosts=("db:192.0.2.10",))
    files = dns.container_files(tmp_path, lc)
    assert files["/etc/resolv.conf"].read_text() == ("nameserver 127.0.0.11\nsearch a.test\n"
                                                     "options ndots:0 timeout:2\n")
    hosts = files["/etc/hosts"].read_text().splitlines()
    assert hosts[2:] == ["192.0.2.10\tdb", "10.0.0.5\tweb1 web.1.x web"]
    lc.dns_options = ("ndots:3",)
    assert dns.container_files(tmp_path, lc)["/etc/resolv.conf"].read_text().endswith("options ndots:3\n")


def test_embedded_dns_forwards_to_the_containers_own_servers():
    """A name the embedded DNS does not own goes to the container's --dns servers, not the host's."""
    async def scenario():
        loop = asyncio.get_running_loop()
        asked = []

        class Upstream(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                request = DNSRecord.parse(data)
                asked.append(str(request.q.qname))
                reply = request.reply()
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.99"), ttl=5))
                self.transport.sendto(reply.pack(), addr)

        transport, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        resolver = dns.Resolver(upstreams=[("127.0.0.1", 1)])     # the "host's": nothing listens there
        resolver.upstreams_of["c1"] = [("127.0.0.1", port)]
        try:
            query = DNSRecord.question("example.test").pack()
            reply = DNSRecord.parse(await resolver.forward(query, "c1"))
            assert [str(r.rdata) for r in reply.rr] == ["192.0.2.99"] and asked == ["example.test."]
        finally:
            transport.close()
    asyncio.run(scenario())
