"""Module boundaries of the library: no module reaches into another module's private names.

A name with a leading underscore is its module's own. When two modules need it, it is
public and lives where its owner is (../shared/STYLE.md); this test holds every module
of l2tproute/ to that, by reading their syntax trees.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "l2tproute"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reaches(source: str) -> list[str]:
    """Every `from X import _y` and `module._y` of an imported module in `source`."""
    tree = ast.parse(source)
    modules = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}")
                else:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                modules.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name) \
                and node.value.id in modules:
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_name():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 30, modules  # the walk reaches every layer's folder
    offenders = {str(path.relative_to(PACKAGE)): private_reaches(path.read_text()) for path in modules}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_check_sees_both_ways_in():
    source = "from .engine import _holder\nfrom . import kernel\nx = kernel._network('a', 4)\n"
    assert private_reaches(source) == ["line 1: from .engine import _holder", "line 3: kernel._network"]
    assert private_reaches("from . import kernel\ny = kernel.parse_network\nclass A:\n    def f(self): self._x\n") == []
