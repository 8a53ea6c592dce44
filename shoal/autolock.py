"""Autolock on a manager: keep this manager's key files locked with the cluster's unlock key.

The unlock key lives in the cluster object, sealed with the secrets key (never in clear in the
Raft journal); `swarm init --autolock`, `swarm update --autolock=true|false` and `swarm unlock-key
--rotate` change it there. Every manager runs `follow_unlock_key` while it runs: whenever the
cluster's key differs from the one its files are locked with, it re-locks them
(`StateDir.set_unlock_key`, which rewrites only `dek.locked` on a rotation). A manager that was down
during a rotation keeps the older key on disk until it is unlocked with that one and catches up.
"""

from __future__ import annotations

import logging

from manager.changes import ChangeSignal
from typing import TYPE_CHECKING

from manager.secretbox import UNLOCK_KEY_LABEL, InvalidUnlockKey, SecretBoxError, open_value, parse_unlock_key
from manager.state import Kind
from proto import control_pb2
from shoal.nodestate import StateDir

if TYPE_CHECKING:
    from shoal.daemon.roles import Daemon

log = logging.getLogger(__name__)


def wanted_unlock_key(cluster, secrets_key: bytes) -> bytes | None:
    """The unlock key the cluster asks its managers to lock with, None when autolock is off."""
    if cluster is None or not cluster.spec.encryption_config.auto_lock_managers or not cluster.unlock_key:
        return None
    return open_value(secrets_key, UNLOCK_KEY_LABEL, cluster.unlock_key)


async def follow_unlock_key(state: StateDir, store, secrets_key: bytes) -> None:
    """Runs until cancelled (on every manager, leader or not)."""
    changes = ChangeSignal(store, [Kind.CLUSTER])
    try:
        while True:
            try:
                wanted = wanted_unlock_key(store.view().cluster(), secrets_key)
            except SecretBoxError as err:
                log.error("autolock: cannot open the cluster's unlock key: %s", err)
            else:
                if not state.unlocked_with(wanted):
                    state.set_unlock_key(wanted)
                    log.info("autolock: this manager's keys are now %s",
                             "locked with the cluster's unlock key" if wanted else "stored unlocked")
            await changes.wait(timeout=5.0)
    finally:
        changes.close()


async def unlock(daemon: Daemon, request: control_pb2.SwarmUnlockRequest) -> control_pb2.SwarmUnlockResponse:
    """`shoal swarm unlock`: open a locked manager's keys with the unlock key and start it. Call
    with the daemon's membership lock held."""
    from shoal.daemon.config import DaemonError

    if not daemon.locked or daemon.node is None:
        raise DaemonError("precondition", "swarm is not locked")
    try:
        daemon.state.unlock(parse_unlock_key(request.unlock_key))
    except InvalidUnlockKey:
        log.warning("swarm unlock: refused a wrong unlock key")
        raise DaemonError("invalid", "swarm could not be unlocked: invalid key") from None
    daemon.locked = False
    log.info("swarm unlocked: starting this manager")
    await daemon.start_node(daemon.node)
    return control_pb2.SwarmUnlockResponse()
