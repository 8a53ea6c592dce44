"""Output the way the docker CLI prints it: tables, one JSON object per line for
``--format json``, and JSON arrays for ``inspect``."""

from __future__ import annotations

import json

import click



def rfc3339(seconds: float) -> str:
    """shoal.dockerjson.rfc3339 (the CLI's modules import it from here), imported when used:
    dockerjson brings protobuf, which the container and image commands do not need."""
    from shoal.dockerjson import rfc3339 as convert
    return convert(seconds)


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """Docker's table layout (tabwriter: each column as wide as its widest cell plus 3, at least 10;
    the last column unpadded)."""
    from common.gotemplate import tabwrite
    text = "".join("\t".join(line) + "\n" for line in [columns] + rows)
    click.echo(tabwrite(text), nl=False)


def print_json_lines(objects: list[dict]) -> None:
    for obj in objects:
        click.echo(json.dumps(obj, separators=(",", ":")))


def flag_value(parse, flag: str, text: str):
    """`parse(text)` for a command-line flag: a ValueError becomes the docker CLI's usage error
    ``invalid argument "TEXT" for "--flag" flag: ...``."""
    try:
        return parse(text)
    except ValueError as err:
        raise click.UsageError(f'invalid argument "{text}" for "{flag}" flag: {err}') from None


class DaemonError(click.ClickException):
    """An error printed as the docker CLI prints the daemon's: `Error response from daemon: ...`,
    exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"Error response from daemon: {self.message}", err=True)


def invalid_filter(key: str) -> DaemonError:
    """The docker daemon's words for a filter it does not take (moby's filters.invalidFilter)."""
    return DaemonError(f"invalid filter '{key}'")


def filter_flags(values, flag: str = "-f, --filter", accepted: tuple[str, ...] | None = None
                 ) -> dict[str, list[str]]:
    """``--filter KEY=VALUE`` flags as the docker CLI reads them (opts.FilterOpt): the filter map,
    repeated keys collecting their values, the key lower-cased and both sides trimmed, an empty
    flag ignored. A flag without ``=`` is the usage error ``invalid argument "TEXT" for "FLAG"
    flag: bad format of filter (expected name=value)`` (FLAG as docker names it: ``-f, --filter``
    or, where -f is another flag, ``--filter``); with ``accepted``, another key is the daemon's
    ``invalid filter 'KEY'``."""
    out: dict[str, list[str]] = {}
    for text in values:
        if not text:
            continue
        key, sep, value = text.partition("=")
        if not sep:
            raise click.UsageError(f'invalid argument "{text}" for "{flag}" flag: bad format of filter '
                                   "(expected name=value)")
        out.setdefault(key.strip().lower(), []).append(value.strip())
    if accepted is not None:
        for key in out:
            if key not in accepted:
                raise invalid_filter(key)
    return out
