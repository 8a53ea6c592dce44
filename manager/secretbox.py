"""Secrets at rest: the data of a Secret is sealed before it is proposed to the store.

The store is replicated through Raft, and Raft writes every proposal to its journal and dumps
(``STATE/raft/``) on every manager. So ``SecretSpec.data`` is sealed by the ControlAPI before the
proposal and opened only where it must be plaintext: by the dispatcher, when it sends a secret
over the mutual-TLS assignments stream to a node that runs a task using it.

The key. The Raft transport password is not suitable: it is itself in the store
(``Cluster.raft_password``), hence in the same journal. So there is one more cluster-wide key, the
*secrets key* (32 random bytes), made by ``swarm init`` and never proposed to the store. It goes
where the Raft password goes, and only there: NodeCA hands it to managers in the responses to
IssueNodeCertificate (joining as a manager) and RenewCertificate (promotion), over TLS; each manager
keeps it in ``STATE/secrets.key`` (0600, beside ``raft.key``) and forgets it on demotion or leave.
Workers never get it. Like Docker without autolock, this protects the journal and its backups,
not a manager's whole state directory: whoever holds both the journal and the key file can open
the secrets. (Docker's answer to that, a passphrase typed at each start, is not implemented.)

The cipher is AES-256-GCM (``cryptography``), a fresh 96-bit nonce per seal, and the secret's ID as
associated data, so a sealed blob cannot be moved to another secret. A sealed value is
``MAGIC || nonce || ciphertext+tag``.

Pure functions and a small class; no I/O. Safe from any thread.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
MAGIC = b"SHSEC1\x00"   # version marker of the sealed format


class SecretBoxError(Exception):
    """A value could not be sealed or opened (no key, wrong key, corrupted or foreign data)."""


def new_key() -> bytes:
    """A fresh random secrets key."""
    return os.urandom(KEY_BYTES)


def is_sealed(value: bytes) -> bool:
    return value.startswith(MAGIC)


class SecretBox:
    """Seals and opens secret data with the cluster's secrets key.

    ``key`` may be empty (a manager of a cluster made before secrets had a key): every call then
    raises SecretBoxError saying so, instead of storing plaintext.
    """

    def __init__(self, key: bytes):
        if key and len(key) != KEY_BYTES:
            raise SecretBoxError(f"the secrets key must be {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key) if key else None

    def _cipher(self, what: str) -> AESGCM:
        if self._aead is None:
            raise SecretBoxError(f"{what}: this manager has no secrets key (STATE/secrets.key); "
                                 "secrets need a swarm initialized by this version of shoald")
        return self._aead

    def seal(self, secret_id: str, data: bytes) -> bytes:
        """``data`` encrypted and authenticated for the secret ``secret_id``."""
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + nonce + self._cipher(f"seal secret {secret_id}").encrypt(nonce, data, secret_id.encode())

    def open(self, secret_id: str, sealed: bytes) -> bytes:
        """The plaintext of a value ``seal(secret_id, ...)`` made; SecretBoxError if it is not one
        (wrong key, another secret's data, tampered or truncated)."""
        what = f"open secret {secret_id}"
        if not is_sealed(sealed) or len(sealed) < len(MAGIC) + NONCE_BYTES + 16:
            raise SecretBoxError(f"{what}: the stored data is not sealed")
        nonce = sealed[len(MAGIC):len(MAGIC) + NONCE_BYTES]
        try:
            return self._cipher(what).decrypt(nonce, sealed[len(MAGIC) + NONCE_BYTES:], secret_id.encode())
        except InvalidTag:
            raise SecretBoxError(f"{what}: the data does not authenticate with this cluster's secrets key") from None


# -- cluster values sealed in the store ------------------------------------------------------------
# The CA signing key and the Raft password live in the cluster object, hence in every manager's
# Raft journal. They are sealed with the secrets key like secret data, under these labels (the
# associated data): a sealed CA key can move between RootCA.ca_key and RootRotation.ca_key.
CA_KEY_LABEL = "cluster:root-ca-key"
RAFT_PASSWORD_LABEL = "cluster:raft-password"
UNLOCK_KEY_LABEL = "cluster:unlock-key"


def seal_value(key: bytes, label: str, value: bytes) -> bytes:
    """`value` sealed for the store under `label`; unchanged (plaintext) when there is no secrets
    key (a swarm made before there was one)."""
    if not key or not value:
        return value
    return SecretBox(key).seal(label, value)


def open_value(key: bytes, label: str, value: bytes) -> bytes:
    """The plaintext of a value `seal_value` made; a value that is not sealed (written by an
    earlier version) is returned as it is. SecretBoxError if it is sealed and does not open."""
    if not is_sealed(value):
        return value
    return SecretBox(key).open(label, value)


# -- autolock: the unlock key and files sealed with it -----------------------------------------------
# Docker's human-readable unlock key: "SWMKEY-1-" + unpadded standard base64 of 32 random bytes.
UNLOCK_KEY_PREFIX = "SWMKEY-1-"
KEK_MAGIC = b"SHKEK1\x00"


class InvalidUnlockKey(SecretBoxError):
    """The unlock key is malformed or does not open this manager's files."""


def new_unlock_key() -> bytes:
    return os.urandom(KEY_BYTES)


def format_unlock_key(key: bytes) -> str:
    import base64

    return UNLOCK_KEY_PREFIX + base64.b64encode(key).decode().rstrip("=")


def parse_unlock_key(text: str) -> bytes:
    """The 32 key bytes of "SWMKEY-1-…"; InvalidUnlockKey naming what is wrong (never the key)."""
    import base64
    import binascii

    text = text.strip()
    if not text.startswith(UNLOCK_KEY_PREFIX):
        raise InvalidUnlockKey("invalid unlock key: expected SWMKEY-1-<key>")
    body = text[len(UNLOCK_KEY_PREFIX):]
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidUnlockKey("invalid unlock key: the part after SWMKEY-1- is not base64") from None
    if len(key) != KEY_BYTES:
        raise InvalidUnlockKey(f"invalid unlock key: it holds {len(key)} bytes, not {KEY_BYTES}")
    return key


def is_locked_file(data: bytes) -> bool:
    return data.startswith(KEK_MAGIC)


def lock_file(kek: bytes, name: str, data: bytes) -> bytes:
    """`data` (a key file named `name`) encrypted with the unlock key."""
    nonce = os.urandom(NONCE_BYTES)
    return KEK_MAGIC + nonce + AESGCM(kek).encrypt(nonce, data, name.encode())


def unlock_file(kek: bytes | None, name: str, data: bytes) -> bytes:
    """The plaintext of a file `lock_file` made (or `data` itself if it is not locked);
    InvalidUnlockKey when there is no key or it is the wrong one."""
    if not is_locked_file(data):
        return data
    if not kek:
        raise InvalidUnlockKey(f"{name} is locked: the manager needs its unlock key (shoal swarm unlock)")
    nonce = data[len(KEK_MAGIC):len(KEK_MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(kek).decrypt(nonce, data[len(KEK_MAGIC) + NONCE_BYTES:], name.encode())
    except InvalidTag:
        raise InvalidUnlockKey("swarm could not be unlocked: invalid key") from None
