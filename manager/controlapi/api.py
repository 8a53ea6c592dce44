"""ControlAPI: the cluster half of what the shoal CLI calls.

Methods take a request message and return a response message, or raise
``ControlError`` with a code ("not_found", "invalid", "conflict", "precondition",
"unavailable") that the daemon's gRPC edge turns into a status code. Reads come from
this manager's store view; writes are proposed through Raft from whichever manager
the CLI talks to.
"""

from __future__ import annotations

import datetime
import logging
import time

import grpc

from manager import versions
from manager.ca import CAError, JoinTokens, node_cert_validity, rotation
from manager.ca.certificates import CLIENT_CERT_VALIDITY
from manager.controlapi.limits import LimitError, check_labels, cut_message
from manager.secretbox import (UNLOCK_KEY_LABEL, SecretBoxError, format_unlock_key, new_unlock_key, open_value,
                               seal_value)
from manager.controlapi.nodes import NodeLookupError, node_matches, resolve_node
from manager.membership.promotion import DemotionRefused, check_demotion
from manager.quorum import QuorumView, node_as_seen, quorum_view
from manager.state import Kind, NameConflict, StoreError, VersionConflict, raft_timings
from proto import control_pb2, objects_pb2

log = logging.getLogger(__name__)


class ControlError(Exception):
    """A refused call: ``code`` (see GRPC_STATUS) and a message, cut to what a gRPC status carries."""

    def __init__(self, code: str, message: str):
        super().__init__(cut_message(message))
        self.code = code


# The gRPC status a ControlError's code is served as.
GRPC_STATUS = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "conflict": grpc.StatusCode.ABORTED,
    "precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
}


def name_conflict_message(kind: str, name: str, existing_id: str) -> str:
    """Docker's words for a create whose name is taken (``kind``: service, network, secret, config)."""
    if kind == "network":
        return f"network with name {name} already exists"
    if kind == "service":
        return f"name conflicts with an existing object: service {name} already exists ({existing_id})"
    return f"{kind} {name} already exists ({existing_id})"


async def write(store, fn, what: str, *, retry: bool = False):
    """``store.update(fn)`` for a ControlAPI call: a conflict or a failed proposal becomes a
    ControlError ("conflict", "unavailable") that names ``what``. With ``retry``, a conflict
    re-runs ``fn`` on a fresh view a few times first: for calls that take no version from the
    user (``service rm``), where a leader component's concurrent write is no reason to fail."""
    try:
        return await (store.update_retry(fn) if retry else store.update(fn))
    except NameConflict as err:
        # Another manager's create of the same name committed first (the store checks names when
        # it applies a change): the loser gets the same answer the name check gives up front.
        raise ControlError("conflict", name_conflict_message(err.kind, err.name, err.existing_id)) from err
    except VersionConflict as err:
        raise ControlError("conflict", f"{what}: update out of sequence ({err}); read it again and retry") from err
    except StoreError as err:
        raise ControlError("unavailable", f"{what}: {err}") from err


def _public_cluster(cluster: objects_pb2.Cluster) -> objects_pb2.Cluster:
    out = objects_pb2.Cluster()
    out.CopyFrom(cluster)
    out.root_ca.ClearField("ca_key")
    out.root_ca.root_rotation.ClearField("ca_key")
    out.spec.ca_config.ClearField("signing_ca_key")
    out.ClearField("raft_password")
    out.ClearField("unlock_key")
    out.ClearField("network_bootstrap_keys")   # overlay IPsec keys: only for nodes that carry the network
    return out


class ControlAPI:
    """All methods run on the manager's asyncio loop."""

    def __init__(self, store, raft, secrets_key: bytes = b""):
        self._store = store
        self._raft = raft
        self._secrets_key = secrets_key
        from manager.controlapi.services import ServiceControl  # here: services.py imports ControlError
        self.services = ServiceControl(store)
        from manager.controlapi.networks import NetworkControl
        self.networks = NetworkControl(store)
        from manager.controlapi.secrets import SecretControl
        from manager.secretbox import SecretBox
        self.secrets = SecretControl(store, SecretBox(secrets_key))

    # -- helpers ---------------------------------------------------------------
    def _raft_view(self) -> tuple[str | None, set[str]]:
        view = quorum_view(self._raft.status())
        return view.leader, set(view.reachable)

    def _decorate(self, node: objects_pb2.Node, view: QuorumView | None = None) -> objects_pb2.Node:
        """``node`` as this manager can vouch for it now (manager.quorum.node_as_seen)."""
        return node_as_seen(node, view or quorum_view(self._raft.status()))

    def _lookup(self, ref: str) -> objects_pb2.Node:
        try:
            return resolve_node(self._store.view().nodes(), ref)
        except NodeLookupError as err:
            raise ControlError("not_found" if err.not_found else "invalid", str(err)) from err

    # -- nodes -------------------------------------------------------------------
    async def list_nodes(self, request: control_pb2.ListNodesRequest) -> control_pb2.ListNodesResponse:
        view = quorum_view(self._raft.status())
        nodes = [self._decorate(n, view) for n in self._store.view().nodes()
                 if node_matches(n, dict(request.filters))]
        nodes.sort(key=lambda n: (n.description.hostname, n.id))
        return control_pb2.ListNodesResponse(nodes=nodes)

    async def get_node(self, request: control_pb2.GetNodeRequest) -> control_pb2.GetNodeResponse:
        return control_pb2.GetNodeResponse(node=self._decorate(self._lookup(request.node_id)))

    async def update_node(self, request: control_pb2.UpdateNodeRequest) -> control_pb2.UpdateNodeResponse:
        node = self._lookup(request.node_id)
        if request.version and request.version != node.meta.version:
            raise ControlError("conflict", f"update node {node.id}: update out of sequence "
                                           f"(version {request.version}, current {node.meta.version})")
        if request.spec.desired_role == objects_pb2.WORKER and node.role == objects_pb2.MANAGER:
            leader, reachable = self._raft_view()
            try:
                check_demotion(self._store.view().nodes(), node.id, reachable)
            except DemotionRefused as err:
                raise ControlError("precondition", str(err)) from err
        try:
            check_labels(request.spec.annotations.labels, "--label-add")
        except LimitError as err:
            raise ControlError("invalid", f"update node {node.id}: {err}") from None

        def fn(tx):
            current = tx.get(Kind.NODE, node.id)
            if current is None:
                raise ControlError("not_found", f"node {node.id} not found")
            new = objects_pb2.Node()
            new.CopyFrom(current)
            new.spec.CopyFrom(request.spec)
            if new != current:
                tx.update(new)
            return new.id

        await write(self._store, fn, f"update node {node.id}")
        return control_pb2.UpdateNodeResponse(node=self._decorate(self._store.view().get(Kind.NODE, node.id)))

    async def remove_node(self, request: control_pb2.RemoveNodeRequest) -> control_pb2.RemoveNodeResponse:
        node = self._lookup(request.node_id)
        label = f"{node.description.hostname} ({node.id})"
        if node.role == objects_pb2.MANAGER or node.spec.desired_role == objects_pb2.MANAGER:
            raise ControlError("precondition",
                               f"node {label} is a cluster manager and is a member of the raft cluster; "
                               "it must be demoted to worker before removal")
        if node.status.state == objects_pb2.NodeStatus.READY and not request.force:
            raise ControlError("precondition",
                               f"node {label} is not down and can't be removed; "
                               "stop it first or use --force")

        def fn(tx):
            current = tx.get(Kind.NODE, node.id)
            if current is None:
                return
            if current.status.state == objects_pb2.NodeStatus.READY and not request.force:
                raise ControlError("precondition", f"node {label} is not down and can't be removed; "
                                                   "stop it first or use --force")
            tx.delete(current)

        # The dispatcher writes node status all the time: a conflict re-reads and re-checks.
        await write(self._store, fn, f"remove node {node.id}", retry=True)
        log.info("node %s removed", node.id)
        return control_pb2.RemoveNodeResponse()

    # -- cluster -------------------------------------------------------------------
    async def get_cluster(self, request=None) -> control_pb2.GetClusterResponse:
        cluster = self._store.view().cluster()
        if cluster is None:
            raise ControlError("unavailable", "the swarm has no cluster object yet")
        return control_pb2.GetClusterResponse(cluster=_public_cluster(cluster))

    def _require(self, feature: str) -> None:
        """Refuse, before anything is proposed, a change older managers could not use (manager.versions)."""
        why = versions.missing(self._store.view(), feature)
        if why:
            raise ControlError("precondition", f"update cluster: {why}")

    def _autolock(self, new: objects_pb2.Cluster, rotate: bool) -> None:
        """Keep the cluster's unlock key in line with the spec (Docker's autolock): made when
        autolock is turned on or the key rotated, dropped when it is turned off. Sealed with the
        secrets key, so the Raft journal never holds it in clear."""
        wanted = new.spec.encryption_config.auto_lock_managers
        if rotate and not wanted:
            raise ControlError("invalid", "cannot rotate because autolock is not turned on")
        if not wanted:
            new.ClearField("unlock_key")
            return
        if new.unlock_key and not rotate:
            return
        self._require("autolock")
        if not self._secrets_key:
            raise ControlError("precondition", "autolock needs the swarm's secrets key, which this manager does "
                                               "not have (a swarm made by an earlier version)")
        new.unlock_key = seal_value(self._secrets_key, UNLOCK_KEY_LABEL, new_unlock_key())

    async def get_unlock_key(self, request: control_pb2.GetUnlockKeyRequest) -> control_pb2.GetUnlockKeyResponse:
        cluster = self._store.view().cluster()
        if cluster is None or not cluster.unlock_key:
            return control_pb2.GetUnlockKeyResponse()
        try:
            key = open_value(self._secrets_key, UNLOCK_KEY_LABEL, cluster.unlock_key)
        except SecretBoxError as err:
            raise ControlError("unavailable", f"get unlock key: {err}") from None
        return control_pb2.GetUnlockKeyResponse(unlock_key=format_unlock_key(key))

    async def issue_client_certificate(self, request: control_pb2.IssueClientCertificateRequest
                                       ) -> control_pb2.IssueClientCertificateResponse:
        """A remote-API client certificate for the CSR's key (manager.ca.clients), signed by the CA
        that signs node certificates now, with the roots nodes trust now (Docker's ca.pem)."""
        cluster = self._store.view().cluster()
        if cluster is None:
            raise ControlError("unavailable", "issue client certificate: the cluster object is not in the store yet")
        if request.expiry_seconds < 0:
            raise ControlError("invalid", f"issue client certificate: invalid expiry {request.expiry_seconds}s")
        validity = (datetime.timedelta(seconds=request.expiry_seconds) if request.expiry_seconds
                    else CLIENT_CERT_VALIDITY)
        try:
            signer = rotation.signing_root(cluster, self._secrets_key)
            cert = signer.sign_client_csr(request.csr, request.name, datetime.datetime.now(datetime.timezone.utc),
                                          validity)
        except CAError as err:
            raise ControlError("invalid", f"issue client certificate: {err}") from None
        log.info("issued client certificate %r valid for %s", request.name, validity)
        return control_pb2.IssueClientCertificateResponse(certificate=cert, root_ca=rotation.trusted_roots(cluster))

    def _maybe_rotate_ca(self, current: objects_pb2.Cluster, new: objects_pb2.Cluster) -> objects_pb2.Cluster:
        """Start a root CA rotation (manager.ca.rotation) if the spec asks for one: a changed
        force_rotate, or a signing CA certificate + key. The key never stays in the spec; the
        certificate is not kept either (a later update without it must not rotate again)."""
        ca = new.spec.ca_config
        given = bool(ca.signing_ca_cert or ca.signing_ca_key)
        forced = ca.force_rotate != current.root_ca.last_forced_rotation
        if not given and not forced:
            return new
        self._require("ca-rotation")
        try:
            root = rotation.new_root_for(new, ca.signing_ca_cert, ca.signing_ca_key,
                                         datetime.datetime.now(datetime.timezone.utc))
            out = rotation.start(new, root, time.time(), self._secrets_key)
        except CAError as err:
            raise ControlError("invalid", f"update cluster: CA rotation: {err}") from None
        out.root_ca.last_forced_rotation = ca.force_rotate
        out.spec.ca_config.ClearField("signing_ca_cert")
        out.spec.ca_config.ClearField("signing_ca_key")
        log.info("CA rotation started: new root sha256:%s", root.digest)
        return out

    async def update_cluster(self, request: control_pb2.UpdateClusterRequest) -> control_pb2.UpdateClusterResponse:
        if request.spec.dispatcher.heartbeat_period < 0:
            raise ControlError("invalid", "update cluster: dispatcher heartbeat period must be positive")
        ticks_problem = raft_timings.check_ticks(request.spec.raft.election_tick, request.spec.raft.heartbeat_tick)
        if ticks_problem:
            raise ControlError("invalid", f"update cluster: invalid raft settings: {ticks_problem}")
        try:
            node_cert_validity(request.spec.ca_config.node_cert_expiry)
        except CAError as err:
            raise ControlError("invalid", f"update cluster: {err}") from None

        def fn(tx):
            current = tx.view.cluster()
            if request.version and request.version != current.meta.version:
                raise ControlError("conflict", f"update cluster: update out of sequence "
                                               f"(version {request.version}, current {current.meta.version})")
            new = objects_pb2.Cluster()
            new.CopyFrom(current)
            if request.HasField("spec"):
                new.spec.CopyFrom(request.spec)
            tokens = JoinTokens(new.root_ca.join_tokens.worker, new.root_ca.join_tokens.manager)
            for role, wanted in (("worker", request.rotate_worker_token), ("manager", request.rotate_manager_token)):
                if wanted:
                    tokens = tokens.rotate(role)
            new.root_ca.join_tokens.worker = tokens.worker
            new.root_ca.join_tokens.manager = tokens.manager
            new = self._maybe_rotate_ca(current, new)
            self._autolock(new, request.rotate_manager_unlock_key)
            if new != current:
                tx.update(new)

        await write(self._store, fn, "update cluster")
        return control_pb2.UpdateClusterResponse(cluster=_public_cluster(self._store.view().cluster()))
