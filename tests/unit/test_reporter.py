"""The status reporter: bounded requests, refused updates split and then dropped, never looped."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from proto import objects_pb2 as pb
from proto.limits import MAX_STATUS_UPDATES
from worker.reporter import MAX_REFUSALS, Reporter


class RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def status(state: int = pb.RUNNING) -> pb.TaskStatus:
    return pb.TaskStatus(state=state, message="x")


async def run_until_idle(reporter: Reporter, send) -> None:
    runner = asyncio.create_task(reporter.run(send))
    try:
        for _ in range(200):
            await asyncio.sleep(0)
            if reporter.pending == 0 and not reporter._wake.is_set():
                break
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_a_large_backlog_goes_out_in_bounded_requests():
    reporter = Reporter(interval=0)
    for i in range(250):
        reporter.report(f"t{i}", status())
    sizes: list[int] = []

    async def send(updates):
        sizes.append(len(updates))

    await run_until_idle(reporter, send)
    assert sum(sizes) == 250 and max(sizes) <= MAX_STATUS_UPDATES and len(sizes) == 3


async def test_a_refused_request_is_split_and_a_refused_update_dropped_not_looped():
    reporter = Reporter(interval=0, max_batch=8)
    for i in range(8):
        reporter.report(f"t{i}", status())
    sent: list[str] = []
    attempts = {"bad": 0}

    async def send(updates):
        ids = [u.task_id for u in updates]
        if "t3" in ids:
            attempts["bad"] += 1
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "change too large")
        sent.extend(ids)

    await run_until_idle(reporter, send)
    assert sorted(sent) == [f"t{i}" for i in range(8) if i != 3]
    assert reporter.dropped == 1 and reporter.pending == 0
    assert attempts["bad"] <= 3 + MAX_REFUSALS  # the halvings, then MAX_REFUSALS alone: bounded


async def test_a_failed_session_keeps_every_status_for_the_next_one():
    reporter = Reporter(interval=0)
    for i in range(5):
        reporter.report(f"t{i}", status())

    async def send(updates):
        raise RpcError(grpc.StatusCode.UNAVAILABLE, "leader gone")

    with pytest.raises(grpc.aio.AioRpcError):
        await reporter.run(send)
    assert reporter.pending == 5
    reporter.report("t0", status(pb.FAILED))  # a newer status wins over the kept one
    got: dict[str, int] = {}

    async def ok(updates):
        got.update({u.task_id: u.status.state for u in updates})

    await run_until_idle(reporter, ok)
    assert got == {"t0": pb.FAILED, **{f"t{i}": pb.RUNNING for i in range(1, 5)}}


async def test_a_request_not_answered_in_time_is_sent_again_in_the_same_session():
    """A busy leader's late answer (DEADLINE_EXCEEDED) ended the session: every node of that
    leader reconnected at once, more work for it (bench/scale.py). The statuses are sent again,
    the session goes on; a newer status reported meanwhile wins."""
    reporter = Reporter(interval=0, retry=0)
    for i in range(3):
        reporter.report(f"t{i}", status(pb.STARTING))
    calls: list[dict[str, int]] = []

    async def late_once(updates):
        calls.append({u.task_id: u.status.state for u in updates})
        if len(calls) == 1:
            reporter.report("t0", status(pb.RUNNING))
            raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    await run_until_idle(reporter, late_once)
    assert calls[-1] == {"t0": pb.RUNNING, "t1": pb.STARTING, "t2": pb.STARTING}
    assert len(calls) == 2 and reporter.late == 1 and reporter.pending == 0
