"""A one-manager swarm: the rules that protect the last manager."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1, log_level="info")  # info: the log test sees every record


def test_demoting_the_last_manager_is_refused_and_changes_nothing(lab):
    before = lab.nodes("manager1")
    result = lab.shoal("manager1", "node", "demote", "manager1", check=False)
    assert result.returncode == 1
    assert "last manager" in result.stderr
    after = lab.nodes("manager1")
    assert [(n["ID"], n["ManagerStatus"]) for n in after] == [(n["ID"], n["ManagerStatus"]) for n in before]
    inspect = json.loads(lab.shoal("manager1", "node", "inspect", "self").stdout)[0]
    assert inspect["Spec"]["Role"] == "manager"


def test_a_manager_must_force_leave(lab):
    result = lab.shoal("manager1", "swarm", "leave", check=False)
    assert result.returncode == 1 and "--force" in result.stderr
    assert lab.nodes("manager1")


def test_init_twice_is_refused(lab):
    result = lab.shoal("manager1", "swarm", "init", "--advertise-addr", lab.address("manager1"), check=False)
    assert result.returncode == 1 and "already part of a swarm" in result.stderr


def test_node_without_certificate_is_refused_on_the_node_port(lab):
    """A client that presents no certificate gets a clear refusal on node RPCs."""
    script = (
        "import grpc,sys\n"
        "from manager.ca import channel_credentials, channel_options\n"
        "from proto import cluster_pb2, cluster_pb2_grpc\n"
        f"ca=open('{lab.host('manager1').state_dir}/certificates/ca.crt','rb').read()\n"
        f"ch=grpc.secure_channel('{lab.address('manager1')}:2377', channel_credentials(ca), options=channel_options())\n"
        "try:\n"
        "    cluster_pb2_grpc.DispatcherStub(ch).Heartbeat(cluster_pb2.HeartbeatRequest(session_id='x'), timeout=5)\n"
        "except grpc.RpcError as e:\n"
        "    print(e.code().name, e.details())\n"
    )
    import sys
    out = lab.exec("manager1", [sys.executable, "-c", script]).stdout
    assert out.startswith("UNAUTHENTICATED no client certificate presented"), out


def test_every_daemon_log_line_is_logfmt_and_a_normal_run_logs_no_error(lab):
    """Both daemons write one logfmt record per line (time, level, component, msg first); a service
    created, run and removed leaves no ERROR in any log. Runs last in this module."""
    from agent_runtime.logformat import parse_logfmt

    lab.shoal("manager1", "service", "create", "--name", "quiet", "--replicas", "2",
              f"{lab.registry}/shoal/busybox:latest", "sleep", "1d")
    lab.shoal("manager1", "service", "rm", "quiet")
    logs = sorted(p for host in lab.hosts for p in lab.host(host).log_dir.glob("*.log"))
    assert logs, "the lab wrote no daemon logs"
    problems, records = [], 0
    for path in logs:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            try:
                fields = parse_logfmt(line)
            except ValueError as exc:
                problems.append(f"{path.name}:{number}: not logfmt ({exc}): {line[:160]}")
                continue
            records += 1
            if list(fields)[:4] != ["time", "level", "component", "msg"]:
                problems.append(f"{path.name}:{number}: fields out of order: {line[:160]}")
            elif fields["level"] in ("error", "critical"):
                problems.append(f"{path.name}:{number}: {line[:300]}")
    assert not problems, "\n".join(problems[:40])
    assert records > 20, f"only {records} log records: is the lab logging at info?"
