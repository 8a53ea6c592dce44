"""The garbage collector's settings for Shoal's long-running daemons.

The leader's state is a large graph of long-lived containers: every node of the store's
persistent maps (immutables.Map, a HAMT) is a GC-tracked object, and each commit makes new ones.
With CPython's default generation-0 threshold (700 allocations) a manager at 100,000 tasks spent
about 37 % of its CPU in the collector (bench/schedule.py, docs/leader-scale.md "Garbage
collection"): frequent young collections, and full collections that walk the whole store.

``tune()``, called once after start-up:

- ``gc.freeze()`` moves everything allocated so far (modules, classes, the parsed protobuf
  descriptors, configuration) into the permanent generation, so no collection walks it again;
- raises the generation-0 threshold to GEN0_THRESHOLD, so young collections run about 30 times
  less often; the older generations keep their ratios, and reference cycles are still collected.

Neither changes what is freed, only when: memory held by garbage cycles waits a little longer.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 20_000     # CPython's default: 700


def tune(gen0: int = GEN0_THRESHOLD) -> None:
    """Freeze what start-up allocated and raise the generation-0 threshold (see the module docstring)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)
