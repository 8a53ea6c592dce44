"""run -p/-P/--expose as docker/cli reads them, PORTS and `port` as Docker prints them, and the
rules and checks runtimed derives from published ports (pure)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent_runtime.errors import InvalidArgument
from agent_runtime.network import rules
from agent_runtime.network.plan import EPHEMERAL, LocalContainer, free_host_port, needs_egress, ports_clash
from agent_runtime.spec import ContainerSpec, PortBinding, validate_spec
from shoal.cli import ports
from shoal.cli.containers import port_bindings
from tests.support.network_model import make_state


@pytest.mark.parametrize("text, expected", [
    ("80", [("", 0, 80, "tcp")]),
    ("8080:80", [("", 8080, 80, "tcp")]),
    ("127.0.0.1:8080:80", [("127.0.0.1", 8080, 80, "tcp")]),
    ("127.0.0.1::80", [("127.0.0.1", 0, 80, "tcp")]),
    ("5353:53/udp", [("", 5353, 53, "udp")]),
    ("8000-8001:80-81", [("", 8000, 80, "tcp"), ("", 8001, 81, "tcp")]),
    ("9000-9001/UDP", [("", 0, 9000, "udp"), ("", 0, 9001, "udp")]),
])
def test_publish_values(text, expected):
    assert ports.parse_publish(text) == expected


@pytest.mark.parametrize("text, message", [
    ("8080:eighty", "invalid containerPort: eighty"),
    ("70000:80", "invalid hostPort: 70000"),
    ("80/icmp", "invalid proto: icmp"),
    ("localhost:80:80", "invalid IP address: localhost"),
    ("8000-8002:80-81", "invalid ranges specified for container and host Ports: 80-81 and 8000-8002"),
    ("[::1]:80:80", "only IPv4 ports"),
    ("1:2:3:4", "invalid port format for --publish: 1:2:3:4"),
])
def test_bad_publish_values_are_dockers_errors(text, message):
    with pytest.raises(ports.PortError, match=message.replace("[", r"\[")):
        ports.parse_publish(text)


def test_publish_all_adds_exposed_ports_not_published_yet():
    image = {"Config": {"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}}
    bindings = port_bindings(["8080:80"], True, ["9000"], lambda: image)
    assert [(b.host_port, b.container_port, b.protocol) for b in bindings] == [
        (8080, 80, "tcp"), (0, 53, "udp"), (0, 9000, "tcp")]
    assert port_bindings([], False, ["9000"], lambda: pytest.fail("no image lookup without -P")) == []


def test_ps_and_port_text():
    bindings = [PortBinding(container_port=80, host_port=8080), PortBinding(53, "udp", "127.0.0.1", 5353)]
    assert ports.ports_text(bindings) == "127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp"
    same = [PortBinding(c, host_port=c) for c in (8001, 8000, 8003)] + [PortBinding(53, "udp", host_port=53)]
    # Docker's DisplayablePorts: runs under their own numbers, per address and protocol; then remaps
    assert ports.ports_text(same + bindings) == (
        "0.0.0.0:8000-8001->8000-8001/tcp, 0.0.0.0:53->53/udp, 0.0.0.0:8003->8003/tcp, "
        "127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp")
    assert ports.port_lines(bindings) == ["53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:8080"]
    assert ports.port_lines(bindings, "53/udp") == ["127.0.0.1:5353"]
    with pytest.raises(ports.PortError, match="No public port '53/tcp' published for"):
        ports.port_lines(bindings, "53")


def test_runtimed_refuses_bad_bindings():
    for binding, message in [(PortBinding(0), "invalid containerPort: 0"), (PortBinding(80, "icmp"), "invalid proto"),
                             (PortBinding(80, host_ip="nowhere"), "'nowhere' is not an IPv4 address")]:
        with pytest.raises(InvalidArgument, match=message):
            validate_spec(ContainerSpec(image="x", ports=[binding]))
    with pytest.raises(InvalidArgument, match="Bind for 0.0.0.0:8080 failed: port is already allocated"):
        validate_spec(ContainerSpec(image="x", ports=[PortBinding(80, host_port=8080), PortBinding(81, host_port=8080)]))
    with pytest.raises(InvalidArgument, match="cannot be published in network mode 'host'"):
        validate_spec(ContainerSpec(image="x", network="host", ports=[PortBinding(80)]))


def test_clashes_and_free_ports():
    every = SimpleNamespace(host_ip="", protocol="tcp", host_port=8080)
    local = SimpleNamespace(host_ip="127.0.0.1", protocol="tcp", host_port=8080)
    other = SimpleNamespace(host_ip="192.0.2.1", protocol="tcp", host_port=8080)
    assert ports_clash(every, local) and ports_clash(local, every) and not ports_clash(local, other)
    assert not ports_clash(every, SimpleNamespace(host_ip="", protocol="udp", host_port=8080))
    taken = [SimpleNamespace(host_ip="", protocol="tcp", host_port=EPHEMERAL[0])]
    free = lambda *_: ""  # noqa: E731 - no program holds any port
    assert free_host_port("tcp", "", taken, free) == EPHEMERAL[0] + 1
    assert free_host_port("udp", "", taken, free) == EPHEMERAL[0]
    busy = lambda proto, ip, port: "in use" if port == EPHEMERAL[0] + 1 else ""  # noqa: E731
    assert free_host_port("tcp", "", taken, busy) == EPHEMERAL[0] + 2


def test_a_container_that_publishes_gets_egress_unless_only_on_internal_networks():
    state = make_state()
    assert needs_egress(state, [], publishes=True) and not needs_egress(state, [])
    assert not needs_egress(state, ["priv"], publishes=True)


def test_host_table_dnats_published_ports_to_the_gateway_address():
    c = LocalContainer(id="c" * 64, name="web", hostname="web", netns="ns", endpoints=[], gateway_ip="198.19.200.5",
                       ports=(PortBinding(80, host_port=8080), PortBinding(53, "udp", "127.0.0.1", 5353)))
    assert rules.container_port_rules([c]) == [
        "fib daddr type local meta l4proto tcp th dport 8080 dnat to 198.19.200.5:80",
        "ip daddr 127.0.0.1 meta l4proto udp th dport 5353 dnat to 198.19.200.5:53"]
    table = rules.render_host_table(make_state(services=[]), [c], [])
    assert "jump container-ports" in table and "chain container-ports {" in table
    assert 'ip saddr 127.0.0.0/8 oifname "shoal_gwbridge" masquerade' in table
    assert "vmap @published" not in table                  # no service publishes here


def test_a_port_a_program_listens_on_is_in_use():
    import socket
    from agent_runtime.network.plan import port_in_use
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use("tcp", "127.0.0.1", port) == f"listen tcp4 127.0.0.1:{port}: bind: address already in use"
        assert port_in_use("udp", "127.0.0.1", port) == ""
    assert port_in_use("tcp", "127.0.0.1", port) == ""
    assert "cannot assign requested address" in port_in_use("tcp", "192.0.2.222", port)
