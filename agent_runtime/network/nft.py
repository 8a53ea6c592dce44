"""Load nftables rulesets with the ``nft`` binary: one ``nft -f -`` process is one atomic transaction.

In a container's netns the process runs under ``nsenter --net=/run/netns/NAME`` (no mount
namespace change, unlike ``ip netns exec``). ``pyroute2.nftables`` is a prototype without numgen,
maps or multi-object batches, so it is not used (feasibility note, section D).
"""

from __future__ import annotations

import asyncio
import logging

from agent_runtime.network import netns
from agent_runtime.network.errors import NetworkError

log = logging.getLogger(__name__)


def _argv(namespace: str | None, *args: str) -> list[str]:
    prefix = ["nsenter", f"--net={netns.path(namespace)}", "--"] if namespace else []
    return [*prefix, "nft", *args]


async def apply(ruleset: str, namespace: str | None = None) -> None:
    """Load ``ruleset`` (text) as one transaction, in ``namespace`` or in runtimed's own netns.

    Raises NetworkError with nft's message (which quotes the failing line); nothing of the
    transaction is applied then.
    """
    proc = await asyncio.create_subprocess_exec(
        *_argv(namespace, "-f", "-"), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate(ruleset.encode())
    if proc.returncode != 0:
        where = f"netns {namespace}" if namespace else "the host netns"
        log.debug("rejected ruleset for %s:\n%s", where, ruleset)
        raise NetworkError(f"nft in {where}: {err.decode(errors='replace').strip()}")
