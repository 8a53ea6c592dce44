"""The key manager: the network keyring is filled to 3 keys, rotated one key per interval, kept
across leader restarts and written compare-and-set. Time is a fake clock throughout."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from manager.keymanager import (KEY_LENGTH, KEYRING_SIZE, MIN_SPI, SUBSYSTEM_IPSEC, KeyManager,
                                KeyManagerError, ipsec_keys, next_rotation, plan_keyring)
from manager.state import Kind, LocalProposer, MemoryStore, Store
from proto import objects_pb2
from tests.support.clock import FakeClock

HOUR = 3600.0
INTERVAL = 12 * HOUR
T0 = 1_700_000_000.0


def counting_bytes():
    """A deterministic random source: distinct bytes on every call."""
    counter = itertools.count(1)
    return lambda n: (next(counter) + 0x10000).to_bytes(n, "big")


async def cluster_store(clock: FakeClock, cluster: objects_pb2.Cluster | None = None) -> Store:
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory), clock=clock)
    cluster = cluster or objects_pb2.Cluster(id="c1")
    cluster.spec.annotations.name = "default"
    await store.update(lambda tx: tx.create(cluster))
    return store


def keyring(store: Store) -> list[objects_pb2.EncryptionKey]:
    return ipsec_keys(store.view().cluster())


def fingerprint(keys) -> list[tuple[bytes, int, int]]:
    return [(k.key, k.spi, k.lamport_time) for k in keys]


# -- plan_keyring (pure) -------------------------------------------------------------------------

def test_a_new_cluster_gets_three_distinct_keys():
    planned = plan_keyring(objects_pb2.Cluster(id="c1"), T0)
    keys = ipsec_keys(planned)
    assert len(keys) == KEYRING_SIZE == 3
    assert all(k.subsystem == SUBSYSTEM_IPSEC and k.algorithm == objects_pb2.EncryptionKey.AES_128_GCM
               for k in keys)
    assert all(len(k.key) == KEY_LENGTH == 16 for k in keys)
    assert len({k.key for k in keys}) == 3
    assert len({k.spi for k in keys}) == 3 and all(k.spi >= MIN_SPI for k in keys)
    assert [k.lamport_time for k in keys] == [1, 2, 3] and planned.encryption_key_lamport_clock == 3
    assert all(k.created_at == T0 for k in keys)


def test_nothing_is_due_before_the_interval():
    full = plan_keyring(objects_pb2.Cluster(id="c1"), T0)
    assert plan_keyring(full, T0 + INTERVAL - 1, INTERVAL) is None
    assert next_rotation(full, INTERVAL) == T0 + INTERVAL


def test_a_rotation_replaces_the_oldest_key_only():
    full = plan_keyring(objects_pb2.Cluster(id="c1"), T0)
    rotated = plan_keyring(full, T0 + INTERVAL, INTERVAL)
    before, after = ipsec_keys(full), ipsec_keys(rotated)
    assert len(after) == 3
    assert fingerprint(after[:2]) == fingerprint(before[1:])           # the two newest stay
    assert after[2].lamport_time == 4 and after[2].created_at == T0 + INTERVAL
    assert after[2].key not in {k.key for k in before} and after[2].spi not in {k.spi for k in before}
    assert rotated.encryption_key_lamport_clock == 4
    assert next_rotation(rotated, INTERVAL) == T0 + 2 * INTERVAL


def test_many_rotations_never_reuse_a_key_and_keep_spis_unique_in_the_ring():
    cluster = plan_keyring(objects_pb2.Cluster(id="c1"), T0)
    seen = {k.key for k in ipsec_keys(cluster)}
    for i in range(1, 30):
        cluster = plan_keyring(cluster, T0 + i * INTERVAL, INTERVAL)
        keys = ipsec_keys(cluster)
        assert len({k.spi for k in keys}) == 3
        assert keys[-1].key not in seen
        seen.add(keys[-1].key)
        assert [k.lamport_time for k in keys] == [i + 1, i + 2, i + 3]


def test_repeated_random_draws_are_skipped():
    full = plan_keyring(objects_pb2.Cluster(id="c1"), T0, random_bytes=counting_bytes())
    newest = ipsec_keys(full)[-1]
    spi_bytes = newest.spi.to_bytes(4, "big")
    draws = iter([newest.key, newest.key, b"\x01" * 16,             # key: two repeats, then new
                  spi_bytes, b"\x00\x00\x00\x05", b"\x00\x00\x10\x00"])  # SPI: taken, reserved, new
    rotated = plan_keyring(full, T0 + INTERVAL, INTERVAL, random_bytes=lambda n: next(draws))
    added = ipsec_keys(rotated)[-1]
    assert added.key == b"\x01" * 16 and added.spi == 0x1000


def test_a_random_source_that_repeats_itself_is_an_error():
    full = plan_keyring(objects_pb2.Cluster(id="c1"), T0, random_bytes=counting_bytes())
    stuck = ipsec_keys(full)[-1].key
    with pytest.raises(KeyManagerError, match="network key 4"):
        plan_keyring(full, T0 + INTERVAL, INTERVAL, random_bytes=lambda n: stuck[:n])


def test_a_clock_stepped_far_back_still_rotates():
    full = plan_keyring(objects_pb2.Cluster(id="c1"), T0)
    assert plan_keyring(full, T0 - 2 * INTERVAL, INTERVAL) is not None
    assert plan_keyring(full, T0 - INTERVAL / 2, INTERVAL) is None


def test_a_partial_keyring_is_filled_and_other_subsystems_are_kept():
    cluster = objects_pb2.Cluster(id="c1", encryption_key_lamport_clock=7)
    cluster.network_bootstrap_keys.add(subsystem="networking:gossip", key=b"g" * 16, lamport_time=2, spi=300)
    cluster.network_bootstrap_keys.add(subsystem=SUBSYSTEM_IPSEC, key=b"k" * 16, lamport_time=5, spi=400,
                                       created_at=T0)
    planned = plan_keyring(cluster, T0 + 1)
    keys = ipsec_keys(planned)
    assert [k.lamport_time for k in keys] == [5, 8, 9] and keys[0].key == b"k" * 16
    assert [k.subsystem for k in planned.network_bootstrap_keys].count("networking:gossip") == 1


# -- the leader component ------------------------------------------------------------------------

async def test_the_leader_fills_the_keyring_and_rotates_only_when_due():
    clock = FakeClock(T0)
    store = await cluster_store(clock)
    manager = KeyManager(store, clock, rotation_interval=INTERVAL)
    await manager._pass()
    first = keyring(store)
    assert len(first) == 3 and manager.rotations == 1

    clock.now = T0 + INTERVAL - 1
    assert not manager._has_work()
    await manager._pass()
    assert fingerprint(keyring(store)) == fingerprint(first)

    clock.now = T0 + INTERVAL
    assert manager._has_work()
    await manager._pass()
    second = keyring(store)
    assert fingerprint(second[:2]) == fingerprint(first[1:]) and second[2].lamport_time == 4
    assert manager.rotations == 2


async def test_a_new_leader_keeps_the_keyring_and_the_schedule():
    clock = FakeClock(T0)
    store = await cluster_store(clock)
    await KeyManager(store, clock, rotation_interval=INTERVAL)._pass()
    first = keyring(store)

    clock.now = T0 + 5 * HOUR       # the leader restarts (or another manager takes over)
    successor = KeyManager(store, clock, rotation_interval=INTERVAL)
    await successor._pass()
    assert fingerprint(keyring(store)) == fingerprint(first) and successor.rotations == 0

    clock.now = T0 + INTERVAL       # due from the newest key, not from the takeover
    await successor._pass()
    assert keyring(store)[-1].lamport_time == 4 and successor.rotations == 1


async def test_a_concurrent_cluster_change_is_kept_and_the_keyring_written_on_top():
    clock = FakeClock(T0)
    store = await cluster_store(clock)
    memory = store.memory_store
    other = Store(memory, LocalProposer(memory), clock=clock)

    class RacingProposer(LocalProposer):
        """Commits an operator's cluster update just before the key manager's own proposal."""
        raced = False

        async def propose(self, change, timeout):
            if not self.raced:
                self.raced = True

                def rename(tx):
                    cluster = objects_pb2.Cluster()
                    cluster.CopyFrom(tx.get(Kind.CLUSTER, "c1"))
                    cluster.spec.annotations.labels["changed"] = "yes"
                    tx.update(cluster)
                await other.update(rename)
            return await super().propose(change, timeout)

    racing = Store(memory, RacingProposer(memory), clock=clock)
    manager = KeyManager(racing, clock, rotation_interval=INTERVAL)
    await manager._pass()
    assert keyring(racing) == [] and manager._has_work()        # conflicted: nothing overwritten
    await manager._pass()
    cluster = racing.view().cluster()
    assert len(ipsec_keys(cluster)) == 3 and cluster.spec.annotations.labels["changed"] == "yes"


async def test_the_running_component_notices_a_due_rotation_on_its_clock():
    clock = FakeClock(T0)
    store = await cluster_store(clock)
    manager = KeyManager(store, clock, rotation_interval=INTERVAL, recheck=0.01)
    task = asyncio.create_task(manager.run())
    try:
        while manager.rotations < 1:
            await asyncio.sleep(0.01)
        first = keyring(store)
        clock.now = T0 + INTERVAL + 1
        while manager.rotations < 2:
            await asyncio.sleep(0.01)
        assert keyring(store)[-1].lamport_time == 4
        assert fingerprint(keyring(store)[:2]) == fingerprint(first[1:])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_component_waits_for_swarm_init():
    clock = FakeClock(T0)
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory), clock=clock)

    class CountingPasses(KeyManager):
        passes = 0

        async def _pass(self) -> None:
            await super()._pass()
            self.passes += 1

    manager = CountingPasses(store, clock, rotation_interval=INTERVAL, recheck=0.01)
    task = asyncio.create_task(manager.run())
    try:
        while manager.passes < 1:       # it has looked at the store (and found no cluster)
            await asyncio.sleep(0.01)
        assert manager.rotations == 0
        await store.update(lambda tx: tx.create(objects_pb2.Cluster(id="c1")))
        while manager.rotations < 1:
            await asyncio.sleep(0.01)
        assert len(keyring(store)) == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_interval_must_be_positive():
    with pytest.raises(ValueError, match="rotation interval"):
        KeyManager(None, rotation_interval=0)
