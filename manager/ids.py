"""Object identifiers in Swarm's shape: 25 random base-36 characters."""

import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """A fresh random ID (about 129 bits); safe to call from any thread."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(25))
