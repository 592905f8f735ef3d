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


# -- layers ---------------------------------------------------------------------------

#: Each layer and the layers below it that it may import (docs/design.md draws them).
LAYERS = {
    "core": {"core"},
    "system": {"core", "system"},
    "ops": {"core", "system", "ops"},
    "transports": {"core", "system", "ops", "transports"},
    "fronts": {"core", "system", "ops", "transports", "fronts"},
}
#: A module sits above every module it imports; the deepest chain today (text, errors, model,
#: routefile, store, context, applying, render, invocation, cli, entry, __main__) is 12 long.
MAX_LEVELS = 12


def package_imports() -> dict[str, set[str]]:
    """Each module of the package (dotted, relative to l2tproute) and the package modules it imports,
    at any depth of the file (a lazy import inside a function is a dependency too)."""
    def name(path: Path) -> str:
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name(path): path for path in PACKAGE.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for module, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("l2tproute"):
                base = node.module[len("l2tproute"):].lstrip(".")
                targets = [f"{base}.{alias.name}".lstrip(".") for alias in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [alias.name[len("l2tproute"):].lstrip(".") for alias in node.names
                           if alias.name.startswith("l2tproute")]
            deps |= {target for target in targets if target in modules and target not in ("", module)}
        found[module] = deps
    return found


def layer(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in LAYERS else None


def wrong_way(imports: dict[str, set[str]]) -> set[str]:
    return {f"{module} -> {dep}" for module, deps in imports.items() for dep in deps
            if layer(module) and layer(dep) and layer(dep) not in LAYERS[layer(module)]}


def test_every_module_imports_only_its_own_layer_and_those_below():
    assert wrong_way(package_imports()) == set()


def test_the_operations_name_no_transport_and_the_imports_have_no_cycle_and_few_levels():
    imports = package_imports()
    assert {m for m in imports if layer(m) == "ops" and any(layer(d) == "transports" for d in imports[m])} == set()
    levels: dict[str, int] = {}

    def level(module: str, path: tuple = ()) -> int:
        assert module not in path, f"import cycle: {' -> '.join(path + (module,))}"
        if module not in levels:
            levels[module] = 1 + max((level(dep, path + (module,)) for dep in imports[module]), default=0)
        return levels[module]

    deepest = max(imports, key=level)
    assert level(deepest) <= MAX_LEVELS, deepest


def test_the_layer_check_sees_a_wrong_way_import():
    imports = {"core.model": {"core.text", "ops.context"}, "transports.openvpn.sync": {"fronts.render", "ops.context"},
               "fronts.cli": {"ops.adding", "transports.l2tp.events"}}
    assert wrong_way(imports) == {"core.model -> ops.context", "transports.openvpn.sync -> fronts.render"}
    assert "ops.applying" in package_imports()["fronts.link_events"]  # the reader sees lazy and eager imports
