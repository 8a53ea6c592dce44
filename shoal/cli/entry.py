"""The ``shoal`` program: a ``run`` that shoal.cli.run_fast takes runs without loading click;
every other command line goes to the click CLI (shoal.cli.main)."""

from __future__ import annotations

import sys


def main() -> None:
    from shoal.cli import run_fast
    run_fast.main(sys.argv[1:])          # exits when it ran the command
    from shoal.cli.main import main as cli_main
    cli_main()
