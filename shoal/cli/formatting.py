"""`--format` as the docker CLI reads it, for every ls, ps, inspect, info and version command.

    print_rows(fmt, rows, type_name, default)    ls/ps: "" and "table" print `default()`; "json"
                                                 one JSON object per line; "table TEMPLATE" a
                                                 table with Docker's header names; any other
                                                 TEMPLATE once per row
    print_objects(fmt, objects)                  inspect/info/version: "" and "json" a JSON
                                                 array (inspect) or object; else TEMPLATE per object

Rows are the Docker-named fields of the row objects (`Fields`: an unknown field is an error
naming the type), objects are the Docker-shaped JSON documents `inspect` prints (a missing key is
an error, as Docker's raw-JSON fallback runs with missingkey=error). As in docker/cli, `\\t` and
`\\n` written in a format are tabs and newlines, and a template error prints
"template parsing error: ..." and exits 1; a format is never ignored.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable

import click

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.gotemplate import Template, TemplateError


def _gt():
    """common.gotemplate, imported when a command formats something: it costs the commands that
    print nothing (`shoal run`) a noticeable part of their start-up."""
    from common import gotemplate
    return gotemplate

FORMAT_HELP = ("Format output using a custom template: 'table' (the default), 'table TEMPLATE', "
               "'json', or a Go template such as '{{.ID}}'")
INSPECT_FORMAT_HELP = "Format output using a custom template: 'json' (the default) or a Go template"


def _fail(err: TemplateError) -> None:
    click.echo(f"template parsing error: {err}", err=True)
    sys.exit(1)


def _template(text: str) -> Template:
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    try:
        return _gt().Template(text)
    except _gt().TemplateError as err:
        _fail(err)
        raise  # unreachable


def header_name(field: str) -> str:
    """Docker's column header for a field: "DesiredState" -> "DESIRED STATE", "TLSStatus" -> "TLS STATUS"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", field)
    return spaced.upper()




def print_rows(fmt: str | None, rows: Iterable[dict], type_name: str, default: Callable[[], None],
               headers: dict[str, str] | None = None) -> None:
    fmt = fmt or ""
    if fmt.strip() in ("", "table"):
        default()
        return
    rows = [_gt().Fields(type_name, row) for row in rows]
    if fmt == "json":
        for row in rows:
            click.echo(_gt().render("{{json .}}", row))
        return
    table = fmt.startswith("table")
    template = _template(fmt[len("table"):] if table else fmt)
    try:
        body = "".join(template.execute(row) + "\n" for row in rows)
        if not table:
            click.echo(body, nl=False)
            return
        names = {key: header_name(key) for row in rows for key in row}
        names.update(headers or {})
        head = template.execute(_gt().Fields(type_name, names), header=True) if rows or names else ""
    except _gt().TemplateError as err:
        _fail(err)
    click.echo(_gt().tabwrite(head + "\n" + body), nl=False)


def print_objects(fmt: str | None, objects: list, array: bool = True) -> None:
    """inspect (array=True: a JSON array by default) and info/version (one object)."""
    fmt = fmt or ""
    if fmt.strip() in ("", "json"):
        click.echo(json.dumps(objects if array else objects[0], indent=4, ensure_ascii=False))
        return
    try:
        template = _gt().Template(fmt)                # inspect takes the template as written
        out = "".join(template.execute(obj) + "\n" for obj in objects)
    except _gt().TemplateError as err:
        _fail(err)
    click.echo(out, nl=False)
