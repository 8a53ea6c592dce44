"""Rules about the source tree that no linter checks."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_module_of_shoald_is_over_300_lines():
    long = {p.name: n for p in (ROOT / "shoal" / "daemon").glob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert not long, f"split these shoal/daemon modules: {long}"


def test_test_modules_do_not_import_each_other():
    """Shared helpers live in tests/support; a test module or a conftest is never imported."""
    offenders = []
    for path in (ROOT / "tests").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.split()
            if len(words) >= 2 and words[0] in ("from", "import") and words[1].startswith("tests."):
                last = words[1].rsplit(".", 1)[-1]
                if last.startswith("test_") or last == "conftest":
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_test_module_names_are_unique_outside_packages():
    """pytest imports a test module in a folder without __init__.py by its bare name: two such
    modules with one name stop the whole run at collection (it happened: unit/ and privileged/)."""
    seen: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        if not (path.parent / "__init__.py").exists():
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, clashes
