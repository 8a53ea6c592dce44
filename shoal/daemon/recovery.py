"""Disaster recovery on this host: ``swarm init --force-new-cluster``, ``swarm init --restore``, backups.

- ``force_new_cluster``: this manager's roles are stopped, its store is read from its own Raft
  files (every entry it holds), the Raft state is rebuilt with this manager as the only member
  (manager.state.recovery.reset_raft_state; the old files are kept beside it), the other managers
  are demoted in the store, and the roles start again. Services, secrets, configs, networks and
  tasks are the store's, so they are all kept; workers reconnect to this manager.
- ``restore``: a fresh host (not in a swarm) becomes the only manager of the swarm in a backup
  file: the node gets a new ID and a certificate signed by the swarm's own CA (its key is in the
  store), the secrets key comes from the backup, the rest as above.
- ``backup``: a consistent snapshot of a running manager's store (one immutable view, taken after
  a read barrier when a leader is reachable) plus the secrets key, written 0600.

See docs/disaster-recovery.md. Runs under the daemon's membership lock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from manager.ca import make_node_key_and_csr, node_cert_validity
from manager.ca.rotation import signing_root
from manager.secretbox import RAFT_PASSWORD_LABEL, SecretBoxError, open_value
from manager.ids import new_id
from manager.quorum import quorum_view, single_manager_nodes
from manager.rolenames import MANAGER_OU
from manager.state import Kind, LocalProposer, MemoryStore, Store, StoreError, Tx
from manager.state.memory import snapshot_of
from manager.state.raft import read_local_state
from manager.state.recovery import RecoveryError, make_backup, read_backup_file, reset_raft_state, write_backup_file
from proto import control_pb2, objects_pb2
from proto.ports import DEFAULT_PORT
from shoal.daemon.config import DaemonError, listen_and_advertise, node_description
from shoal.nodestate import NodeState

if TYPE_CHECKING:
    from shoal.daemon.roles import Daemon

log = logging.getLogger("shoald")

READY_TIMEOUT = 15.0
CLI_DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_PORT}"
BARRIER_TIMEOUT = 3.0
DEMOTED = "no longer a manager: the swarm was rebuilt without it (swarm init --force-new-cluster or --restore)"


async def init(daemon: Daemon, request: control_pb2.SwarmInitRequest) -> control_pb2.SwarmInitResponse:
    """``swarm init`` with --force-new-cluster and/or --restore; the caller holds the lock."""
    if request.restore_file:
        if daemon.node is not None:
            raise DaemonError("precondition", "this node is already part of a swarm; restore a backup on a "
                                              "node that is not (\"shoal swarm leave --force\" first)")
        return await restore(daemon, request)
    return await force_new_cluster(daemon, request)


def _tokens(cluster: objects_pb2.Cluster, node_id: str) -> control_pb2.SwarmInitResponse:
    return control_pb2.SwarmInitResponse(node_id=node_id, worker_token=cluster.root_ca.join_tokens.worker,
                                         manager_token=cluster.root_ca.join_tokens.manager)


def _as_manager(existing: objects_pb2.Node | None, node: NodeState, hostname: str) -> objects_pb2.Node:
    """This node's object as the only manager, at its (possibly new) addresses."""
    me = objects_pb2.Node()
    if existing is not None:
        me.CopyFrom(existing)
    else:
        me.id = node.node_id
        me.description.CopyFrom(node_description(hostname, node.grpc_addr))
        me.spec.availability = objects_pb2.NodeSpec.ACTIVE
    me.role = objects_pb2.MANAGER
    me.spec.desired_role = objects_pb2.MANAGER
    me.status.state = objects_pb2.NodeStatus.READY
    me.status.message = ""
    me.status.addr = node.advertise_addr
    me.description.grpc_addr = node.grpc_addr
    me.manager_status.addr = node.grpc_addr
    me.manager_status.raft_addr = node.raft_addr
    return me


async def _rebuilt_snapshot(snapshot: bytes, node: NodeState, hostname: str) -> tuple[bytes, objects_pb2.Cluster]:
    """``snapshot`` with this node as the only manager (a local, unreplicated store does the edit)."""
    memory = MemoryStore()
    memory.restore(snapshot)
    cluster = memory.view().cluster()
    if cluster is None:
        raise DaemonError("invalid", "the store holds no cluster object: not a swarm's store")
    store = Store(memory, LocalProposer(memory))

    def fn(tx: Tx) -> None:
        current = tx.get(Kind.NODE, node.node_id)
        for changed in single_manager_nodes(memory.view().nodes(), _as_manager(current, node, hostname), DEMOTED):
            if tx.get(Kind.NODE, changed.id) is None:
                tx.create(changed)
            else:
                tx.update(changed)

    await store.update(fn, allow_split=True)
    return memory.snapshot(), cluster


async def force_new_cluster(daemon: Daemon, request: control_pb2.SwarmInitRequest) -> control_pb2.SwarmInitResponse:
    node = daemon.node
    if node is None or node.role != "manager":
        raise DaemonError("precondition", "--force-new-cluster rebuilds a swarm from this node's manager state, "
                                          "and this node is not a manager" if node is not None else
                                          "--force-new-cluster rebuilds a swarm from this node's manager state, "
                                          "and this node is not part of a swarm (to start from a backup, "
                                          "use --restore FILE)")
    if daemon.raft is not None:
        view = quorum_view(daemon.raft.status())
        if view.leader is not None and view.reachable - {view.self_addr}:
            raise DaemonError("precondition", f"--force-new-cluster is for a swarm that lost its quorum, and this "
                                              f"manager sees a leader ({view.leader}) and {len(view.reachable)} of "
                                              f"{len(view.members)} managers reachable: nothing was changed")
    # The CLI always sends --listen-addr (default 0.0.0.0:2377): that default means "unchanged".
    listen = request.listen_addr if request.listen_addr not in ("", CLI_DEFAULT_LISTEN) else node.listen_addr
    new = replace(node, raft_peers=[], managers=[])
    if request.advertise_addr or listen != node.listen_addr:
        listen_host, listen_port, advertise_host = listen_and_advertise(
            listen, request.advertise_addr or node.advertise_addr)
        new.listen_addr, new.advertise_addr = f"{listen_host}:{listen_port}", advertise_host
    new.managers = [new.grpc_addr]
    log.warning("force-new-cluster: rebuilding the swarm with this manager (%s) as its only member",
                new.grpc_addr)
    await daemon.stop_node()
    try:
        local = await asyncio.to_thread(read_local_state, daemon.state.raft_dir)
        snapshot, cluster = await _rebuilt_snapshot(local.snapshot, new, daemon.hostname)
        certificates = _certificate_for(cluster, new, daemon.state.load_secrets_key()) if new.grpc_addr != node.grpc_addr else None
        pending = daemon.state.recovery_pending(new, certificates)
        moved = await asyncio.to_thread(reset_raft_state, daemon.state.raft_dir, new.raft_addr, snapshot,
                                        local.last_index, pending=pending)
    except (StoreError, OSError, DaemonError) as err:
        await daemon.start_node(node)          # nothing was changed: carry on as before
        if isinstance(err, DaemonError):
            raise
        raise DaemonError("unavailable", f"--force-new-cluster: {err}") from err
    daemon.state.finish_recovery()             # node.json (and certificate) of the rebuilt manager
    log.warning("force-new-cluster: %d store changes kept from the local journal; the old raft state is in %s",
                local.entries_applied, moved)
    await _start_and_wait(daemon, new)
    return _tokens(cluster, new.node_id)


def _certificate_for(cluster: objects_pb2.Cluster, node: NodeState, secrets_key: bytes) -> tuple[bytes, bytes, bytes]:
    """(certificate chain, key, root) for ``node`` at its advertise address, from the swarm's own CA."""
    try:
        root = signing_root(cluster, secrets_key)   # the CA key is sealed in the store with the secrets key
        key, csr = make_node_key_and_csr()
        cert = root.sign_node_csr(csr, node.node_id, MANAGER_OU, datetime.now(timezone.utc),
                                  ip_sans=[node.advertise_addr],
                                  validity=node_cert_validity(cluster.spec.ca_config.node_cert_expiry))
    except Exception as err:       # CAError and cryptography's errors: the store's CA is unusable
        raise DaemonError("unavailable", f"cannot sign a certificate for {node.advertise_addr} with the "
                                         f"swarm's root CA: {err}") from err
    return cert + root.cert_pem, key, root.cert_pem


async def _start_and_wait(daemon: Daemon, node: NodeState) -> None:
    await daemon.start_node(node)
    assert daemon.raft is not None
    try:
        await daemon.raft.wait_ready(READY_TIMEOUT)
    except StoreError as err:
        raise DaemonError("unavailable", f"the rebuilt manager did not become ready: {err}") from err
    log.warning("swarm %s now has one manager, %s (node %s)", node.cluster_id, node.grpc_addr, node.node_id)


async def restore(daemon: Daemon, request: control_pb2.SwarmInitRequest) -> control_pb2.SwarmInitResponse:
    """Nothing is written until the backup is read, checked and turned into the new state; the
    Raft directory rename is the commit point (node.json and keys follow from the pending record)."""
    path = Path(request.restore_file)
    if not path.is_absolute():
        raise DaemonError("invalid", f"--restore {path}: give an absolute path")
    try:
        backup = await asyncio.to_thread(read_backup_file, path)
    except RecoveryError as err:
        raise DaemonError("invalid", f"--restore: {err}") from err
    listen_host, listen_port, advertise_host = listen_and_advertise(request.listen_addr, request.advertise_addr)
    node = NodeState(node_id=new_id(), role="manager", cluster_id=backup.cluster_id,
                     advertise_addr=advertise_host, listen_addr=f"{listen_host}:{listen_port}")
    node.managers = [node.grpc_addr]
    snapshot, cluster = await _rebuilt_snapshot(backup.snapshot, node, daemon.hostname)
    if not cluster.raft_password or not cluster.root_ca.ca_key:
        raise DaemonError("invalid", f"--restore {path}: the swarm in it has no raft password or CA key")
    try:
        raft_password = open_value(backup.secrets_key, RAFT_PASSWORD_LABEL, cluster.raft_password)
    except SecretBoxError as err:
        raise DaemonError("invalid", f"--restore {path}: {err}") from None
    pending = daemon.state.recovery_pending(node, _certificate_for(cluster, node, backup.secrets_key),
                                            raft_password=raft_password, secrets_key=backup.secrets_key)
    try:
        await asyncio.to_thread(reset_raft_state, daemon.state.raft_dir, node.raft_addr, snapshot, pending=pending)
        daemon.state.finish_recovery()
        await _start_and_wait(daemon, node)
    except BaseException:
        await daemon.stop_node()
        daemon.node = None
        daemon.state.wipe()
        raise
    log.warning("swarm %s restored from %s (taken %s, store version %d) with this node %s as its manager",
                backup.cluster_id, path, backup.created, backup.store_version, node.node_id)
    return _tokens(cluster, node.node_id)


async def backup(daemon: Daemon, request: control_pb2.SwarmBackupRequest) -> control_pb2.SwarmBackupResponse:
    """Write a backup of this manager's store; writes may go on meanwhile (one immutable view is used)."""
    manager, raft = daemon.manager, daemon.raft
    if manager is None or raft is None:
        raise DaemonError("precondition", "this node is not a swarm manager: backups are taken on a manager")
    path = Path(request.path)
    if not path.is_absolute():
        raise DaemonError("invalid", f"backup {path}: give an absolute path")
    if not path.parent.is_dir():
        raise DaemonError("invalid", f"backup {path}: directory {path.parent} does not exist")
    confirmed = True
    try:
        await raft.wait_ready(BARRIER_TIMEOUT)   # everything committed before now is applied here
    except StoreError as err:
        confirmed = False
        log.warning("backup: no leader confirmed this manager is up to date (%s); writing its local state", err)
    snapshot = snapshot_of(manager.store.view())
    try:
        made = make_backup(snapshot, daemon.state.load_secrets_key())
        await asyncio.to_thread(write_backup_file, path, made)
    except RecoveryError as err:
        raise DaemonError("invalid", str(err)) from err
    log.info("backup of swarm %s (store version %d) written to %s", made.cluster_id, made.store_version, path)
    return control_pb2.SwarmBackupResponse(path=str(path), cluster_id=made.cluster_id,
                                           store_version=made.store_version, objects=made.objects,
                                           confirmed=confirmed)

