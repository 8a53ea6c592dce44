"""A store for tests: the real Store and MemoryStore over a LocalProposer (no Raft)."""

from __future__ import annotations

from manager.state import LocalProposer, MemoryStore, Store


async def store_with(*objects) -> Store:
    """A Store holding ``objects``, created in one transaction."""
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))

    def fill(tx):
        for obj in objects:
            tx.create(obj)
    await store.update(fill)
    return store
