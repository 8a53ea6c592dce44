"""pids controller: the same file (``pids.max``) in both versions; 0 or -1 means unlimited."""

from __future__ import annotations


def writes(pids_limit: int) -> list[tuple[str, str]]:
    return [("pids.max", str(pids_limit))] if pids_limit > 0 else []


def parse_max(text: str) -> int:
    text = text.strip()
    return 0 if text == "max" else int(text)
