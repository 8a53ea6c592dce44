"""What a node remembers about its membership, on disk under ``--state-dir``.

Layout::

    STATE/node.json            node id, role, cluster id, addresses, known managers
    STATE/certificates/        node.crt (leaf + root), node.key, ca.crt
    STATE/raft/                the Raft journal and dumps (managers only)
    STATE/raft.key             the Raft transport password (managers only)
    STATE/secrets.key          the key that seals secrets in the store (managers only; manager.secretbox)
    STATE/dek.locked           autolock only: this manager's data key, encrypted with the unlock key

Everything is written atomically (temp file + rename) and readable by root only.

Autolock (Docker's `swarm init/update --autolock`): the three key files (node.key, raft.key,
secrets.key) are then encrypted with a random per-manager data key (DEK), and the DEK, in
``dek.locked``, with the cluster's unlock key (KEK). A restarted manager cannot read its keys until
`unlock(kek)`. Rotating the unlock key rewrites only ``dek.locked`` (one atomic rename); turning
autolock on or off rewrites the key files one at a time, and a reader takes either form, so a crash
in between leaves everything readable with the key.
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
        self._dek: bytes | None = None     # set while autolocked and unlocked
        self._kek: bytes | None = None     # the unlock key that opened (or wrote) dek.locked

    # -- autolock --------------------------------------------------------------
    @property
    def _dek_file(self) -> Path:
        return self.root / "dek.locked"

    def _key_files(self) -> list[Path]:
        return [p for p in (self.certs / "node.key", self.root / "raft.key", self.root / "secrets.key")
                if p.exists()]

    def autolocked(self) -> bool:
        """The key files are encrypted with an unlock key (dek.locked exists)."""
        return self._dek_file.exists()

    def locked(self) -> bool:
        """Autolocked and not yet unlocked: the keys cannot be read."""
        return self.autolocked() and self._dek is None

    def unlock(self, kek: bytes) -> None:
        """Open this manager's keys with the unlock key; InvalidUnlockKey if it is the wrong one."""
        from manager.secretbox import unlock_file

        self._dek = unlock_file(kek, "dek", self._dek_file.read_bytes())
        self._kek = kek

    def unlocked_with(self, kek: bytes | None) -> bool:
        """Whether the key files are locked with exactly `kek` (None: not locked at all)."""
        return (self._kek == kek) if kek else not self.autolocked()

    def set_unlock_key(self, kek: bytes | None) -> None:
        """Lock the key files with `kek` from now on, or unlock them for good with None. The
        files must be readable (not `locked()`)."""
        from manager.secretbox import is_locked_file, lock_file, new_key

        if self.locked():
            raise RuntimeError("set_unlock_key on a locked state directory")
        if kek is None:
            if not self.autolocked():
                return
            for path in self._key_files():
                _write_atomic(path, self._read_key(path))           # plaintext again, one by one
            self._dek_file.unlink()                                 # last: until here the key opens all
            self._dek = self._kek = None
            return
        dek = self._dek or new_key()
        _write_atomic(self._dek_file, lock_file(kek, "dek", dek))   # first: the files may then use it
        self._dek, self._kek = dek, kek
        for path in self._key_files():
            if not is_locked_file(path.read_bytes()):                # already under this DEK: leave it
                self._write_key(path, self._read_key(path))

    def _write_key(self, path: Path, data: bytes) -> None:
        from manager.secretbox import lock_file

        name = path.name.removesuffix(".next")
        _write_atomic(path, lock_file(self._dek, name, data) if self._dek else data)

    def _read_key(self, path: Path) -> bytes:
        from manager.secretbox import unlock_file

        return unlock_file(self._dek, path.name.removesuffix(".next"), path.read_bytes())

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
        self._write_key(self.certs / "node.key.next", key_pem)
        _write_atomic(self.certs / "ca.crt", root_ca_pem, 0o644)
        _write_atomic(self.certs / "node.crt", cert_chain_pem, 0o644)
        os.replace(self.certs / "node.key.next", self.certs / "node.key")

    def load_certificates(self) -> tuple[bytes, bytes, bytes]:
        """Return (cert chain PEM, key PEM, root CA PEM)."""
        from manager.ca import key_matches

        pending = self.certs / "node.key.next"
        if pending.exists():
            cert = (self.certs / "node.crt").read_bytes()
            if key_matches(cert, self._read_key(pending)):
                os.replace(pending, self.certs / "node.key")   # the crash came after node.crt
            else:
                pending.unlink()                               # ... or before it: keep the old pair
        return ((self.certs / "node.crt").read_bytes(), self._read_key(self.certs / "node.key"),
                (self.certs / "ca.crt").read_bytes())

    # -- raft ------------------------------------------------------------------
    def save_raft_password(self, password: bytes) -> None:
        self._write_key(self.root / "raft.key", password)

    def load_raft_password(self) -> bytes:
        return self._read_key(self.root / "raft.key")

    def save_secrets_key(self, key: bytes) -> None:
        self._write_key(self.root / "secrets.key", key)

    def load_secrets_key(self) -> bytes:
        """The secrets key, or b"" on a manager of a swarm made before there was one."""
        try:
            return self._read_key(self.root / "secrets.key")
        except FileNotFoundError:
            return b""

    def forget_raft(self) -> None:
        """Drop the Raft journal, password and secrets key (after a demotion or a leave); a worker
        is never locked, so its TLS key goes back to plaintext."""
        shutil.rmtree(self.raft_dir, ignore_errors=True)
        (self.root / "raft.key").unlink(missing_ok=True)
        (self.root / "secrets.key").unlink(missing_ok=True)
        if self.autolocked() and not self.locked():
            self.set_unlock_key(None)

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
        self._dek_file.unlink(missing_ok=True)
        self._dek = self._kek = None
        shutil.rmtree(self.certs, ignore_errors=True)
        (self.root / "node.json").unlink(missing_ok=True)
