"""Root CA rotation phases (manager.ca.rotation) and the ControlAPI's part in starting one."""

from __future__ import annotations

import datetime as dt

import pytest

from manager.ca import WORKER_ROLE, CAError, NodeTLS, RootCA, make_node_key_and_csr, rotation
from manager.ca.tokens import parse_join_token
from proto import objects_pb2

NOW = dt.datetime.now(dt.timezone.utc)
OLD = RootCA.create("c1", NOW)


def cluster_with(root: RootCA) -> objects_pb2.Cluster:
    from manager.ca import JoinTokens

    cluster = objects_pb2.Cluster(id="c1")
    cluster.root_ca.ca_cert, cluster.root_ca.ca_key, cluster.root_ca.ca_digest = root.cert_pem, root.key_pem, root.digest
    tokens = JoinTokens.create(root.digest)
    cluster.root_ca.join_tokens.worker, cluster.root_ca.join_tokens.manager = tokens.worker, tokens.manager
    return cluster


def node(node_id: str, signer: RootCA, trust: bytes, state=objects_pb2.NodeStatus.READY) -> objects_pb2.Node:
    key, csr = make_node_key_and_csr()
    cert = signer.sign_node_csr(csr, node_id, WORKER_ROLE, NOW)
    n = objects_pb2.Node(id=node_id)
    n.status.state = state
    n.description.tls_info.CopyFrom(NodeTLS(cert + signer.cert_pem, key, trust).tls_info())
    return n


def test_a_rotation_goes_trust_then_reissue_then_done_and_waits_for_every_live_node() -> None:
    cluster = cluster_with(OLD)
    new = RootCA.create("c1", NOW)
    started = rotation.start(cluster, new, 0.0)
    assert rotation.signing_root(started).digest == OLD.digest        # nothing signed by the new root yet
    bundle = rotation.trusted_roots(started)
    assert OLD.cert_pem.strip() in bundle and new.cert_pem.strip() in bundle

    nodes = [node("a", OLD, OLD.cert_pem), node("b", OLD, OLD.cert_pem),
             node("dead", OLD, OLD.cert_pem, objects_pb2.NodeStatus.DOWN)]
    assert rotation.advance(started, nodes) is None                   # nobody trusts the new root yet
    nodes[0] = node("a", OLD, bundle)
    assert rotation.advance(started, nodes) is None                   # b does not yet
    nodes[1] = node("b", OLD, bundle)
    reissuing = rotation.advance(started, nodes)                      # the down node is not waited for
    assert reissuing.root_ca.root_rotation.phase == objects_pb2.RootRotation.REISSUE
    assert rotation.signing_root(reissuing).digest == new.digest
    assert [rotation.needs_renewal(reissuing, n) for n in nodes] == [True, True, True]

    nodes[0] = node("a", new, bundle)
    assert not rotation.needs_renewal(reissuing, nodes[0])
    assert rotation.advance(reissuing, nodes) is None
    p = rotation.progress(reissuing, nodes)
    assert (p.total, p.tls_rotated, p.ca_rotated, p.phase) == (2, 1, 0, "reissue")
    nodes[1] = node("b", new, bundle)
    done = rotation.advance(reissuing, nodes)
    assert not rotation.in_rotation(done)
    assert done.root_ca.ca_cert == new.cert_pem and done.root_ca.ca_digest == new.digest
    assert rotation.trusted_roots(done) == new.cert_pem                # the old root is trusted no more
    assert parse_join_token(done.root_ca.join_tokens.worker).ca_digest_hex == new.digest
    assert done.root_ca.join_tokens.worker != cluster.root_ca.join_tokens.worker
    nodes = [node("a", new, new.cert_pem), node("b", new, new.cert_pem)]
    p = rotation.progress(done, nodes)
    assert (p.total, p.tls_rotated, p.ca_rotated, p.in_progress) == (2, 2, 2, False)


def test_a_second_rotation_is_refused_once_the_first_reissues() -> None:
    started = rotation.start(cluster_with(OLD), RootCA.create("c1", NOW), 0.0)
    again = rotation.start(started, RootCA.create("c1", NOW), 0.0)    # still TRUST: replaced
    assert again.root_ca.root_rotation.ca_cert != started.root_ca.root_rotation.ca_cert
    started.root_ca.root_rotation.phase = objects_pb2.RootRotation.REISSUE
    with pytest.raises(CAError, match="already re-issuing"):
        rotation.start(started, RootCA.create("c1", NOW), 0.0)


def test_an_external_root_is_checked() -> None:
    cluster = cluster_with(OLD)
    external = RootCA.create("acme-corp", NOW)
    root = rotation.new_root_for(cluster, external.cert_pem, external.key_pem, NOW)
    assert root.cluster_id == "c1"                                   # node certificates keep the cluster's O
    with pytest.raises(CAError, match="both its certificate"):
        rotation.new_root_for(cluster, external.cert_pem, b"", NOW)
    with pytest.raises(CAError, match="does not match"):
        rotation.new_root_for(cluster, external.cert_pem, RootCA.create("x", NOW).key_pem, NOW)
    with pytest.raises(CAError, match="already this cluster's root"):
        rotation.new_root_for(cluster, OLD.cert_pem, OLD.key_pem, NOW)


async def test_update_cluster_starts_a_rotation_and_never_returns_or_keeps_a_key() -> None:
    from manager.controlapi import ControlAPI, ControlError
    from manager.state import LocalProposer, MemoryStore, Store
    from proto import control_pb2

    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    await store.update(lambda tx: tx.create(cluster_with(OLD)))
    api = ControlAPI(store, raft=None)
    spec = (await api.get_cluster()).cluster.spec
    spec.ca_config.signing_ca_cert = OLD.cert_pem
    spec.ca_config.signing_ca_key = b"not a key"
    with pytest.raises(ControlError, match="CA rotation"):
        await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    assert not rotation.in_rotation(store.view().cluster())             # refused: nothing changed
    external = RootCA.create("acme", NOW)
    spec.ca_config.signing_ca_cert, spec.ca_config.signing_ca_key = external.cert_pem, external.key_pem
    returned = (await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))).cluster
    stored = store.view().cluster()
    assert stored.root_ca.root_rotation.ca_cert == external.cert_pem and stored.root_ca.root_rotation.ca_key
    assert not stored.spec.ca_config.signing_ca_key and not stored.spec.ca_config.signing_ca_cert
    assert external.key_pem not in returned.SerializeToString()
    assert external.key_pem not in (await api.get_cluster()).cluster.SerializeToString()
    # an update that does not ask for one (same force_rotate, no certificate) starts nothing new
    spec = returned.spec
    spec.dispatcher.heartbeat_period = 3
    await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    assert store.view().cluster().root_ca.root_rotation.ca_cert == external.cert_pem
    spec.ca_config.force_rotate += 1                                   # --rotate: a fresh root
    await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))
    assert store.view().cluster().root_ca.root_rotation.ca_cert not in (external.cert_pem, OLD.cert_pem)
