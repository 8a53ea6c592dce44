"""Issue 5 options as users set and see them. The "keep the client's source IP" option of published
ports (``traffic_policy=local``): the
--publish flag, the Compose long port syntax, how service ls/inspect show it, and the network
state that turns it into the data plane's LocalOnly; and the allocator's error shown on a service."""

from __future__ import annotations

import textwrap

import pytest

from manager.dispatcher.netstate import keeps_client_ip
from proto import objects_pb2 as pb
from shoal.cli.service_flags import FlagError, parse_port
from shoal.cli.service_format import format_port, service_inspect
from shoal.stack import StackFileError, load_stack_sources, to_service_specs
from tests.support.netstate import make_network, make_node, make_service, make_task, state_for
from tests.support.store import store_with

LOCAL, CLUSTER = pb.PortConfig.LOCAL, pb.PortConfig.CLUSTER
INGRESS, HOST = pb.PortConfig.INGRESS, pb.PortConfig.HOST


@pytest.mark.parametrize("text, policy", [
    ("published=8080,target=80,traffic_policy=local", LOCAL),
    ("published=8080,target=80,traffic_policy=cluster", CLUSTER),
    ("published=8080,target=80", CLUSTER),
    ("8080:80", CLUSTER),
])
def test_publish_flag_reads_the_traffic_policy(text, policy):
    port = parse_port(text)
    assert (port.published_port, port.target_port, port.publish_mode, port.traffic_policy) == (8080, 80, INGRESS, policy)


@pytest.mark.parametrize("text, words", [
    ("published=8080,target=80,traffic_policy=nearest", "invalid traffic_policy 'nearest': expected cluster or local"),
    ("mode=host,published=8080,target=80,traffic_policy=local", "applies to ingress-mode ports"),
])
def test_publish_flag_refuses_a_bad_traffic_policy(text, words):
    with pytest.raises(FlagError) as err:
        parse_port(text)
    assert words in str(err.value)


def load(text: str):
    return load_stack_sources([("web.yml", textwrap.dedent(text))], {})


def test_compose_long_port_syntax_takes_traffic_policy():
    stack = load("""\
        services:
          web:
            image: busybox
            ports:
              - target: 80
                published: 8080
                traffic_policy: local
              - target: 81
                published: 8081
        """)
    (spec,) = to_service_specs(stack, "s")
    assert [(p.published_port, p.traffic_policy) for p in spec.endpoint.ports] == [(8080, LOCAL), (8081, CLUSTER)]


@pytest.mark.parametrize("port_lines, line, key, words", [
    (["traffic_policy: nearest"], 7, "traffic_policy", "expected one of"),
    (["mode: host", "traffic_policy: local"], 8, "traffic_policy", "applies to ingress-mode ports"),
])
def test_compose_traffic_policy_errors_name_file_line_and_key(port_lines, line, key, words):
    body = "".join(f"\n        {entry}" for entry in port_lines)
    text = textwrap.dedent("""\
        services:
          web:
            image: busybox
            ports:
              - target: 80
                published: 8080""") + textwrap.indent(textwrap.dedent(body), "        ")
    with pytest.raises(StackFileError) as err:
        load(text + "\n")
    expected = f"web.yml:{line}: services.web.ports[0].{key}: "
    assert any(str(p).startswith(expected) and words in str(p) for p in err.value.problems), str(err.value)


def test_ls_and_inspect_show_a_local_port():
    service = pb.Service(id="s1")
    service.spec.annotations.name = "web"
    service.spec.endpoint.ports.add(target_port=80, published_port=8080, publish_mode=INGRESS, traffic_policy=LOCAL)
    service.endpoint.ports.extend(service.spec.endpoint.ports)
    assert format_port(service.endpoint.ports[0]) == "*:8080->80/tcp (local)"
    shown = service_inspect(service)
    assert shown["Endpoint"]["Ports"][0]["TrafficPolicy"] == "local"
    assert shown["Spec"]["EndpointSpec"]["Ports"][0]["TrafficPolicy"] == "local"
    service.endpoint.ports[0].traffic_policy = CLUSTER
    assert "TrafficPolicy" not in service_inspect(service)["Endpoint"]["Ports"][0]


def published(service_id: str, policy) -> pb.Service:
    service = make_service(service_id, service_id, vips={"ingress": "198.18.0.2/24"}, ports=[(80, 8080, INGRESS)])
    for ports in (service.spec.endpoint.ports, service.endpoint.ports):
        ports[0].traffic_policy = policy
    return service


def test_keeps_client_ip_only_for_local_ingress_ports():
    assert keeps_client_ip(published("a", LOCAL))
    assert not keeps_client_ip(published("b", CLUSTER))
    host_mode = make_service("c", "c", ports=[(80, 8080, HOST)])
    host_mode.endpoint.ports[0].traffic_policy = LOCAL
    assert not keeps_client_ip(host_mode)


@pytest.mark.parametrize("policy, local_only", [(LOCAL, True), (CLUSTER, False)])
async def test_network_state_marks_the_service_local_only(policy, local_only):
    store = await store_with(make_node("n1", "192.0.2.11", {"ingress": "198.18.0.241/24"}),
                             make_network("ingress", "198.18.0.0/24", 4096, ingress=True),
                             published("web", policy),
                             make_task("t1", "web", "n1", {"ingress": "198.18.0.11/24"}))
    [web] = state_for(store, "n1").services
    assert web.local_only is local_only


def test_ls_inspect_and_pretty_show_the_allocators_error_on_the_service():
    from shoal.cli.service_format import ALLOCATION_NOTE, ls_row, pretty, service_summary
    from proto import control_pb2
    service = pb.Service(id="s1")
    service.spec.annotations.name = "web"
    service.spec.replicas = 3
    message = "cannot allocate an IP address for task web.3 (t3) on network ...: subnet 198.19.0.0/29 is full"
    service.allocation_error = message
    summary = service_summary(service, control_pb2.ServiceStatus(running_tasks=2, desired_tasks=3))
    assert summary["Error"] == message
    assert ls_row(service, summary)[3] == f"2/3 ({ALLOCATION_NOTE})"
    assert service_inspect(service)["AllocationError"] == message
    assert f"Allocation Error:\t{message}" in pretty(service)
    service.allocation_error = ""
    summary = service_summary(service, control_pb2.ServiceStatus(running_tasks=3, desired_tasks=3))
    assert "Error" not in summary and ls_row(service, summary)[3] == "3/3"
    assert "AllocationError" not in service_inspect(service)
