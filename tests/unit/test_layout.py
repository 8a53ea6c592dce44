"""Rules about the source tree that no linter checks."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_module_of_shoald_is_over_300_lines():
    long = {p.name: n for p in (ROOT / "shoal" / "daemon").glob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert not long, f"split these shoal/daemon modules: {long}"
