"""Output the way the docker CLI prints it: tables, one JSON object per line for
``--format json``, and JSON arrays for ``inspect``."""

from __future__ import annotations

import json
import re
import time

import click


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """Left-aligned columns separated by at least three spaces, like docker's tabwriter."""
    widths = [len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [columns] + rows
    for line in lines:
        click.echo("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())


def print_json_lines(objects: list[dict]) -> None:
    for obj in objects:
        click.echo(json.dumps(obj, separators=(",", ":")))


def print_json_array(objects: list[dict]) -> None:
    click.echo(json.dumps(objects, indent=4))


def parse_duration(text: str) -> float:
    """Go-style durations as docker takes them: "5s", "500ms", "1m30s", "2h"; a bare number is seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise click.BadParameter(f"invalid duration {text!r} (examples: 500ms, 5s, 1m30s)")
    scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def rfc3339(seconds: float) -> str:
    if not seconds:
        return "0001-01-01T00:00:00Z"
    frac = f"{seconds % 1:.9f}"[1:].rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + frac + "Z"


def format_duration(seconds: float) -> str:
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"
