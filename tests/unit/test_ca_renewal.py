"""Certificate renewal schedule (manager.ca.renewal) on a fake clock, NodeTLS, crash-safe saving."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from manager.ca import (
    WORKER_ROLE,
    CertificateError,
    CertificateRenewer,
    NodeTLS,
    RootCA,
    make_node_key_and_csr,
    renewal_time,
)
from shoal.nodestate import StateDir

DAY = 86400.0
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CA = RootCA.create("cluster-r", START - dt.timedelta(days=1))


def issue(now: dt.datetime, days: float = 90) -> tuple[bytes, bytes]:
    key, csr = make_node_key_and_csr()
    cert = CA.sign_node_csr(csr, "node1", WORKER_ROLE, now, validity=dt.timedelta(days=days))
    return cert + CA.cert_pem, key


class FakeTime:
    """A wall clock that moves only when the renewer sleeps; stops the renewer at `until`."""

    def __init__(self, now: float, until: float):
        self.now, self.until = now, until
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds
        if self.now >= self.until:
            raise asyncio.CancelledError


def make_renewer(fake: FakeTime, draws, fail: list[bool] | None = None, recheck: float = 3600.0):
    cert, key = issue(dt.datetime.fromtimestamp(fake.now, dt.timezone.utc))
    tls = NodeTLS(cert, key, CA.cert_pem)
    renewed_at: list[float] = []
    failures = list(fail or [])

    async def renew() -> None:
        if failures and failures.pop(0):
            raise ConnectionError("no manager reachable")
        renewed_at.append(fake.now)
        new_cert, new_key = issue(dt.datetime.fromtimestamp(fake.now, dt.timezone.utc))
        tls.update(new_cert, new_key, CA.cert_pem)

    draw_iter = iter(draws)
    renewer = CertificateRenewer(tls, renew, clock=fake.clock, sleep=fake.sleep,
                                 draw=lambda: next(draw_iter), recheck=recheck)
    return renewer, tls, renewed_at


def run(renewer: CertificateRenewer) -> None:
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(renewer.run())


def test_renewal_time_is_between_half_and_four_fifths_of_the_validity() -> None:
    assert renewal_time(0, 100 * DAY, 0.0) == 50 * DAY
    assert renewal_time(0, 100 * DAY, 0.999999) == pytest.approx(80 * DAY, rel=1e-5)
    assert renewal_time(1000, 1000 + 10 * DAY, 0.5) == 1000 + 6.5 * DAY


def test_renews_once_at_the_drawn_point_and_not_before() -> None:
    fake = FakeTime(START.timestamp(), START.timestamp() + 100 * DAY)
    # draw 0.5 -> 65 % of (90 d + 1 h backdating) after not-before; the renewed certificate's
    # draw of 0.0 puts its own renewal 45 days later, past the end of the run.
    renewer, tls, renewed_at = make_renewer(fake, [0.5, 0.0, 0.0])
    not_before = START.timestamp() - 3600
    due = not_before + (90 * DAY + 3600) * 0.65
    run(renewer)
    assert len(renewed_at) == 1
    assert due <= renewed_at[0] < due + 3600          # at the next look after the due time
    assert renewer.renewals == 1
    assert tls.not_after.timestamp() == pytest.approx(renewed_at[0] + 90 * DAY)


def test_the_point_is_drawn_once_per_certificate() -> None:
    """Looking again (every recheck) must not draw again: that would pull renewals earlier."""
    fake = FakeTime(START.timestamp(), START.timestamp() + 60 * DAY)
    renewer, _, renewed_at = make_renewer(fake, [0.9, 0.0], recheck=60.0)
    run(renewer)       # draws: 0.9 -> day ~72, beyond this run; a second draw of 0.0 would renew at day 45
    assert renewed_at == []


def test_a_wall_clock_jump_is_noticed_within_one_recheck() -> None:
    fake = FakeTime(START.timestamp(), START.timestamp() + 80 * DAY + 120)
    renewer, _, renewed_at = make_renewer(fake, [0.0, 0.99], recheck=5.0)

    async def main() -> None:
        task = asyncio.ensure_future(renewer.run())
        await asyncio.sleep(0)
        fake.now += 80 * DAY                          # an NTP step / libfaketime: 80 days at once
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert len(renewed_at) == 1


def test_failures_are_retried_with_growing_backoff_then_succeed(caplog) -> None:
    fake = FakeTime(START.timestamp(), START.timestamp() + 70 * DAY)
    renewer, _, renewed_at = make_renewer(fake, [0.0] + [0.5] * 10, fail=[True, True, True])
    with caplog.at_level(logging.WARNING, logger="manager.ca.renewal"):
        run(renewer)
    assert len(renewed_at) == 1
    first = fake.sleeps.index(1.0)
    assert fake.sleeps[first:first + 3] == [1.0, 2.0, 4.0]   # draw 0.5 -> no jitter
    assert sum("renewal failed" in r.message and "no manager reachable" in r.message
               for r in caplog.records) == 3
    assert renewer.last_error == ""


def test_an_expired_certificate_says_so_once(caplog) -> None:
    fake = FakeTime(START.timestamp() + 91 * DAY, START.timestamp() + 92 * DAY)
    cert, key = issue(START)
    tls = NodeTLS(cert, key, CA.cert_pem)

    async def renew() -> None:
        raise ConnectionError("handshake failed")

    renewer = CertificateRenewer(tls, renew, clock=fake.clock, sleep=fake.sleep, draw=lambda: 0.5)
    assert "expired at 2026-04-01" in renewer.expired_error()
    with caplog.at_level(logging.ERROR, logger="manager.ca.renewal"):
        run(renewer)
    expired = [r for r in caplog.records if r.levelno == logging.ERROR and "certificate expired" in r.message]
    assert len(expired) == 1
    assert "join it again" in expired[0].message


def test_node_tls_refuses_a_key_of_another_certificate() -> None:
    cert, _ = issue(START)
    _, other_key = issue(START)
    with pytest.raises(CertificateError, match="does not belong"):
        NodeTLS(cert, other_key, CA.cert_pem)


def test_tls_info_names_the_issuer_and_validity() -> None:
    cert, key = issue(START)
    info = NodeTLS(cert, key, CA.cert_pem).tls_info()
    assert info.cert_not_after == (START + dt.timedelta(days=90)).timestamp()
    assert info.trust_root == CA.cert_pem
    assert info.cert_issuer_public_key                      # found the issuer among the roots
    assert b"shoal-root-ca" in info.cert_issuer_subject


@pytest.mark.parametrize("crash_after", ["key.next", "ca", "crt"])
def test_a_crash_while_saving_leaves_a_matching_pair(tmp_path, monkeypatch, crash_after) -> None:
    """SIGKILL at any point of save_certificates: the next load has a key that fits its cert."""
    import os

    import shoal.nodestate as nodestate

    state = StateDir(tmp_path)
    old_cert, old_key = issue(START)
    state.save_certificates(old_cert, old_key, CA.cert_pem)
    new_cert, new_key = issue(START + dt.timedelta(days=50))
    writes = {"key.next": "node.key.next", "ca": "ca.crt", "crt": "node.crt"}
    real_write = nodestate._write_atomic

    class Crash(Exception):
        pass

    def write(path, data, mode=0o600):
        real_write(path, data, mode)
        if path.name == writes[crash_after]:
            raise Crash

    monkeypatch.setattr(nodestate, "_write_atomic", write)
    with pytest.raises(Crash):
        state.save_certificates(new_cert, new_key, CA.cert_pem)
    monkeypatch.setattr(nodestate, "_write_atomic", real_write)
    cert, key, _ = StateDir(tmp_path).load_certificates()
    NodeTLS(cert, key, CA.cert_pem)                       # raises if they do not match
    assert (cert, key) == ((new_cert, new_key) if crash_after == "crt" else (old_cert, old_key))
    assert not os.path.exists(tmp_path / "certificates" / "node.key.next")


# -- --cert-expiry ---------------------------------------------------------------------------------

def test_cert_expiry_flag_takes_docker_durations_of_at_least_an_hour() -> None:
    import click

    from shoal.cli.swarm import _cert_expiry

    assert _cert_expiry("2160h0m0s") == 90 * DAY
    assert _cert_expiry("1h") == 3600
    with pytest.raises(click.BadParameter, match="minimum certificate expiry time is 1h0m0s"):
        _cert_expiry("59m")


async def test_update_cluster_refuses_a_short_cert_expiry_and_changes_nothing() -> None:
    from manager.controlapi import ControlAPI, ControlError
    from manager.state import LocalProposer, MemoryStore, Store
    from proto import control_pb2, objects_pb2

    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    await store.update(lambda tx: tx.create(objects_pb2.Cluster(id="c1")))
    api = ControlAPI(store, raft=None)
    spec = objects_pb2.ClusterSpec()
    spec.ca_config.node_cert_expiry = 600
    with pytest.raises(ControlError, match="minimum is 1:00:00"):
        await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    assert store.view().cluster().spec.ca_config.node_cert_expiry == 0
    spec.ca_config.node_cert_expiry = 30 * DAY
    await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    assert store.view().cluster().spec.ca_config.node_cert_expiry == 30 * DAY
