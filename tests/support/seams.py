"""Checks one package's seam by importing it with the packages it must not use blocked.

    python tests/support/seams.py ROOT PACKAGE ALLOWED_PREFIX...

Run in a fresh interpreter (the tests start one per package), so that nothing imported before
hides a forbidden import. Every project module that is neither in PACKAGE nor under an allowed
prefix is set to None in `sys.modules`, so importing it raises ImportError whether the import
is at the top of a module, inside a function or through importlib. Each module of PACKAGE is
then imported, and every import statement found anywhere in its source (including the lazy
ones inside functions) and every `importlib.import_module("...")` with a literal name is
carried out. Prints one JSON line: the violations found, each with the module, the name it
imports and the error.
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
from pathlib import Path

PROJECT = ("agent", "drivers", "firmware_bridge", "ingest")


def module_names(root: Path) -> dict[str, Path]:
    names = {}
    for top in PROJECT:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names[".".join(parts)] = path
    return names


def imported_names(module: str, path: Path) -> set[str]:
    """Every module name an import statement or a literal import_module() call in the file
    names, relative imports resolved against `module`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def main(root: str, package: str, *allowed: str) -> int:
    root_path = Path(root).resolve()
    sys.path.insert(0, str(root_path))
    names = module_names(root_path)

    def permitted(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in (package, *allowed))

    # Packages on the way to an allowed module (agent for agent.contract) stay importable.
    keep = {".".join(n.split(".")[:i]) for n in names if permitted(n)
            for i in range(1, n.count(".") + 1)}
    for name in names:
        if not permitted(name) and name not in keep:
            sys.modules[name] = None  # importing it now raises ImportError
    violations = []
    for name, path in names.items():
        if not permitted(name) or not (name == package or name.startswith(package + ".")):
            continue
        if name.endswith("__main__"):
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            violations.append({"module": name, "imports": name, "error": str(exc)})
            continue
        for target in sorted(imported_names(name, path)):
            if target.split(".")[0] not in PROJECT or permitted(target):
                continue
            if target in names:  # `from x import y` also names x.y, a module or not
                try:
                    importlib.import_module(target)
                except ImportError as exc:
                    violations.append({"module": name, "imports": target, "error": str(exc)})
    print(json.dumps({"package": package, "violations": violations}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
