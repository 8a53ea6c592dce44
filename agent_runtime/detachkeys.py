"""Docker's detach keys (``--detach-keys``, default ctrl-p ctrl-q), for the CLI and runtimed alike:
nothing imported but the standard library's basics (the CLI's start-up stays light)."""

from __future__ import annotations

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(text: str) -> bytes:
    """Docker's --detach-keys: comma-separated single characters or ``ctrl-X`` (X a letter or one
    of ``@[\\]^_``). The empty string is the default, ctrl-p,ctrl-q."""
    out = bytearray()
    for key in (text or DEFAULT_DETACH_KEYS).split(","):
        if len(key) == 1:
            out.append(ord(key))
            continue
        low = key.lower()
        if low.startswith("ctrl-") and len(key) == 6:
            ch = low[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            if ch in "@[\\]^_":
                out.append(ord(ch) - ord("@"))
                continue
        raise ValueError(f"Invalid detach keys ({text}) provided: unknown character {key!r}")
    return bytes(out)


class EscapeProxy:
    """Finds the detach sequence in a stream of input, as Docker's term.escapeProxy: bytes that may
    begin the sequence are held back; a mismatch lets them through; the whole sequence detaches
    (and is never passed on)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, detached)."""
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            candidate = self.held + bytes([byte])
            if self.keys.startswith(candidate):
                if candidate == self.keys:
                    self.held = b""
                    return bytes(out), True
                self.held = candidate
            else:
                out += candidate
                self.held = b""
        return bytes(out), False
