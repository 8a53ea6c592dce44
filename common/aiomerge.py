"""`merge`: one async iterator over several, items in the order they come.

The log fan-in of `service logs` reads many nodes' streams (and each node many containers') at
once and hands on lines as they arrive. Its rules:

- It ends when every source has ended; the items still buffered are handed on first.
- A source that raises ends the merge with that error, after the items already buffered: a
  source handles the failures it expects (a node unreachable becomes a warning line) and what it
  does not expect is not swallowed.
- Closing the merge early (the consumer went away) cancels every source, so a following stream
  on another node is closed rather than left to run.
- At most `buffer` items wait between the sources and the consumer: a slow consumer slows the
  sources down instead of growing memory.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Iterable, TypeVar

T = TypeVar("T")


async def merge(sources: Iterable[AsyncIterator[T]], *, buffer: int = 1024) -> AsyncIterator[T]:
    queue: asyncio.Queue = asyncio.Queue(maxsize=buffer)

    async def pump(source: AsyncIterator[T]) -> None:
        try:
            async for item in source:
                await queue.put(item)
        finally:
            aclose = getattr(source, "aclose", None)   # held at its yield: close it now
            if aclose is not None:
                await aclose()

    pumps = [asyncio.create_task(pump(source)) for source in sources]
    if not pumps:
        return
    ended = asyncio.gather(*pumps)
    getter: asyncio.Task | None = None
    try:
        while True:
            getter = asyncio.create_task(queue.get())
            finished, _ = await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
            if getter in finished:
                yield getter.result()
                continue
            getter.cancel()
            while not queue.empty():
                yield queue.get_nowait()
            ended.result()    # a source's failure, if one failed
            return
    finally:
        if getter is not None:
            getter.cancel()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        if ended.done() and not ended.cancelled():
            ended.exception()   # retrieved: the error (if any) was raised above or is moot
