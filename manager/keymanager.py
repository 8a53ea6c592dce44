"""The key manager (leader only): the keyring of encrypted overlays, SwarmKit's keymanager.

The cluster object holds the keyring, ``Cluster.network_bootstrap_keys``: ``KEYRING_SIZE`` (3)
keys of the ``networking:ipsec`` subsystem, each 16 random bytes with an IPsec SPI unique in the
keyring (never below 256: SPIs 1-255 are reserved) and a Lamport time taken from
``Cluster.encryption_key_lamport_clock``, which only grows. The dispatcher sends the keyring to
the nodes that carry a network created with ``--opt encrypted`` (manager/dispatcher/netstate.py);
the ControlAPI never returns it.

What the leader does (``plan_keyring``, pure):

* a cluster with fewer than 3 keys gets new ones until it has 3 (after ``swarm init``, or after
  an upgrade from a store that had none);
* once the newest key is ``rotation_interval`` old (SwarmKit's 12 h), one new key is added and
  the oldest (lowest Lamport time) dropped, so a node always holds the key before and the key
  after the one it sends with. A newest key dated more than one interval in the future (the
  clock went back) counts as due too, so a clock step cannot stop rotation.

The schedule lives in the store (each key's ``created_at``), not in the leader's memory: a new
leader, or a restarted one, keeps the keyring and rotates when the newest key is due, not an
interval after it took over. Writes are compare-and-set on the cluster's version; a conflict
(someone else changed the cluster) is looked at again from the new version.

Runs on the store's loop as a ``StoreLoop``; ``run()`` until cancelled. The clock and the random
source are injectable for tests.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Callable

from manager.state import Kind, ReadView
from manager.storeloop import StoreLoop
from proto import objects_pb2

log = logging.getLogger(__name__)

SUBSYSTEM_IPSEC = "networking:ipsec"
KEY_LENGTH = 16                   # bytes, AES-128 (SwarmKit's DefaultKeyLen)
KEYRING_SIZE = 3                  # SwarmKit's keyringSize
ROTATION_INTERVAL = 12 * 3600.0   # seconds (SwarmKit's DefaultKeyRotationInterval)
MIN_SPI = 0x100                   # SPIs 1-255 are reserved by IANA; 0 means "none"
TIMER_RECHECK = 60.0              # at most this long between looks at the clock
MAX_DRAWS = 64                    # random draws per key before giving up (a broken random source)


class KeyManagerError(Exception):
    """The key manager cannot make a key (its random source keeps repeating itself)."""


def ipsec_keys(cluster: objects_pb2.Cluster | None) -> list[objects_pb2.EncryptionKey]:
    """The cluster's IPsec keys, oldest (lowest Lamport time) first; [] without a cluster."""
    if cluster is None:
        return []
    keys = [k for k in cluster.network_bootstrap_keys if k.subsystem == SUBSYSTEM_IPSEC]
    return sorted(keys, key=lambda k: (k.lamport_time, k.spi))


def next_rotation(cluster: objects_pb2.Cluster | None, interval: float) -> float | None:
    """When the next key is due (on the clock that made the keys): the newest key's ``created_at``
    plus ``interval``; None without a cluster; 0.0 (now) while the keyring is not full."""
    if cluster is None:
        return None
    keys = ipsec_keys(cluster)
    if len(keys) < KEYRING_SIZE:
        return 0.0
    return max(k.created_at for k in keys) + interval


def _new_key(taken: list[objects_pb2.EncryptionKey], lamport_time: int, now: float,
             random_bytes: Callable[[int], bytes]) -> objects_pb2.EncryptionKey:
    """A fresh key whose bytes and SPI differ from every key in ``taken``."""
    used_keys = {k.key for k in taken}
    used_spis = {k.spi for k in taken}
    key = spi = None
    for _ in range(MAX_DRAWS):
        candidate = random_bytes(KEY_LENGTH)
        if len(candidate) == KEY_LENGTH and candidate not in used_keys:
            key = candidate
            break
    for _ in range(MAX_DRAWS):
        candidate = int.from_bytes(random_bytes(4), "big")
        if candidate >= MIN_SPI and candidate not in used_spis:
            spi = candidate
            break
    if key is None or spi is None:
        raise KeyManagerError(f"make network key {lamport_time}: {MAX_DRAWS} random draws gave no "
                              f"{'key' if key is None else 'SPI'} unlike the keyring's")
    return objects_pb2.EncryptionKey(subsystem=SUBSYSTEM_IPSEC, algorithm=objects_pb2.EncryptionKey.AES_128_GCM,
                                     key=key, lamport_time=lamport_time, spi=spi, created_at=now)


def plan_keyring(cluster: objects_pb2.Cluster, now: float, interval: float = ROTATION_INTERVAL,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> objects_pb2.Cluster | None:
    """The cluster with its keyring filled or rotated as of ``now`` (see the module docstring), as a
    new object; None when nothing is due. Keys of other subsystems are kept as they are.

    Pure except for ``random_bytes``; raises KeyManagerError if that keeps repeating itself.
    """
    keys = ipsec_keys(cluster)
    newest = max((k.created_at for k in keys), default=0.0)
    if len(keys) < KEYRING_SIZE:
        wanted = KEYRING_SIZE - len(keys)
    elif newest + interval <= now or newest > now + interval:
        wanted = 1
    elif len(keys) == KEYRING_SIZE:
        return None
    else:
        wanted = 0                       # too many keys (never written by this code): trim only
    out = objects_pb2.Cluster()
    out.CopyFrom(cluster)
    clock = max([cluster.encryption_key_lamport_clock, *(k.lamport_time for k in keys)])
    for _ in range(wanted):
        clock += 1
        keys.append(_new_key(keys, clock, now, random_bytes))
    keys = keys[-KEYRING_SIZE:]          # drop the oldest beyond the keyring's size
    others = [k for k in cluster.network_bootstrap_keys if k.subsystem != SUBSYSTEM_IPSEC]
    del out.network_bootstrap_keys[:]
    out.network_bootstrap_keys.extend(others + keys)
    out.encryption_key_lamport_clock = clock
    return out


class KeyManager(StoreLoop):
    """Fills and rotates the network keyring. See the module docstring."""

    name = "key manager"
    watched = (Kind.CLUSTER,)

    def __init__(self, store, clock: Callable[[], float] = time.time,
                 rotation_interval: float = ROTATION_INTERVAL, recheck: float = TIMER_RECHECK,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        if rotation_interval <= 0:
            raise ValueError(f"key manager: rotation interval must be positive, not {rotation_interval}")
        super().__init__(store, clock)
        self.rotation_interval = rotation_interval
        self.recheck = recheck
        self._random_bytes = random_bytes
        self._dirty = True
        self._due_at: float | None = None
        self.rotations = 0      # keyring writes committed so far (for tests and metrics)

    def _resync(self, view: ReadView) -> None:
        self._dirty = True

    def _has_work(self) -> bool:
        return self._dirty or (self._due_at is not None and self._clock() >= self._due_at)

    def _note(self, event) -> None:
        self._dirty = True      # only the cluster is watched: look at its keyring again

    def _wake_at(self) -> float | None:
        return self._due_at

    async def _pass(self) -> None:
        self._dirty = False
        cluster = self._store.view().cluster()
        if cluster is None:             # before `swarm init` wrote it: wait for it
            self._due_at = None
            return
        if plan_keyring(cluster, self._clock(), self.rotation_interval, self._random_bytes) is None:
            self._due_at = next_rotation(cluster, self.rotation_interval)
            return

        def fn(tx):
            current = tx.get(Kind.CLUSTER, cluster.id)
            if current is None:
                return None
            planned = plan_keyring(current, self._clock(), self.rotation_interval, self._random_bytes)
            if planned is not None:
                tx.update(planned)
            return planned

        written, planned = await self._propose(fn, "the network keyring")
        if not written:
            self._dirty = True
            return
        if planned is None:
            self._due_at = next_rotation(self._store.view().cluster(), self.rotation_interval)
            return
        self.rotations += 1
        self._due_at = next_rotation(planned, self.rotation_interval)
        log.info("network keyring of cluster %s now has keys %s", cluster.id,
                 ", ".join(str(k.lamport_time) for k in ipsec_keys(planned)))
