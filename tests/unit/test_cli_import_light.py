"""The runtime commands of the CLI (`shoal run`, `shoal image …`) load neither gRPC nor protobuf,
aiohttp, asyncio or the template engine: their start-up is most of `shoal run --rm`'s time
(bench/runtime.py --cli-only, docs/front-door.md)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.support.cli_imports import heavy_in


def loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_run_and_image_commands_import_nothing_heavy():
    modules = loaded_after("import shoal.cli.main as m\n"
                           "for name in ('run', 'ps', 'container', 'image', 'pull', 'rmi'):\n"
                           "    assert m.cli.get_command(None, name) is not None, name\n"
                           "import agent_runtime.api, shoal.cli.registry_auth\n"
                           "from agent_runtime.images.reference import parse_reference")
    assert not heavy_in(modules)


def test_lazy_top_level_group_has_every_command_once_listed():
    from click.testing import CliRunner

    from shoal.cli.main import MODULES, cli
    names = cli.list_commands(None)  # type: ignore[arg-type]
    assert {"run", "image", "service", "node", "stack", "events", "ui", "secret", "config"} <= set(names)
    assert set(cli._loaded) == set(MODULES)
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert all(name in help_text for name in names)


def test_every_command_loaded_lazily_takes_dockers_bool_flags():
    """Subcommands a later module adds to an earlier group (prune to `container`, logs to `service`)
    get docker's --flag=BOOL spelling too."""
    from shoal.cli.main import cli

    def walk(command):
        yield command
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)
    commands = list(walk(cli))
    assert {"prune", "logs"} <= {c.name for c in commands}
    assert all(getattr(c, "_docker_bools", False) for c in commands)
