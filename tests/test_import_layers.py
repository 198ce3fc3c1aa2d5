"""The API layers point one way: the modules `api.py` builds on never import `api.py` back.

`api` imports `results`, `jacobian`, `explain`, `higher_order` and the shared
`arguments` / `annotations` helpers at module level; an import of `api` from one of
them (even inside a function) would close a circle again.
"""

import ast
from pathlib import Path

import enzpy

BELOW_THE_API = ["annotations", "arguments", "aliasing", "results", "jacobian", "explain", "higher_order",
                 "selection", "messages", "disk_cache", "jit"]


def imported_enzpy_modules(path: Path) -> set[str]:
    """Every enzpy module `path` imports, anywhere in the file, as a dotted name under enzpy."""
    package = Path(enzpy.__file__).parent
    here = path.relative_to(package).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[:len(here) - node.level + 1])
            target = base + (node.module.split(".") if node.module else [])
            found.add(".".join(target))
            found |= {".".join(target + [alias.name]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("enzpy"):
            found.add(node.module.removeprefix("enzpy").lstrip("."))
    return found


def test_modules_below_the_api_do_not_import_it():
    package = Path(enzpy.__file__).parent
    offenders = {name: sorted(m for m in imported_enzpy_modules(package / f"{name}.py") if m == "api")
                 for name in BELOW_THE_API}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_check_sees_a_function_level_import(tmp_path, monkeypatch):
    package = Path(enzpy.__file__).parent
    source = "def later():\n    from .api import Differentiable\n"
    probe = package / "_layer_probe_for_test.py"
    probe.write_text(source)
    try:
        assert "api" in imported_enzpy_modules(probe)
    finally:
        probe.unlink()
