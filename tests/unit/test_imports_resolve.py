"""Every `from X import Y` of ours resolves, including the ones inside functions that only run on
one command path (import-linter and mypy do not see those: a module moved during this project's
life broke `shoal events --format` that way until a lab test ran it)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("shoal", "manager", "worker", "agent_runtime", "common", "proto")


def test_every_from_import_of_ours_resolves():
    broken = []
    for top in (*OURS, "bench", "deploy", "tests"):
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                        and node.module.split(".")[0] in OURS):
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                try:
                    module = importlib.import_module(node.module)
                except ImportError as err:
                    broken.append(f"{where}: {node.module}: {err}")
                    continue
                for alias in node.names:
                    if alias.name == "*" or hasattr(module, alias.name):
                        continue
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        broken.append(f"{where}: {node.module} has no {alias.name}")
    assert not broken, "\n".join(broken)
