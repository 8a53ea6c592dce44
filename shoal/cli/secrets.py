"""shoal secret | config  create | ls | inspect | rm: the swarm's secrets and configs.

Flags, output and exit codes follow the docker CLI. ``create NAME FILE|-`` reads the data from a
file or from standard input and prints the new ID; ``ls`` prints a table (or one JSON object per
line with ``--format json``, docker's fields and string values; ``-q`` IDs only); ``inspect``
prints a JSON array in the shape of `docker secret inspect` / `docker config inspect` (a secret's
data is never shown: the manager never returns it; a config's is ``Spec.Data``, base64, as docker
prints it); ``rm`` prints each name it removed and is refused while a service uses the object.

The pure rendering functions (``summary``, ``ls_row``, ``inspect_json``) are what
tests/unit/test_secrets.py checks. Both groups are built by ``_make_group`` from one table of
what differs between them.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import click

from common.limits import MAX_CONFIG_BYTES, MAX_SECRET_BYTES
from shoal.cli.client import fail_rpc
from shoal.cli.networks import parse_pairs
from shoal.cli.formatting import FORMAT_HELP, INSPECT_FORMAT_HELP, print_objects, print_rows
from shoal.cli.output import filter_flags, print_table
from shoal.dockerjson import secret_inspect
from shoal.cli.service_format import human_duration

clock = time.time   # "2 minutes ago" is measured from this (tests pin it)


@dataclass(frozen=True)
class Kind:
    word: str           # "secret" / "config"
    rpc: str            # "Secret" / "Config": CreateSecret, GetSecret, ...
    id_field: str       # the request field naming one: secret_id / config_id
    list_field: str     # the response's repeated field: secrets / configs
    columns: tuple[str, ...]
    shows_data: bool


SECRET = Kind("secret", "Secret", "secret_id", "secrets", ("ID", "NAME", "DRIVER", "CREATED", "UPDATED"), False)
CONFIG = Kind("config", "Config", "config_id", "configs", ("ID", "NAME", "CREATED", "UPDATED"), True)


def register(cli: click.Group) -> None:
    cli.add_command(_make_group(SECRET))
    cli.add_command(_make_group(CONFIG))


# ---- rendering (pure) ------------------------------------------------------------------------

def _ago(seconds: float, now: float) -> str:
    return f"{human_duration(max(now - seconds, 0))} ago" if seconds else ""


def summary(obj, kind: Kind, now: float) -> dict:
    """The fields of `secret ls --format json` / `config ls --format json`, docker's string values."""
    out = {"ID": obj.id, "Name": obj.spec.annotations.name}
    if kind is SECRET:
        out["Driver"] = ""
    out["Labels"] = ",".join(f"{k}={v}" for k, v in sorted(obj.spec.annotations.labels.items()))
    out["CreatedAt"] = _ago(obj.meta.created_at, now)
    out["UpdatedAt"] = _ago(obj.meta.updated_at, now)
    return out


def ls_row(item: dict, kind: Kind) -> list[str]:
    middle = [item["Driver"]] if kind is SECRET else []
    return [item["ID"], item["Name"], *middle, item["CreatedAt"], item["UpdatedAt"]]


def inspect_json(obj, kind: Kind) -> dict:
    """One element of `secret inspect` / `config inspect`, in docker's shape."""
    return secret_inspect(obj, kind.shows_data)


def read_data(path: str, limit: int | None = None) -> bytes:
    """The bytes of FILE, or of standard input for ``-``; click errors name an unreadable file.
    With ``limit``, at most ``limit + 1`` bytes are read (enough to tell the data is too large)."""
    size = -1 if limit is None else limit + 1
    if path == "-":
        return click.get_binary_stream("stdin").read(size)
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as err:
        raise click.BadParameter(f"cannot read {path}: {err.strerror}", param_hint="FILE") from None


# ---- commands ------------------------------------------------------------------------------

def _make_group(kind: Kind) -> click.Group:
    word, Word = kind.word, kind.word.capitalize()

    @click.group(name=word, help=f"Manage swarm {word}s.")
    def group() -> None:
        pass

    @group.command("create", help=f"Create a {word} from a file or STDIN as content.")
    @click.option("-l", "--label", multiple=True, help=f"{Word} labels")
    @click.option("--template-driver", default="", help="Template driver (golang)")
    @click.argument("name")
    @click.argument("file", metavar="FILE|-")
    @click.pass_obj
    def create(client, label, template_driver, name, file) -> None:
        from proto import control_pb2, objects_pb2
        # The daemon refuses data over the limit; checked here too, before sending, since a
        # request over gRPC's 4 MiB message limit would only get a raw transport error.
        limit = MAX_SECRET_BYTES if kind is SECRET else MAX_CONFIG_BYTES
        data = read_data(file, limit)
        if not 0 < len(data) < limit:
            size = "empty" if not data else f"{file} is larger"
            click.echo(f"Error: {word} data must be larger than 0 and less than {limit // 1024} KiB ({size})",
                       err=True)
            sys.exit(1)
        spec = getattr(objects_pb2, f"{Word}Spec")(data=data)
        if template_driver:
            if kind is SECRET:
                click.echo("Error: --template-driver: templated secrets are not supported by Shoal (configs are)",
                           err=True)
                sys.exit(1)
            spec.templating.name = template_driver
        spec.annotations.name = name
        for key, value in parse_pairs(label, "--label").items():
            spec.annotations.labels[key] = value
        request = getattr(control_pb2, f"Create{kind.rpc}Request")(spec=spec)
        response = client.call(f"Create{kind.rpc}", request)
        click.echo(getattr(response, word).id)

    @group.command("ls", help=f"List {word}s.")
    @click.option("-f", "--filter", "filters", multiple=True,
                  help="Filter output based on conditions provided (id, name, label)")
    @click.option("--format", "fmt", default="", help=FORMAT_HELP)
    @click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
    @click.pass_obj
    def ls(client, filters, fmt, quiet) -> None:
        from proto import control_pb2
        request = getattr(control_pb2, f"List{kind.rpc}sRequest")()
        for key, values in filter_flags(filters, accepted=("id", "label", "name")).items():
            request.filters[key] = ",".join(values)
        objects = getattr(client.call(f"List{kind.rpc}s", request), kind.list_field)
        now = clock()
        items = [summary(o, kind, now) for o in objects]
        if quiet:
            for item in items:
                click.echo(item["ID"])
        else:
            print_rows(fmt, items, f"*formatter.{kind.word}Context",
                       lambda: print_table(list(kind.columns), [ls_row(i, kind) for i in items]))

    @group.command("inspect", help=f"Display detailed information on one or more {word}s.")
    @click.option("-f", "--format", "fmt", default="", help=INSPECT_FORMAT_HELP)
    @click.argument("refs", metavar=f"{word.upper()} [{word.upper()}...]", nargs=-1, required=True)
    @click.pass_obj
    def inspect(client, fmt, refs) -> None:
        found, missing = [], []
        for ref in refs:
            obj = _get(client, kind, ref)
            (found if obj is not None else missing).append(obj if obj is not None else ref)
        print_objects(fmt, [inspect_json(o, kind) for o in found])
        for ref in missing:
            click.echo(f"Error: No such {word}: {ref}", err=True)
        if missing:
            sys.exit(1)

    @group.command("rm", help=f"Remove one or more {word}s.")
    @click.argument("refs", metavar=f"{word.upper()} [{word.upper()}...]", nargs=-1, required=True)
    @click.pass_obj
    def rm(client, refs) -> None:
        import grpc

        from proto import control_pb2
        failed = False
        for ref in refs:
            request = getattr(control_pb2, f"Remove{kind.rpc}Request")(**{kind.id_field: ref})
            try:
                getattr(client.stub, f"Remove{kind.rpc}")(request, timeout=client.timeout)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    fail_rpc(err, client.host)
                click.echo(f"Error response from daemon: {err.details() or f'No such {word}: {ref}'}", err=True)
                failed = True
                continue
            click.echo(ref)
        if failed:
            sys.exit(1)

    return group


def _get(client, kind: Kind, ref: str):
    """The object ``ref`` names, or None when the daemon says there is none; other errors exit."""
    import grpc

    from proto import control_pb2
    request = getattr(control_pb2, f"Get{kind.rpc}Request")(**{kind.id_field: ref})
    try:
        return getattr(getattr(client.stub, f"Get{kind.rpc}")(request, timeout=client.timeout), kind.word)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return None
        fail_rpc(err, client.host)
