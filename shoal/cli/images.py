"""``shoal image import|load|pull|push|ls|inspect|tag|rm|prune`` and the aliases ``shoal pull``,
``shoal push``, ``shoal images`` and ``shoal rmi``.

These work directly on this node's image store, ``<runtime root>/images`` (``--runtime-root`` or
env SHOAL_RUNTIME_ROOT, default /var/lib/shoal/runtime: the ``--root`` of shoal-runtimed), so they
stay thin over ``agent_runtime.images.ImageStore``. Registry credentials come from the Docker
``config.json`` (``$DOCKER_CONFIG`` or ``~/.docker``), as ``docker pull`` finds them.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sys
import tempfile
from pathlib import Path

import click

from shoal.cli.formatting import FORMAT_HELP, INSPECT_FORMAT_HELP, print_objects, print_rows
from shoal.cli.output import print_table

DEFAULT_RUNTIME_ROOT = "/var/lib/shoal/runtime"

runtime_root_option = click.option(
    "--runtime-root", envvar="SHOAL_RUNTIME_ROOT", default=DEFAULT_RUNTIME_ROOT, show_default=True,
    type=click.Path(file_okay=False), help="Runtime root; images live in its images/ folder")
insecure_option = click.option(
    "--insecure-registry", "insecure_registries", multiple=True, metavar="REGISTRY",
    help="Allow plain HTTP to this registry (host:port, host or CIDR); loopback is always allowed")


def register(cli: click.Group) -> None:
    cli.add_command(image)
    cli.add_command(pull, "pull")
    cli.add_command(push, "push")
    cli.add_command(image_ls, "images")
    cli.add_command(image_rm, "rmi")


def _store(runtime_root: str):
    from agent_runtime.images import ImageStore
    return ImageStore(Path(runtime_root) / "images")


def _fail(exc: Exception) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(1)


def _run(fn, *args, **kwargs):
    """Call a store operation; print an image error as docker does and exit 1."""
    from agent_runtime.images import ImageError
    try:
        return fn(*args, **kwargs)
    except ImageError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(exc)


def human_size(size: float) -> str:
    """Docker's decimal sizes: ``1.98MB``, ``512B``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{size}TB"


def human_since(created: str, now: dt.datetime | None = None) -> str:
    """Docker's ``CreatedSince``: ``2 hours ago``, ``56 years ago``."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", created or "")
    if not match:
        return "N/A"
    when = dt.datetime.fromisoformat(match.group(1) + (match.group(3) or "Z").replace("Z", "+00:00"))
    seconds = max(((now or dt.datetime.now(dt.timezone.utc)) - when).total_seconds(), 0)
    for limit, size, name in ((60, 1, "second"), (3600, 60, "minute"), (86400 * 2, 3600, "hour"),
                              (86400 * 14, 86400, "day"), (86400 * 60, 86400 * 7, "week"),
                              (86400 * 365 * 2, 86400 * 30, "month")):
        if seconds < limit:
            count = int(seconds // size)
            if size == 1 and count < 1:
                return "Less than a second ago"
            return f"{count} {name}{'s' if count != 1 else ''} ago" if count != 1 else f"About a{'n' if name == 'hour' else ''} {name} ago"
    return f"{int(seconds // (86400 * 365))} years ago"


def image_inspect_json(image) -> dict:
    """Docker's ``image inspect`` object for an ImageStore Image."""
    config = image.config
    return {
        "Id": image.id,
        "RepoTags": image.repo_tags,
        "RepoDigests": image.repo_digests,
        "Created": image.created,
        "Config": config.get("config") or {},
        "Architecture": config.get("architecture", ""),
        "Os": config.get("os", ""),
        "Size": image.size,
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Metadata": {"ManifestDigest": image.manifest_digest},
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDirs": [str(p) for p in reversed(image.layers)]}},
    }


class _Progress:
    """Per-layer progress: a live rich display on a terminal, else one line per status change."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last: dict[str, str] = {}
        self.rich = None
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

    def __call__(self, event) -> None:
        if self.quiet:
            return
        if self.rich is not None:
            if event.id not in self.tasks:
                self.tasks[event.id] = self.rich.add_task(event.id, total=event.total or None)
            self.rich.update(self.tasks[event.id], description=f"{event.id}: {event.status}",
                             completed=event.current, total=event.total or None)
            return
        if self.last.get(event.id) != event.status:
            self.last[event.id] = event.status
            click.echo(f"{event.id}: {event.status}")


@click.group()
def image() -> None:
    """Manage images on this node."""


@image.command("import")
@runtime_root_option
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction (CMD, ENV, ...)")
@click.option("-m", "--message", default=None, help="Set the history message of the image")
@click.argument("file")
@click.argument("reference", required=False)
def image_import(runtime_root: str, changes: tuple[str, ...], message: str | None, file: str, reference: str | None) -> None:
    """Import a rootfs tarball (plain or gzip; - for stdin) as a one-layer image."""
    source = sys.stdin.buffer if file == "-" else file
    img = _run(_store(runtime_root).import_rootfs, source, reference, list(changes), message)
    click.echo(img.id)


@image.command("load")
@runtime_root_option
@click.option("-i", "--input", "input_path", default=None, help="Read from this archive or OCI layout directory instead of stdin")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
def image_load(runtime_root: str, input_path: str | None, quiet: bool) -> None:
    """Load images from an OCI image layout or a docker-save archive."""
    store = _store(runtime_root)
    if input_path is None:
        if sys.stdin.isatty():
            _fail(Exception("requested load from stdin, but stdin is empty"))
        with tempfile.NamedTemporaryFile(dir=store.tmp, prefix="stdin-") as tmp:
            shutil.copyfileobj(sys.stdin.buffer, tmp)
            tmp.flush()
            images = _run(store.load, tmp.name)
    else:
        images = _run(store.load, input_path)
    if not quiet:
        for img in images:
            if img.repo_tags:
                for tag in img.repo_tags:
                    click.echo(f"Loaded image: {tag}")
            else:
                click.echo(f"Loaded image ID: {img.id}")


@image.command("pull")
@runtime_root_option
@insecure_option
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option("--platform", default="linux/amd64", show_default=True, help="os/arch to pick from a multi-platform image")
@click.argument("reference")
def pull(runtime_root: str, insecure_registries: tuple[str, ...], quiet: bool, platform: str, reference: str) -> None:
    """Pull an image from a registry."""
    from agent_runtime.images import docker_config_auth, parse_reference
    parsed = _run(parse_reference, reference)
    os_name, _, arch = platform.partition("/")
    store = _store(runtime_root)
    before = store.resolve(reference).id if store.exists(reference) else None
    if not quiet:
        click.echo(f"{parsed.tag or parsed.digest}: Pulling from {parsed.familiar_name}")
    with _Progress(quiet) as progress:
        img = _run(store.pull, reference, insecure_registries, docker_config_auth(parsed.registry), progress, (os_name, arch))
    digest = next((d.split("@", 1)[1] for d in img.repo_digests if d.startswith(parsed.familiar_name + "@")), img.manifest_digest)
    if not quiet:
        click.echo(f"Digest: {digest}")
        status = "Image is up to date for" if before == img.id else "Downloaded newer image for"
        click.echo(f"Status: {status} {parsed.familiar}")
    click.echo(str(parsed))


@image.command("push")
@runtime_root_option
@insecure_option
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.argument("reference")
def push(runtime_root: str, insecure_registries: tuple[str, ...], quiet: bool, reference: str) -> None:
    """Push an image to a registry."""
    from agent_runtime.images import docker_config_auth, parse_reference
    parsed = _run(parse_reference, reference)
    store = _store(runtime_root)
    img = _run(store.resolve, reference)
    if not quiet:
        click.echo(f"The push refers to repository [{parsed.name}]")
    with _Progress(quiet) as progress:
        digest = _run(store.push, reference, insecure_registries, docker_config_auth(parsed.registry), progress)
    click.echo(f"{parsed.tag}: digest: {digest} size: {store.blobs.size(img.manifest_digest)}")


@image.command("ls")
@runtime_root_option
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all images (accepted for docker compatibility)")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("--format", "fmt", default="", help=FORMAT_HELP)
@click.argument("repository", required=False)
def image_ls(runtime_root: str, show_all: bool, quiet: bool, no_trunc: bool, fmt: str, repository: str | None) -> None:
    """List images."""
    from agent_runtime.images import parse_reference
    rows: list[dict] = []
    wanted = _run(parse_reference, repository, default_tag=False) if repository else None
    for img in _store(runtime_root).list():
        names = [parse_reference(t) for t in img.repo_tags] or [None]
        for name in names:
            if wanted is not None and (name is None or name.name != wanted.name or (wanted.tag and name.tag != wanted.tag)):
                continue
            rows.append({
                "Repository": name.familiar_name if name else "<none>",
                "Tag": name.tag if name else "<none>",
                "ID": img.id if no_trunc else img.short_id,
                "CreatedSince": human_since(img.created),
                "CreatedAt": img.created,
                "Size": human_size(img.size),
                "Digest": img.manifest_digest,
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
@runtime_root_option
@click.option("-f", "--format", "fmt", default="", help=INSPECT_FORMAT_HELP)
@click.argument("images", nargs=-1, required=True)
def image_inspect(runtime_root: str, fmt: str, images: tuple[str, ...]) -> None:
    """Display detailed information on one or more images (a JSON array)."""
    from agent_runtime.images import ImageError
    store = _store(runtime_root)
    found, errors = [], []
    for ref in images:
        try:
            found.append(image_inspect_json(store.resolve(ref)))
        except ImageError as exc:
            errors.append(str(exc))
    print_objects(fmt, found)
    for error in errors:
        click.echo(f"Error: {error}", err=True)
    if errors:
        sys.exit(1)


@image.command("tag")
@runtime_root_option
@click.argument("source")
@click.argument("target")
def image_tag(runtime_root: str, source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    _run(_store(runtime_root).tag, source, target)


@image.command("rm")
@runtime_root_option
@click.option("-f", "--force", is_flag=True, help="Remove an image with several tags by id; untag one in use")
@click.argument("images", nargs=-1, required=True)
def image_rm(runtime_root: str, force: bool, images: tuple[str, ...]) -> None:
    """Remove one or more images."""
    from agent_runtime.images import ImageError
    store = _store(runtime_root)
    failed = False
    for ref in images:
        try:
            for item in store.remove(ref, force=force):
                for key, value in item.items():
                    click.echo(f"{key}: {value}")
        except ImageError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@image.command("prune")
@runtime_root_option
@click.option("-a", "--all", "prune_all", is_flag=True, help="Remove all images no container uses, not just dangling ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def image_prune(runtime_root: str, prune_all: bool, force: bool) -> None:
    """Remove unused images."""
    what = "all images without at least one container associated to them" if prune_all else "all dangling images"
    if not force and not click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?"):
        return
    report = _run(_store(runtime_root).prune, prune_all)
    if report["ImagesDeleted"]:
        click.echo("Deleted Images:")
        for item in report["ImagesDeleted"]:
            for key, value in item.items():
                click.echo(f"{key.lower()}: {value}")
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(report['SpaceReclaimed'])}")


image.add_command(image_ls, "list")
image.add_command(image_rm, "remove")
