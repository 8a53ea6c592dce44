"""What the flag readers shared by ``shoal run`` and ``shoal service create`` need without
protobuf: the flag error and ``--env-file``. ``shoal.cli.service_flags`` re-exports both; the
container commands import them from here, so ``run`` does not load protobuf (docs/front-door.md)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from common import syntax


class FlagError(ValueError):
    """A flag value the CLI cannot turn into a spec."""

    def __init__(self, flag: str, value: object, problem: str):
        self.flag, self.value, self.problem = flag, value, problem
        super().__init__(f'invalid argument "{value}" for "{flag}" flag: {problem}')


def read_env_files(paths: Iterable[str], environ: dict[str, str] | None = None) -> list[str]:
    """KEY=VALUE entries of --env-file files, read as docker reads them (common.syntax): a bare
    KEY takes its value from `environ` (this process's environment) or is left out."""
    out = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as err:
            raise FlagError("--env-file", path, getattr(err, "strerror", None) or str(err)) from None
        try:
            out.extend(syntax.env_file_lines(text, dict(os.environ) if environ is None else environ))
        except ValueError as err:
            raise FlagError("--env-file", path, str(err)) from None
    return out
