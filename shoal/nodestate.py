"""What a node remembers about its membership, on disk under ``--state-dir``.

Layout::

    STATE/node.json            node id, role, cluster id, addresses, known managers
    STATE/certificates/        node.crt (leaf + root), node.key, ca.crt
    STATE/raft/                the Raft journal and dumps (managers only)
    STATE/raft.key             the Raft transport password (managers only)
    STATE/secrets.key          the key that seals secrets in the store (managers only; manager.secretbox)

Everything is written atomically (temp file + rename) and readable by root only.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from proto import ports


@dataclass
class NodeState:
    node_id: str
    role: str                      # "manager" or "worker"
    cluster_id: str
    advertise_addr: str            # host, no port
    listen_addr: str               # host:port of the gRPC endpoint
    managers: list[str] = field(default_factory=list)  # gRPC addresses host:port
    raft_peers: list[str] = field(default_factory=list)

    @property
    def grpc_addr(self) -> str:
        return f"{self.advertise_addr}:{self.listen_addr.rsplit(':', 1)[1]}"

    @property
    def raft_addr(self) -> str:
        return ports.raft_addr(self.grpc_addr)


def _write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class StateDir:
    """The node's state directory. Methods are synchronous and cheap; call from any thread."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.certs = self.root / "certificates"
        self.raft_dir = self.root / "raft"

    # -- membership ----------------------------------------------------------
    def load(self) -> NodeState | None:
        self.finish_recovery()
        try:
            data = json.loads((self.root / "node.json").read_text())
        except FileNotFoundError:
            return None
        return NodeState(**data)

    def save(self, state: NodeState) -> None:
        _write_atomic(self.root / "node.json", json.dumps(asdict(state), indent=2).encode())

    # -- certificates --------------------------------------------------------
    def save_certificates(self, cert_chain_pem: bytes, key_pem: bytes, root_ca_pem: bytes) -> None:
        """Replace the node's certificate, key and root CA, crash-safely.

        The key is written as ``node.key.next`` first and moved over ``node.key`` only after the
        certificate is in place, so a crash at any point leaves either the old pair or the new one:
        `load_certificates` finishes (or drops) a half-done replacement by checking which key the
        certificate on disk belongs to.
        """
        _write_atomic(self.certs / "node.key.next", key_pem)
        _write_atomic(self.certs / "ca.crt", root_ca_pem, 0o644)
        _write_atomic(self.certs / "node.crt", cert_chain_pem, 0o644)
        os.replace(self.certs / "node.key.next", self.certs / "node.key")

    def load_certificates(self) -> tuple[bytes, bytes, bytes]:
        """Return (cert chain PEM, key PEM, root CA PEM)."""
        from manager.ca import key_matches

        pending = self.certs / "node.key.next"
        if pending.exists():
            cert = (self.certs / "node.crt").read_bytes()
            if key_matches(cert, pending.read_bytes()):
                os.replace(pending, self.certs / "node.key")   # the crash came after node.crt
            else:
                pending.unlink()                               # ... or before it: keep the old pair
        return ((self.certs / "node.crt").read_bytes(), (self.certs / "node.key").read_bytes(),
                (self.certs / "ca.crt").read_bytes())

    # -- raft ------------------------------------------------------------------
    def save_raft_password(self, password: bytes) -> None:
        _write_atomic(self.root / "raft.key", password)

    def load_raft_password(self) -> bytes:
        return (self.root / "raft.key").read_bytes()

    def save_secrets_key(self, key: bytes) -> None:
        _write_atomic(self.root / "secrets.key", key)

    def load_secrets_key(self) -> bytes:
        """The secrets key, or b"" on a manager of a swarm made before there was one."""
        try:
            return (self.root / "secrets.key").read_bytes()
        except FileNotFoundError:
            return b""

    def forget_raft(self) -> None:
        """Drop the Raft journal, password and secrets key (after a demotion or a leave)."""
        shutil.rmtree(self.raft_dir, ignore_errors=True)
        (self.root / "raft.key").unlink(missing_ok=True)
        (self.root / "secrets.key").unlink(missing_ok=True)

    # -- recovery (shoal.daemon.recovery, manager.state.recovery) ----------------
    @staticmethod
    def recovery_pending(node: NodeState, certificates: tuple[bytes, bytes, bytes] | None = None,
                         raft_password: bytes | None = None, secrets_key: bytes | None = None) -> bytes:
        """What ``finish_recovery`` must record once a rebuilt Raft state is current, as bytes."""
        def b64(data: bytes | None) -> str | None:
            return None if data is None else base64.b64encode(data).decode()
        return json.dumps({"node": asdict(node),
                           "certificates": [b64(c) for c in certificates] if certificates else None,
                           "raft_password": b64(raft_password), "secrets_key": b64(secrets_key)}).encode()

    def finish_recovery(self) -> bool:
        """Finish a force-new-cluster or restore that a crash interrupted; True if there was one.

        The Raft directory swap is completed if it was cut short, then what the new state needs
        (node.json, certificates, keys) is written from the pending record stored inside it, and
        the record dropped. Idempotent: each write is atomic and the record goes last.
        """
        from manager.state.recovery import drop_pending, finish_interrupted_reset, pending_state

        finish_interrupted_reset(self.raft_dir)
        data = pending_state(self.raft_dir)
        if data is None:
            return False
        pending = json.loads(data)
        if pending.get("certificates"):
            cert, key, ca = (base64.b64decode(c) for c in pending["certificates"])
            self.save_certificates(cert, key, ca)
        if pending.get("raft_password") is not None:
            self.save_raft_password(base64.b64decode(pending["raft_password"]))
        if pending.get("secrets_key") is not None:
            self.save_secrets_key(base64.b64decode(pending["secrets_key"]))
        self.save(NodeState(**pending["node"]))
        drop_pending(self.raft_dir)
        return True

    def wipe(self) -> None:
        """Forget the swarm entirely (``shoal swarm leave``)."""
        self.forget_raft()
        shutil.rmtree(self.certs, ignore_errors=True)
        (self.root / "node.json").unlink(missing_ok=True)
