"""shoal-lab: Shoal clusters on one machine, each host a network namespace (docs/architecture.md, "The lab").

Exports `Lab` (the Python API tests use), the errors, and `main` (the `shoal-lab` console script).
The address and naming plan is documented in `shoal.lab.plan`.
"""
from shoal.lab.errors import CommandFailed, LabError, LabExists, LabNotFound
from shoal.lab.lab import Lab


def main(argv: list[str] | None = None) -> None:
    """Console entry point `shoal-lab` (imports click and rich only when the command runs)."""
    from shoal.lab.cli import main as cli_main

    cli_main(argv)


__all__ = ["Lab", "LabError", "LabExists", "LabNotFound", "CommandFailed", "main"]
