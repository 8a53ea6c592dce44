"""An import-linter contract type the built-in ones lack: an allow-list.

``allowed_imports``: every module of ``source_modules`` may import only the standard library, its
own package, and the modules in ``allowed_modules`` (with their descendants). Registered in
pyproject.toml's ``[tool.importlinter] contract_types``; lint-imports runs from the repository
root, so this module is importable as ``tests.import_contracts``.
"""

from __future__ import annotations

import sys

from importlinter import Contract, ContractCheck, fields, output


class AllowedImportsContract(Contract):
    type_name = "allowed_imports"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    allowed_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph, verbose: bool) -> ContractCheck:
        allowed = list(self.allowed_modules)  # type: ignore[arg-type]
        illegal: list[tuple[str, str, int | None]] = []
        for source in self.source_modules:  # type: ignore[attr-defined]
            package = source.name
            for module in sorted({package} | graph.find_descendants(package)):
                for imported in sorted(graph.find_modules_directly_imported_by(module)):
                    if imported.split(".")[0] in sys.stdlib_module_names:
                        continue
                    if any(imported == a or imported.startswith(a + ".") for a in allowed + [package]):
                        continue
                    details = graph.get_import_details(importer=module, imported=imported)
                    illegal.append((module, imported, details[0]["line_number"] if details else None))
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        allowed = ", ".join(self.allowed_modules)  # type: ignore[arg-type]
        for importer, imported, line in check.metadata["illegal"]:
            output.print_error(f"{importer} -> {imported} (l. {line}): not in the allow-list ({allowed}, "
                               "the standard library and the package itself)")
            output.new_line()
