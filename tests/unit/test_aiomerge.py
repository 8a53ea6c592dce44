"""common.aiomerge.merge: the fan-in under `service logs`."""

from __future__ import annotations

import asyncio

import pytest

from common.aiomerge import merge


async def _items(*items, pause: asyncio.Event | None = None):
    for item in items:
        if pause is not None:
            await pause.wait()
        yield item


async def test_every_item_of_every_source_arrives_and_the_merge_ends_with_the_last_source():
    got = [item async for item in merge([_items(1, 2, 3), _items("a", "b"), _items()])]
    assert sorted(map(str, got)) == ["1", "2", "3", "a", "b"]
    assert [i for i in got if isinstance(i, int)] == [1, 2, 3]   # each source's order is kept


async def test_no_sources_is_an_empty_stream():
    assert [item async for item in merge([])] == []


async def test_a_failing_source_ends_the_merge_with_its_error_after_what_it_sent():
    async def broken():
        yield "before"
        raise RuntimeError("node stream broke")

    got = []
    with pytest.raises(RuntimeError, match="node stream broke"):
        async for item in merge([broken()]):
            got.append(item)
    assert got == ["before"]


async def test_closing_the_merge_early_closes_every_source_at_once():
    """A source held at its `yield` (the buffer is full) is closed too, not left to the garbage
    collector: its `finally` (a node's channel) runs before `aclose()` returns."""
    closed = []

    async def endless(name):
        try:
            while True:
                yield name
        finally:
            closed.append(name)

    stream = merge([endless("a"), endless("b")], buffer=1)
    assert await anext(stream) in ("a", "b")
    await stream.aclose()
    assert sorted(closed) == ["a", "b"]


async def test_a_slow_consumer_holds_the_sources_at_the_buffer_size():
    produced = []

    async def counting():
        for i in range(100):
            produced.append(i)
            yield i

    stream = merge([counting()], buffer=5)
    await anext(stream)
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(produced) <= 5 + 2    # the buffer, the item handed on, the one waiting to be put
    await stream.aclose()
