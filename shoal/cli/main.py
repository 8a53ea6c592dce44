"""The ``shoal`` command: Docker-shaped commands for a Shoal swarm and its nodes."""

from __future__ import annotations

import importlib
import os
import sys

import click

from shoal import __version__
from shoal.cli.client import Client, TLSOptions

# The modules that add the commands, in the order they add them (service_logs adds to `service`,
# events to `system`, prune to `container`, `volume`, `network` and `system`). They are imported when a command needs them: `shoal run` loads only
# shoal.cli.containers, not the cluster commands' protobuf and templates (docs/front-door.md).
MODULES = ("swarm", "clientcert", "nodes", "images", "containers", "services", "service_logs", "networks", "stacks",
           "secrets", "system", "events", "ui", "inspect", "prune")
# Commands known to come from one module; any other name (or a listing, --help) loads them all.
FAST = {**dict.fromkeys(("run", "ps", "exec", "logs", "attach"), "containers"),
        **dict.fromkeys(("image", "pull", "push", "images", "rmi", "save", "load"), "images")}


class LazyGroup(click.Group):
    """The top-level group: command modules load on first use (``get_command``); code that reads
    ``commands`` (the help listing, tests walking the tree) gets every module loaded."""

    def __init__(self, *args, **kwargs) -> None:
        self._loaded: set[str] = set()
        self._loading = 0
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def commands(self) -> dict[str, click.Command]:
        if not self._loading:
            self._load(*MODULES)
        return self._commands

    @commands.setter
    def commands(self, value: dict[str, click.Command]) -> None:
        self._commands = value

    def _load(self, *names: str) -> None:
        self._loading += 1
        try:
            for name in names:
                if name not in self._loaded:
                    self._loaded.add(name)
                    importlib.import_module(f"shoal.cli.{name}").register(self)
                    for command in list(self._commands.values()):   # also what it added to groups
                        _adapt(command)
        finally:
            self._loading -= 1

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self._commands:
            module = FAST.get(cmd_name)
            self._load(*((module,) if module else MODULES))
        return self._commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-H", "--host", default=None, envvar="SHOAL_HOST",
              help="Daemon socket to connect to: unix:///path or tcp://HOST:2376 (default $SHOAL_HOST, a tcp:// "
                   "$DOCKER_HOST, else unix:///run/shoal/shoal.sock)")
@click.option("--tlsverify", is_flag=True, default=None, help="Use TLS and verify the remote (tcp:// hosts; "
                                                              "default $DOCKER_TLS_VERIFY)")
@click.option("--tlscacert", default=None, metavar="FILE",
              help='Trust certs signed only by this CA (default "$DOCKER_CERT_PATH/ca.pem", "~/.docker/ca.pem")')
@click.option("--tlscert", default=None, metavar="FILE", help="Path to TLS certificate file (default cert.pem there)")
@click.option("--tlskey", default=None, metavar="FILE", help="Path to TLS key file (default key.pem there)")
@click.version_option(__version__, "-v", "--version", prog_name="shoal")
@click.pass_context
def cli(ctx: click.Context, host: str | None, tlsverify: bool | None, tlscacert: str | None, tlscert: str | None,
        tlskey: str | None) -> None:
    """A Swarm-style container orchestrator."""
    verify = bool(os.environ.get("DOCKER_TLS_VERIFY")) if tlsverify is None else tlsverify
    ctx.obj = Client(host, tls=TLSOptions(verify, tlscacert, tlscert, tlskey))


# ---- the docker CLI's conventions for flags and usage errors ---------------------------------------

USAGE_ERROR = 125           # docker's exit code when the command line itself is wrong
_BOOLS = {"true": True, "1": True, "t": True, "false": False, "0": False, "f": False}


def _flag_forms(command: click.Command) -> tuple[dict[str, tuple[click.Option, bool]], set[str]]:
    """Boolean flags by spelling (option, positive?) and the spellings of options taking a value."""
    flags: dict[str, tuple[click.Option, bool]] = {}
    valued: set[str] = set()
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        if param.is_flag and not param.count:
            flags.update({name: (param, True) for name in param.opts})
            flags.update({name: (param, False) for name in param.secondary_opts})
        else:
            valued.update(param.opts)
    return flags, valued


def docker_bool_args(command: click.Command, args: list[str]) -> list[str]:
    """Rewrite Go's `--flag=false` / `--flag=true` spellings of boolean flags (`--detach=false`,
    `--rm=true`, `-d=false`) into what click takes; stops at the first positional argument of a
    command that takes none after it (`run IMAGE CMD...`) and at `--`."""
    flags, valued = _flag_forms(command)
    interspersed = command.context_settings.get("allow_interspersed_args", command.allow_interspersed_args)
    out: list[str] = []
    skip_value = False
    for index, arg in enumerate(args):
        if skip_value:
            skip_value = False
            out.append(arg)
            continue
        if arg == "--" or (not arg.startswith("-") and not interspersed):
            out.extend(args[index:])
            break
        name, sep, value = arg.partition("=")
        if sep and name in flags and value.lower() in _BOOLS:
            option, positive = flags[name]
            want = _BOOLS[value.lower()] == positive
            if want:
                out.append(option.opts[-1])
            elif option.secondary_opts:
                out.append(option.secondary_opts[-1])
            continue                        # --flag=false of a plain flag: leave it unset
        if not sep and arg in valued:
            skip_value = True
        out.append(arg)
    return out


def _adapt(command: click.Command) -> None:
    """Give every command docker's `--flag=BOOL` spelling (the top-level group's own commands
    get it as their modules load, LazyGroup._load)."""
    if not getattr(command, "_docker_bools", False):
        command._docker_bools = True  # type: ignore[attr-defined]
        original = command.parse_args

        def parse_args(ctx: click.Context, args: list[str]) -> list[str]:
            return original(ctx, docker_bool_args(command, args))

        command.parse_args = parse_args  # type: ignore[method-assign]
    if isinstance(command, click.Group) and not isinstance(command, LazyGroup):
        for sub in command.commands.values():
            _adapt(sub)


_adapt(cli)


def _usage_message(err: click.UsageError) -> str:
    if isinstance(err, click.NoSuchOption):
        name = err.option_name
        if name.startswith("--"):
            return f"unknown flag: {name}"
        return f"unknown shorthand flag: {name[1:2]!r} in {name}"
    if isinstance(err, click.MissingParameter) and isinstance(err.param, click.Argument) and err.ctx is not None:
        wanted = [p for p in err.ctx.command.params if isinstance(p, click.Argument) and p.required]
        count = sum(max(p.nargs, 1) for p in wanted)
        arguments = [p for p in err.ctx.command.params if isinstance(p, click.Argument)]
        how = "at least" if any(p.nargs == -1 for p in arguments) else "exactly"
        return f'"{err.ctx.command_path}" requires {how} {count} argument{"s" if count != 1 else ""}.'
    if isinstance(err, click.BadOptionUsage) and "requires an argument" in err.format_message():
        return f"flag needs an argument: {err.option_name}"
    return err.format_message()


def run(args: list[str] | None = None) -> int:
    """Run the CLI on `args` (default: sys.argv) and return the exit code, docker's way: a wrong
    command line prints `MESSAGE` and `See 'shoal COMMAND --help'.` and exits 125."""
    try:
        result = cli.main(args=args, prog_name="shoal", standalone_mode=False)
    except click.UsageError as err:
        path = err.ctx.command_path if err.ctx is not None else "shoal"
        click.echo(f"{_usage_message(err)}\nSee '{path} --help'.", err=True)
        return USAGE_ERROR
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
