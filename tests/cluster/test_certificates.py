"""Node certificates over months, under libfaketime: renewal while running, restarts 100 days
later, and what a node whose certificate ran out says.

The lab's shoalds run with libfaketime reading their date offset from a file (Lab.set_faketime);
only the wall clock jumps, timers keep their pace. Certificates last 90 days and are renewed at a
random point between 50 % and 80 % of that, so a jump to +75 days puts every node past its point.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

DAY = 86400


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


def restart_all(lab) -> None:
    for host in lab.hosts:
        lab.stop(host)
    for host in lab.hosts:
        lab.start(host)


def certificates(lab) -> dict[str, dict]:
    out = {}
    for node in json.loads(lab.shoal("manager1", "node", "inspect", *lab.hosts).stdout):
        out[node["Description"]["Hostname"]] = node
    return out


def not_after(node: dict) -> float:
    text = node["Description"].get("TLSInfo", {}).get("CertNotAfter", "")
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone if text else 0.0


def all_ready_valid_beyond(lab, moment: float):
    nodes = certificates(lab)
    return all(n["Status"]["State"] == "ready" and not_after(n) > moment for n in nodes.values()) and nodes


def test_every_node_renews_and_is_ready_100_days_later(lab):
    lab.set_faketime("+0")
    restart_all(lab)                                  # now under libfaketime, still today
    first = wait_for(lambda: all_ready_valid_beyond(lab, time.time() + 80 * DAY), 60, 1,
                     "every node ready with a 90-day certificate")
    serials = {h: n["Description"]["TLSInfo"]["CertNotAfter"] for h, n in first.items()}

    lab.set_faketime("+75d")                          # past every node's renewal point (<= 72 d)
    renewed = wait_for(lambda: all_ready_valid_beyond(lab, time.time() + 150 * DAY), 90, 1,
                       "every node renewed at +75 days")
    assert {h: n["Description"]["TLSInfo"]["CertNotAfter"] for h, n in renewed.items()} != serials

    lab.set_faketime("+100d")                         # the old certificates are all expired now
    restart_all(lab)
    wait_for(lambda: all_ready_valid_beyond(lab, time.time() + 100 * DAY), 60, 1,
             "every node ready 100 days later")
    # node ls can show a node ready (its old session) before its restarted shoald is active itself
    wait_for(lambda: all(json.loads(lab.shoal(host, "info", "--format", "json").stdout)["localNodeState"]
                         == "active" for host in lab.hosts), 60, 1, "every restarted node active")
    for host in lab.hosts:
        metrics = lab.exec(host, ["curl", "-sf", f"http://{lab.host(host).metrics_addr}/metrics"]).stdout
        expiry = [line for line in metrics.splitlines()
                  if line.startswith("shoal_node_certificate_expiry_timestamp_seconds ")]
        assert expiry and float(expiry[0].split()[1]) > time.time() + 150 * DAY, expiry


def test_a_node_whose_certificate_expired_says_so(lab):
    """Jump past every certificate's end, stop the worker: the manager says why it is down; the
    worker, started again, says its certificate expired (log and `shoal info`)."""
    lab.set_faketime("+200d")                         # certificates renewed at +75 d end at +165 d
    lab.shoal("manager1", "node", "ls")               # (open sessions carry on: TLS checks at handshakes)
    lab.stop("worker1")
    wait_for(lambda: certificates(lab)["worker1"]["Status"].get("Message", "").startswith("certificate expired"),
             60, 1, "the manager to say the worker's certificate expired")
    lab.start("worker1")
    info = wait_for(lambda: (i := json.loads(lab.shoal("worker1", "info", "--format", "json").stdout))
                    and i.get("error") and i, 30, 1, "the worker to report its expired certificate")
    assert info["localNodeState"] == "error"
    assert "certificate expired" in info["error"] and "join it again" in info["error"]
    log = (lab.host("worker1").log_dir / "shoald.log").read_text()
    assert "certificate expired" in log
