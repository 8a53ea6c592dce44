"""Join tokens in Swarm's shape: `SHTKN-1-<root CA digest>-<secret>`.

The digest part is the sha256 of the root CA's DER certificate written in base 36 and zero-padded
to 50 characters; the secret is 128 random bits in base 36, zero-padded to 25 characters (SwarmKit's
`SWMTKN-1-…`, with our prefix). A joining node uses the digest to pin the CA certificate it
downloads; the manager compares the whole token in constant time and the match decides the role.
Rotating a token changes only its secret and does not affect nodes that already joined.

Error messages never repeat a token: it is a secret.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, replace

from .certificates import MANAGER_ROLE, WORKER_ROLE
from .errors import InvalidJoinToken

TOKEN_PREFIX = "SHTKN"
TOKEN_VERSION = "1"
DIGEST_CHARS = 50
SECRET_CHARS = 25
SECRET_BITS = 128
_BASE36_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_SHAPE = "expected SHTKN-1-<ca digest>-<secret>"

_ROLE_NAMES = {
    "worker": WORKER_ROLE,
    "manager": MANAGER_ROLE,
    WORKER_ROLE: WORKER_ROLE,
    MANAGER_ROLE: MANAGER_ROLE,
}


def base36(value: int, width: int) -> str:
    """`value` (>= 0) in lower-case base 36, zero-padded on the left to at least `width` chars."""
    if value < 0:
        raise ValueError(f"base36 needs a non-negative integer, got {value}")
    digits = []
    while value:
        value, digit = divmod(value, 36)
        digits.append(_BASE36_ALPHABET[digit])
    return "".join(reversed(digits)).rjust(width, "0")


def _is_base36(text: str) -> bool:
    return all(char in _BASE36_ALPHABET for char in text)


def _short(digest_hex: str) -> str:
    return f"sha256:{digest_hex[:12]}…"


@dataclass(frozen=True)
class JoinToken:
    """The parts of a parsed join token."""

    version: int
    ca_digest_hex: str
    secret: str


def generate_join_token(ca_digest_hex: str) -> str:
    """A fresh join token pinning the root CA whose sha256 (hex) is `ca_digest_hex`."""
    try:
        digest = bytes.fromhex(ca_digest_hex)
    except ValueError as exc:
        raise InvalidJoinToken(
            f"cannot make a join token: CA digest {ca_digest_hex!r} is not hex"
        ) from exc
    if len(digest) != 32:
        raise InvalidJoinToken(
            f"cannot make a join token: CA digest has {len(digest)} bytes, a sha256 has 32"
        )
    digest_part = base36(int.from_bytes(digest, "big"), DIGEST_CHARS)
    secret_part = base36(secrets.randbits(SECRET_BITS), SECRET_CHARS)
    return f"{TOKEN_PREFIX}-{TOKEN_VERSION}-{digest_part}-{secret_part}"


def parse_join_token(token: str, ca_digest_hex: str | None = None) -> JoinToken:
    """The parts of `token`; raises InvalidJoinToken saying what is wrong with it.

    With `ca_digest_hex`, also checks that the token pins that CA ("join token was made for a
    different cluster CA" otherwise).
    """
    token = token.strip()
    parts = token.split("-")
    if token.startswith("SWMTKN-"):
        raise InvalidJoinToken(
            f"invalid join token: this is a Docker Swarm token (SWMTKN); {_SHAPE}"
        )
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX:
        raise InvalidJoinToken(f"invalid join token: {_SHAPE}")
    _, version, digest_part, secret_part = parts
    if version != TOKEN_VERSION:
        raise InvalidJoinToken(
            f"invalid join token: version {version!r} is not supported; {_SHAPE}"
        )
    if len(digest_part) != DIGEST_CHARS or not _is_base36(digest_part):
        raise InvalidJoinToken(
            f"invalid join token: the CA digest must be {DIGEST_CHARS} base-36 characters "
            f"(got {len(digest_part)}); {_SHAPE}"
        )
    if len(secret_part) != SECRET_CHARS or not _is_base36(secret_part):
        raise InvalidJoinToken(
            f"invalid join token: the secret must be {SECRET_CHARS} base-36 characters "
            f"(got {len(secret_part)}); {_SHAPE}"
        )
    digest_value = int(digest_part, 36)
    if digest_value >= 1 << 256:
        raise InvalidJoinToken(
            f"invalid join token: the CA digest is larger than a sha256; {_SHAPE}"
        )
    parsed = JoinToken(int(version), digest_value.to_bytes(32, "big").hex(), secret_part)
    if ca_digest_hex is not None and not hmac.compare_digest(
        parsed.ca_digest_hex, ca_digest_hex.lower()
    ):
        raise InvalidJoinToken(
            f"join token was made for a different cluster CA (the token pins "
            f"{_short(parsed.ca_digest_hex)}, this cluster's CA is {_short(ca_digest_hex.lower())})"
        )
    return parsed


def join_token_matches(presented: str, expected: str) -> bool:
    """True when the tokens are equal, compared in constant time."""
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


def _role(role: str) -> str:
    try:
        return _ROLE_NAMES[role]
    except KeyError:
        raise InvalidJoinToken(
            f"no join token for role {role!r}: expected 'worker' or 'manager'"
        ) from None


@dataclass(frozen=True)
class JoinTokens:
    """The cluster's two join tokens. Immutable: `rotate` returns a new value to store."""

    worker: str
    manager: str

    @classmethod
    def create(cls, ca_digest_hex: str) -> JoinTokens:
        """Fresh worker and manager tokens pinning the CA `ca_digest_hex`."""
        return cls(generate_join_token(ca_digest_hex), generate_join_token(ca_digest_hex))

    def token_for(self, role: str) -> str:
        """The token for `role` ('worker', 'manager', 'swarm-worker' or 'swarm-manager')."""
        return self.manager if _role(role) == MANAGER_ROLE else self.worker

    def rotate(self, role: str) -> JoinTokens:
        """These tokens with a fresh secret for `role`; the CA digest and the other token stay."""
        role = _role(role)
        digest = parse_join_token(self.token_for(role)).ca_digest_hex
        fresh = generate_join_token(digest)
        return replace(self, **{"manager" if role == MANAGER_ROLE else "worker": fresh})

    def role_for(self, presented: str, ca_digest_hex: str) -> str:
        """The role (`swarm-manager`/`swarm-worker`) that `presented` admits to this cluster.

        Raises InvalidJoinToken: malformed, made for another CA, or a secret matching neither
        token (wrong or rotated). Both comparisons always run, in constant time.
        """
        parse_join_token(presented, ca_digest_hex)
        is_manager = join_token_matches(presented, self.manager)
        is_worker = join_token_matches(presented, self.worker)
        if is_manager:
            return MANAGER_ROLE
        if is_worker:
            return WORKER_ROLE
        raise InvalidJoinToken(
            "invalid join token: it matches neither the worker nor the manager token of this "
            "cluster (was it rotated?)"
        )
