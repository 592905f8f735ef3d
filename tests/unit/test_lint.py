"""The code stays lint-clean and runs on Python 3.8: ruff, configured in pyproject.toml (target py38), over
the library, bench, tests and tools; vermin, which knows in which Python each construct and library name
arrived, over the same code and bin's Python programs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

#: Ubuntu 18.04's python3.8 (3.8.0) is the oldest interpreter the package admits (pyproject.toml).
OLDEST = "3.8"


def test_ruff_finds_nothing():
    # bin's Python programs by name: ruff takes a file without .py only when it is named.
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "l2tproute", "bench", "tests", "tools",
                           *python_programs()], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def python_programs() -> list[str]:
    """bin's programs that Python runs (their names have no .py, so they are named one by one)."""
    found = [str(path.relative_to(REPO)) for path in sorted((REPO / "bin").iterdir())
             if path.read_bytes().startswith(b"#!") and b"python" in path.read_bytes().split(b"\n", 1)[0]]
    assert {"bin/l2tp-routes-worker", "bin/l2tp-routectl.py"} <= set(found), found
    assert "bin/l2tp-routectl" not in found  # the sh front
    return found


def vermin(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    # vermin has no __main__ module: its console script's function, in this interpreter.
    run = "import sys; from vermin import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", run, f"-t={OLDEST}-", "--no-tips", "--violations",
                           "--no-parse-comments", *args], cwd=cwd, capture_output=True, text=True)


def test_vermin_finds_nothing_newer_than_python_3_8():
    # Annotations stay unevaluated strings (`from __future__ import annotations`) everywhere but in the
    # command signatures typer reads, checked with their annotations below.
    done = vermin("l2tproute", "bench", "tests", "tools", *python_programs())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Minimum required versions: 3.8" in done.stdout or "Minimum required versions: 3.7" in done.stdout, \
        done.stdout


def test_the_signatures_typer_evaluates_are_python_3_8():
    done = vermin("--eval-annotations", "l2tproute/fronts/cli.py")
    assert done.returncode == 0, done.stdout + done.stderr


#: Generic at run time only from Python 3.9 (PEP 585): subscripted outside an annotation, they raise TypeError on 3.8.
PEP585_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "type"}
PEP585_MODULES = {"collections", "collections.abc", "contextlib", "re", "os", "queue", "subprocess", "functools"}


def runtime_generics(source: str) -> list[str]:
    """Subscripts of builtin and standard-library classes evaluated at run time (type aliases, casts,
    base classes): vermin checks only annotations for these, and annotations here are never evaluated."""
    tree = ast.parse(source)
    annotations = set()
    for node in ast.walk(tree):
        found = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            found += [arg.annotation for arg in (arguments.posonlyargs + arguments.args + arguments.kwonlyargs
                                                 + [arguments.vararg, arguments.kwarg]) if arg is not None]
            found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        annotations.update(id(inner) for annotation in found if annotation is not None
                           for inner in ast.walk(annotation))
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and id(node) not in annotations and _pep585(node.value):
            hits.append(f"{node.lineno}: {ast.get_source_segment(source, node)}")
    return hits


def _pep585(value: ast.expr) -> bool:
    if isinstance(value, ast.Name):
        return value.id in PEP585_BUILTINS
    return (isinstance(value, ast.Attribute) and _dotted(value.value) in PEP585_MODULES
            and (value.attr[:1].isupper() or value.attr in ("deque", "defaultdict")))


def _dotted(node: ast.expr) -> str:
    # Not ast.unparse: it came with Python 3.9.
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def test_no_builtin_generic_is_subscripted_at_run_time():
    files = [path for top in ("l2tproute", "bench", "tests") for path in sorted((REPO / top).rglob("*.py"))]
    files += [REPO / name for name in python_programs()]
    found = [f"{path.relative_to(REPO)}:{hit}" for path in files for hit in runtime_generics(path.read_text())]
    assert not found, found


def test_the_run_time_generic_check_tells_an_alias_from_an_annotation():
    source = ("from __future__ import annotations\nimport collections.abc\nimport os\n"
              "Slot = tuple[str, int]\nPaths = collections.abc.Sequence[str]\nhome = os.environ['HOME']\n"
              "def f(x: list[int]) -> dict[str, int]:\n    y: set[int] = set()\n    return {}\n")
    assert runtime_generics(source) == ["4: tuple[str, int]", "5: collections.abc.Sequence[str]"]


def test_vermin_refuses_what_came_with_python_3_9(tmp_path):
    # The check above can fail: the same call on a 3.9 method, and on a 3.9 annotation typer would evaluate.
    (tmp_path / "newer.py").write_text("import os\n\ndef code(status):\n    return os.waitstatus_to_exitcode(status)\n")
    (tmp_path / "signature.py").write_text("def command(names: list[str]) -> None:\n    pass\n")
    method = vermin(str(tmp_path / "newer.py"))
    assert method.returncode != 0 and "waitstatus_to_exitcode" in method.stdout and "3.9" in method.stdout, method
    signature = vermin("--eval-annotations", str(tmp_path / "signature.py"))
    assert signature.returncode != 0 and "list[..]" in signature.stdout and "3.9" in signature.stdout, signature
