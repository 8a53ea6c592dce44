"""The nftables text rendered for containers and hosts, and the DNS records and resolver."""

from __future__ import annotations

import asyncio
import socket

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from agent_runtime import dns
from agent_runtime.api import Backend, NetworkAttachment, PortConfig, Service, VirtualIP
from agent_runtime.network import rules
from tests.support.network_model import local, make_state


def test_container_table_balances_over_healthy_backends_only():
    state = make_state()
    c = local("c1", NetworkAttachment("front", "198.18.1.12/24"))
    c.dns_port = 40000
    text = rules.render_container_table(state, c)
    assert text.startswith("table ip shoal {}\ndelete table ip shoal\ntable ip shoal {")   # one atomic replace
    assert "ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40000" in text
    assert "198.18.1.100 : goto svc-0" in text
    assert "chain svc-0 { dnat to 198.18.1.11; }" in text                                # t2 is unhealthy
    state.services[0].backends[1].healthy = True
    assert "dnat to numgen random mod 2 map { 0 : 198.18.1.11, 1 : 198.18.1.21 }" in \
        rules.render_container_table(state, c)


def test_vip_without_backends_is_rejected_and_dnsrr_has_no_vip():
    state = make_state()
    state.services[0].backends = []
    c = local("c1", NetworkAttachment("front", "198.18.1.12/24"))
    text = rules.render_container_table(state, c)
    assert "set dead-vips { type ipv4_addr; elements = { 198.18.1.100 } }" in text and "reject" in text
    state.services[0].endpoint_mode = "dnsrr"
    assert "198.18.1.100" not in rules.render_container_table(state, c)


def test_container_only_sees_vips_of_its_networks():
    state = make_state()
    c = local("c1", NetworkAttachment("priv", "198.18.3.5/24"))
    assert "vips" not in rules.render_container_table(state, c)


def test_host_table_routing_mesh_host_ports_and_isolation():
    state = make_state()
    web1 = local("c1", NetworkAttachment("front", "198.18.1.11/24"), NetworkAttachment("ing", "198.18.0.11/24"))
    web1.gateway_ip = "198.19.200.2"
    state.services.append(Service(id="s2", name="hweb", endpoint_mode="dnsrr",
                                  ports=[PortConfig(target_port=80, published_port=8081, publish_mode="host")],
                                  backends=[Backend("t1", "192.0.2.11", {"front": "198.18.1.11"}),
                                            Backend("t9", "192.0.2.12", {"front": "198.18.1.21"})]))
    state.services.append(Service(id="s3", name="lweb", local_only=True,
                                  ports=[PortConfig(target_port=80, published_port=8082, protocol="udp")],
                                  backends=[Backend("t1", "192.0.2.11", {"front": "198.18.1.11"})]))
    active = [n for n in state.networks if n.id in ("ing", "front")]
    text = rules.render_host_table(state, [web1], active)
    assert "fib daddr type local meta l4proto . th dport vmap @published" in text
    assert "tcp . 8080 : goto pub-0-0" in text and "meta l4proto tcp dnat to 198.18.0.11:80" in text
    assert "tcp . 8081 : goto pub-1-0" in text and "dnat to 198.19.200.2:80" in text      # host mode: local only
    assert "udp . 8082 : goto pub-2-0" in text and "meta l4proto udp dnat to 198.19.200.2:80" in text
    assert 'ct status dnat oifname "shov*" masquerade' in text
    assert 'iifname "shov4097" oifname "shov4097" accept' in text
    assert 'iifname "shoal_gwbridge" oifname "shov*" drop' in text
    assert "ip saddr 198.19.200.0/24 oifname != \"shoal_gwbridge\" masquerade" in text


def test_host_table_fences_containers_off_nodes_and_fenced_addresses():
    state = make_state()
    state.node_ips = ["192.0.2.12", "192.0.2.13"]
    state.services[0].ports = [PortConfig(target_port=80, published_port=8080)]
    text = rules.render_host_table(state, [], [], rules.parse_fence(["192.0.2.1:5000", "192.0.2.99"]))
    assert "set nodes { type ipv4_addr; elements = { 192.0.2.11, 192.0.2.12, 192.0.2.13 }; }" in text
    assert "set published-ports { type inet_proto . inet_service; elements = { tcp . 8080 }; }" in text
    assert "elements = { 192.0.2.1 . tcp . 5000, 192.0.2.1 . udp . 5000 }" in text
    assert "set fenced-hosts { type ipv4_addr; elements = { 192.0.2.99 }; }" in text
    forward = text[text.index("chain forward"):]
    assert forward.index("ct status dnat accept") < forward.index('iifname "shoal_gwbridge" jump egress')
    assert 'iifname "shoal_gwbridge" jump to-host' in text and 'iifname "shov*" jump to-host' in text
    egress = text[text.index("chain egress"):]
    assert egress.index("@published-ports return") < egress.index("ip daddr @nodes goto refuse")


def test_fence_entries_are_checked():
    assert rules.parse_fence(["192.0.2.1", "192.0.2.1:5000"]) == [("192.0.2.1", None), ("192.0.2.1", 5000)]
    for bad in ("registry:5000", "192.0.2.1:0", "192.0.2.1:http", "192.0.2.300"):
        with pytest.raises(ValueError, match="--fence"):
            rules.parse_fence([bad])


def test_records_and_lookup_are_scoped_to_the_askers_networks():
    state = make_state()
    state.peers.append(state.peers[0].__class__("front", "198.18.1.21", "192.0.2.12", names=["web2-host"]))
    state.services.append(Service(id="s2", name="db", endpoint_mode="dnsrr",
                                  virtual_ips=[VirtualIP("priv", "198.18.3.100/24")],
                                  backends=[Backend("t3", "192.0.2.12", {"priv": "198.18.3.21"})]))
    me = local("c1", NetworkAttachment("front", "198.18.1.12/24", aliases=["api"]))
    records = dns.build_records(state, [me])
    front = ["front"]
    assert dns.lookup(records, front, "web") == ["198.18.1.100"]
    assert dns.lookup(records, front, "SHOP_WEB.") == ["198.18.1.100"]
    assert dns.lookup(records, front, "tasks.web") == ["198.18.1.11"]     # unhealthy t2 left out
    assert dns.lookup(records, front, "api") == ["198.18.1.12"]
    assert dns.lookup(records, front, "web2-host") == ["198.18.1.21"]
    assert dns.lookup(records, front, "db") is None                       # other network
    assert dns.lookup(records, ["priv"], "db") == ["198.18.3.21"]         # dnsrr: the tasks
    assert dns.lookup(records, front, "example.org") is None


def test_a_containers_aliases_are_scoped_to_their_network():
    """An alias given on one network (network connect --alias) is not a name on its others; the
    container's own names are on all of them. Before, every alias was on every network."""
    me = local("c1", NetworkAttachment("front", "198.18.1.12/24"),
               NetworkAttachment("priv", "198.18.3.12/24", aliases=["db"]))
    records = dns.build_records(make_state(), [me])
    assert dns.lookup(records, ["front", "priv"], "db") == ["198.18.3.12"]
    assert dns.lookup(records, ["front", "priv"], "c1") == ["198.18.1.12", "198.18.3.12"]


async def test_resolver_answers_ours_and_forwards_the_rest():
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.bind(("127.0.0.1", 0))
    upstream.setblocking(False)
    loop = asyncio.get_running_loop()

    async def fake_upstream():
        data, addr = await loop.sock_recvfrom(upstream, 4096)
        reply = DNSRecord.parse(data).reply()
        reply.add_answer(*__import__("dnslib").RR.fromZone("example.org. 60 A 192.0.2.200"))
        await loop.sock_sendto(upstream, reply.pack(), addr)

    resolver = dns.Resolver(upstreams=[upstream.getsockname()])
    me = local("c1", NetworkAttachment("front", "198.18.1.12/24"))
    resolver.update(dns.build_records(make_state(), [me]), [me])
    answer = DNSRecord.parse(resolver.answer("c1", DNSRecord.question("tasks.web").pack()))
    assert [str(r.rdata) for r in answer.rr] == ["198.18.1.11"] and answer.rr[0].ttl == dns.TTL
    aaaa = DNSRecord.parse(resolver.answer("c1", DNSRecord.question("web", "AAAA").pack()))
    assert aaaa.header.rcode == RCODE.NOERROR and not aaaa.rr
    assert resolver.answer("c1", DNSRecord.question("example.org").pack()) is None
    server = asyncio.create_task(fake_upstream())
    forwarded = DNSRecord.parse(await resolver.forward(DNSRecord.question("example.org").pack()))
    await server
    assert [str(r.rdata) for r in forwarded.rr] == ["192.0.2.200"] and forwarded.q.qtype == QTYPE.A
    upstream.close()
    resolver.upstreams = [("127.0.0.1", 9)]                                # nobody answers: SERVFAIL
    dns.FORWARD_TIMEOUT, saved = 0.2, dns.FORWARD_TIMEOUT
    try:
        failed = DNSRecord.parse(await resolver.forward(DNSRecord.question("example.org").pack()))
    finally:
        dns.FORWARD_TIMEOUT = saved
    assert failed.header.rcode == RCODE.SERVFAIL


def test_network_aliases_answer_as_the_service_and_give_tasks_names():
    """Docker: a service's network alias is a name of the service on that network (its VIP, or
    its tasks with dnsrr) and tasks.ALIAS gives the tasks; an alias never takes a service's name."""
    state = make_state()
    state.services.append(Service(id="s2", name="db", endpoint_mode="dnsrr",
                                  backends=[Backend("t3", "192.0.2.12", {"front": "198.18.1.21"}),
                                            Backend("t4", "192.0.2.12", {"front": "198.18.1.22"})],
                                  network_aliases={"front": ["database", "web"]}))
    state.services[0].network_aliases = {"front": ["www"]}
    records = dns.build_records(state, [local("c1", NetworkAttachment("front", "198.18.1.12/24"))])
    front = ["front"]
    assert dns.lookup(records, front, "database") == ["198.18.1.21", "198.18.1.22"]
    assert dns.lookup(records, front, "tasks.database") == ["198.18.1.21", "198.18.1.22"]
    assert dns.lookup(records, front, "www") == ["198.18.1.100"]              # vip mode: the VIP
    assert dns.lookup(records, front, "tasks.www") == ["198.18.1.11"]
    assert dns.lookup(records, front, "web") == ["198.18.1.100"]              # db's alias "web" loses
    assert dns.lookup(records, ["priv"], "database") is None
