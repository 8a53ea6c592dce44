"""``shoal image import|load|pull|push|ls|inspect|tag|rm|prune`` and the aliases ``shoal pull``,
``shoal push``, ``shoal images`` and ``shoal rmi``.

Every command is a call to this node's shoal-runtimed (the socket ``shoal run`` uses:
SHOAL_RUNTIME_HOST, else ``runtimed.sock`` beside ``-H``/SHOAL_HOST, else /run/shoal/runtimed.sock),
so the daemon's settings (``--insecure-registry``, ``--registry-mirror``, its data root) apply and
what a command pulls is what ``shoal run`` and services on the node find. Archives (``load``,
``import``) are streamed to the daemon; pull and push progress is streamed back. Registry
credentials come from the Docker ``config.json`` (``$DOCKER_CONFIG`` or ``~/.docker``), as ``docker
pull`` finds them, and go to the daemon in Docker's ``X-Registry-Auth`` header for that one call.
"""

from __future__ import annotations

import datetime as dt
import re
import sys

import click

from shoal.cli.formatting import FORMAT_HELP, INSPECT_FORMAT_HELP, print_objects, print_rows
from shoal.cli.output import print_table


def register(cli: click.Group) -> None:
    cli.add_command(image)
    cli.add_command(pull, "pull")
    cli.add_command(push, "push")
    cli.add_command(image_ls, "images")
    cli.add_command(image_rm, "rmi")
    cli.add_command(image_save, "save")
    cli.add_command(image_load, "load")


def _client(ctx: click.Context):
    from shoal.cli.containers import _client as runtime_client
    return runtime_client(ctx)


def _fail(exc: Exception) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(1)


def _run(fn, *args, **kwargs):
    """Call the daemon; print its error as docker does and exit 1."""
    from agent_runtime.errors import ShoalRuntimeError
    try:
        return fn(*args, **kwargs)
    except ShoalRuntimeError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(exc)


def _reference(text: str, default_tag: bool = True):
    from agent_runtime.images.errors import InvalidReference
    from agent_runtime.images.reference import parse_reference
    try:
        return parse_reference(text, default_tag=default_tag)
    except InvalidReference as exc:
        _fail(exc)


def _auth(registry: str) -> str | None:
    """The X-Registry-Auth value for ``registry`` from the Docker config.json, if it has credentials."""
    from shoal.cli.registry_auth import auth_header
    return auth_header(registry)


def human_size(size: float) -> str:
    """Docker's decimal sizes: ``1.98MB``, ``512B``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{size}TB"


def human_since(created: str, now: dt.datetime | None = None) -> str:
    """Docker's ``CreatedSince``: units.HumanDuration + " ago" (``2 hours ago``). An image dated
    at the epoch (reproducible builds) shows ``56 years ago``, as in Docker: its CLI leaves the
    column empty only for Go's zero time, never for the epoch."""
    from shoal.cli.service_format import human_duration
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", created or "")
    when = dt.datetime.fromtimestamp(0, dt.timezone.utc)     # none: docker's Created 0, the epoch
    if match:
        when = dt.datetime.fromisoformat(match.group(1) + (match.group(3) or "Z").replace("Z", "+00:00"))
    seconds = max(((now or dt.datetime.now(dt.timezone.utc)) - when).total_seconds(), 0)
    return f"{human_duration(seconds)} ago"


class _Progress:
    """Docker's pull/push messages: per-layer lines (a live rich display on a terminal, else one
    line per status change), other statuses printed as they come; returns the ``aux`` payload."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last: dict[str, str] = {}
        self.rich = None
        self.aux: dict | None = None
        if not quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
            self.rich = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn())
            self.tasks: dict[str, int] = {}

    def __enter__(self) -> "_Progress":
        if self.rich:
            self.rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.rich:
            self.rich.stop()

    def consume(self, messages) -> dict | None:
        for message in messages:
            self(message)
        return self.aux

    def __call__(self, message: dict) -> None:
        if "aux" in message:
            self.aux = message["aux"]
            return
        status, layer = message.get("status", ""), message.get("id", "")
        if self.quiet:
            return
        detail = message.get("progressDetail") or {}
        if layer and self.rich is not None and detail:
            if layer not in self.tasks:
                self.tasks[layer] = self.rich.add_task(layer, total=detail.get("total") or None)
            self.rich.update(self.tasks[layer], description=f"{layer}: {status}",
                             completed=detail.get("current", 0), total=detail.get("total") or None)
            return
        if not layer:
            self._echo(status)
        elif self.last.get(layer) != status:
            self.last[layer] = status
            self._echo(f"{layer}: {status}")

    def _echo(self, line: str) -> None:
        if self.rich is not None:
            self.rich.console.print(line, markup=False, highlight=False)
        else:
            click.echo(line)


@click.group()
def image() -> None:
    """Manage images on this node (through its shoal-runtimed)."""


def _stdin_or_fail() -> None:
    if sys.stdin.isatty():
        _fail(Exception("requested load from stdin, but stdin is empty"))


@image.command("import")
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction (CMD, ENV, ...)")
@click.option("-m", "--message", default=None, help="Set the history message of the image")
@click.argument("file")
@click.argument("reference", required=False)
@click.pass_context
def image_import(ctx, changes: tuple[str, ...], message: str | None, file: str, reference: str | None) -> None:
    """Import a rootfs tarball (plain or gzip; - for stdin) as a one-layer image."""
    if reference:
        _reference(reference)
    client = _client(ctx)
    if file == "-":
        _stdin_or_fail()
        img = _run(client.image_import_stream, sys.stdin.buffer, reference, list(changes), message)
    else:
        try:
            stream = open(file, "rb")
        except OSError as exc:
            _fail(Exception(f"open {file}: {exc.strerror}"))
        with stream:
            img = _run(client.image_import_stream, stream, reference, list(changes), message)
    click.echo(img["Id"])


def _tar_directory(path: str):
    """A readable pipe carrying ``path`` (an OCI layout directory) as a tar stream."""
    import os
    import tarfile
    import threading
    read_fd, write_fd = os.pipe()

    def write() -> None:
        with os.fdopen(write_fd, "wb") as out:
            try:
                with tarfile.open(fileobj=out, mode="w|") as tar:
                    tar.add(path, arcname=".")
            except (BrokenPipeError, OSError):
                pass          # the daemon refused the upload; its answer says why
    threading.Thread(target=write, daemon=True).start()
    return os.fdopen(read_fd, "rb")


@image.command("load")
@click.option("-i", "--input", "input_path", default=None,
              help="Read from this archive or OCI layout directory instead of stdin")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
@click.pass_context
def image_load(ctx, input_path: str | None, quiet: bool) -> None:
    """Load images from an OCI image layout or a docker-save archive."""
    import os
    client = _client(ctx)
    if input_path is None:
        _stdin_or_fail()
        images = _run(client.image_load_stream, sys.stdin.buffer)
    else:
        try:
            stream = _tar_directory(input_path) if os.path.isdir(input_path) else open(input_path, "rb")
        except OSError as exc:
            _fail(Exception(f"open {input_path}: {exc.strerror}"))
        with stream:
            images = _run(client.image_load_stream, stream)
    if not quiet:
        for img in images:
            if img["RepoTags"]:
                for tag in img["RepoTags"]:
                    click.echo(f"Loaded image: {tag}")
            else:
                click.echo(f"Loaded image ID: {img['Id']}")


@image.command("save")
@click.option("-o", "--output", default=None, help="Write to a file, instead of STDOUT")
@click.option("--platform", default=None, help="Save only the given platform (os[/arch])")
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def image_save(ctx, output: str | None, platform: str | None, images) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default).

    The archive is Docker's (25+): an OCI image layout with a manifest.json, so docker load,
    podman load, skopeo and shoal load read it."""
    import os
    if platform:
        raise click.UsageError("--platform is not supported: an image in Shoal's store has one platform")
    client = _client(ctx)
    if output is None:
        if sys.stdout.isatty():
            _fail(Exception("cowardly refusing to save to a terminal. Use the -o flag or redirect"))
        _run(client.image_save, list(images), sys.stdout.buffer)
        sys.stdout.flush()
        return
    tmp = f"{output}.{os.getpid()}.tmp"       # no half-written archive under the name asked for
    try:
        with open(tmp, "wb") as out:
            _run(client.image_save, list(images), out)
        os.replace(tmp, output)
    except OSError as exc:
        _fail(Exception(f"failed to save image: {exc.strerror}: {exc.filename or output}"))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@image.command("pull")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option("--platform", default=None, help="os/arch to pick from a multi-platform image (default: this node's)")
@click.argument("reference")
@click.pass_context
def pull(ctx, quiet: bool, platform: str | None, reference: str) -> None:
    """Pull an image from a registry (with the daemon's registry settings)."""
    parsed = _reference(reference)
    client = _client(ctx)
    with _Progress(quiet) as progress:
        _run(progress.consume, client.image_pull_stream(reference, _auth(parsed.registry), platform))
    click.echo(str(parsed))


@image.command("push")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.argument("reference")
@click.pass_context
def push(ctx, quiet: bool, reference: str) -> None:
    """Push an image to a registry (with the daemon's registry settings)."""
    parsed = _reference(reference)
    client = _client(ctx)
    with _Progress(quiet) as progress:
        aux = _run(progress.consume, client.image_push_stream(reference, _auth(parsed.registry)))
    if quiet and aux:
        click.echo(f"{parsed.tag}: digest: {aux['Digest']} size: {aux['Size']}")


@image.command("ls")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all images (accepted for docker compatibility)")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.argument("repository", required=False)
@click.pass_context
def image_ls(ctx, show_all: bool, quiet: bool, no_trunc: bool, fmt: str, repository: str | None) -> None:
    """List images."""
    from agent_runtime.images.reference import parse_reference
    rows: list[dict] = []
    wanted = _reference(repository, default_tag=False) if repository else None
    images = _run(_client(ctx).images)
    for img in sorted(images, key=lambda i: i["Created"], reverse=True):
        names = [parse_reference(t) for t in img["RepoTags"]] or [None]
        for name in names:
            if wanted is not None and (name is None or name.name != wanted.name or (wanted.tag and name.tag != wanted.tag)):
                continue
            rows.append({
                "Repository": name.familiar_name if name else "<none>",
                "Tag": name.tag if name else "<none>",
                "ID": img["Id"] if no_trunc else img["Id"].split(":", 1)[-1][:12],
                "CreatedSince": human_since(img["Created"]),
                "CreatedAt": img["Created"],
                "Size": human_size(img["Size"]),
                "Digest": (img.get("Metadata") or {}).get("ManifestDigest", ""),
            })
    if quiet:
        for iid in dict.fromkeys(row["ID"] for row in rows):
            click.echo(iid)
    else:
        print_rows(fmt, rows, "*formatter.imageContext", lambda: print_table(
            ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
            [[r["Repository"], r["Tag"], r["ID"], r["CreatedSince"], r["Size"]] for r in rows]),
            headers={"ID": "IMAGE ID", "CreatedSince": "CREATED"})


@image.command("inspect")
@click.option("-f", "--format", "fmt", default="", help=INSPECT_FORMAT_HELP)
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def image_inspect(ctx, fmt: str, images: tuple[str, ...]) -> None:
    """Display detailed information on one or more images (a JSON array)."""
    from agent_runtime.errors import NotFound, ShoalRuntimeError
    client = _client(ctx)
    found, errors = [], []
    for ref in images:
        try:
            found.append(client.image_inspect(ref))
        except NotFound as exc:
            errors.append(str(exc))
        except ShoalRuntimeError as exc:
            _fail(exc)
    print_objects(fmt, found)
    for error in errors:
        click.echo(f"Error: {error}", err=True)
    if errors:
        sys.exit(1)


@image.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
def image_tag(ctx, source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    _reference(target)
    _run(_client(ctx).image_tag, source, target)


@image.command("rm")
@click.option("-f", "--force", is_flag=True, help="Remove an image with several tags by id; untag one in use")
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def image_rm(ctx, force: bool, images: tuple[str, ...]) -> None:
    """Remove one or more images (never one a container uses: -f only untags it)."""
    from agent_runtime.errors import ShoalRuntimeError, Unavailable
    client = _client(ctx)
    failed = False
    for ref in images:
        try:
            for item in client.image_remove(ref, force=force):
                for key, value in item.items():
                    click.echo(f"{key}: {value}")
        except Unavailable as exc:
            _fail(exc)
        except ShoalRuntimeError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@image.command("prune")
@click.option("-a", "--all", "prune_all", is_flag=True, help="Remove all images no container uses, not just dangling ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.pass_context
def image_prune(ctx, prune_all: bool, force: bool) -> None:
    """Remove unused images."""
    what = "all images without at least one container associated to them" if prune_all else "all dangling images"
    if not force and not click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?"):
        return
    report = _run(_client(ctx).image_prune, prune_all)
    if report["ImagesDeleted"]:
        click.echo("Deleted Images:")
        for item in report["ImagesDeleted"]:
            for key, value in item.items():
                click.echo(f"{key.lower()}: {value}")
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(report['SpaceReclaimed'])}")


image.add_command(image_ls, "list")
image.add_command(image_rm, "remove")
