"""CARotation (leader only): moves a root CA rotation through its phases as nodes report in.

The phases and the reasons are in manager/ca/rotation.py; this component only watches the
cluster and the nodes (whose session descriptions carry their TLS info) and writes
`rotation.advance` when it returns a change. Compare-and-set on the cluster object: a conflict
is looked at again from the new version.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from manager.ca import rotation
from manager.state import Kind, ReadView
from manager.storeloop import StoreLoop

log = logging.getLogger(__name__)


class CARotation(StoreLoop):
    name = "ca rotation"
    watched = (Kind.CLUSTER, Kind.NODE)

    def __init__(self, store, clock: Callable[[], float] = time.time) -> None:
        super().__init__(store, clock)
        self._dirty = True

    def _resync(self, view: ReadView) -> None:
        self._dirty = True

    def _has_work(self) -> bool:
        return self._dirty

    def _note(self, event) -> None:
        self._dirty = True

    async def _pass(self) -> None:
        self._dirty = False
        view = self._store.view()
        cluster = view.cluster()
        if cluster is None or rotation.advance(cluster, view.nodes()) is None:
            return

        def fn(tx):
            current = tx.view.cluster()
            step = rotation.advance(current, tx.view.nodes()) if current is not None else None
            if step is not None:
                tx.update(step)
            return step

        written, step = await self._propose(fn, "the CA rotation")
        if not written:
            self._dirty = True
            return
        if step is None:
            return
        if rotation.in_rotation(step):
            log.info("CA rotation: every node trusts the new root; re-issuing node certificates from it")
        else:
            log.info("CA rotation finished: the root CA is now sha256:%s; the old root is no longer trusted",
                        step.root_ca.ca_digest)
