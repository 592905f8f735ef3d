"""The code stays lint-clean and runs on Python 3.8: ruff, configured in pyproject.toml (target py38), over
the library, bench and tests; vermin, which knows in which Python each construct and library name arrived,
over the same code and bin's Python programs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

#: Ubuntu 18.04's python3.8 (3.8.0) is the oldest interpreter the package admits (pyproject.toml).
OLDEST = "3.8"


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "l2tproute", "bench", "tests", "bin"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def python_programs() -> list[str]:
    """bin's programs that Python runs (their names have no .py, so they are named one by one)."""
    found = [str(path.relative_to(REPO)) for path in sorted((REPO / "bin").iterdir())
             if path.read_bytes().startswith(b"#!") and b"python" in path.read_bytes().split(b"\n", 1)[0]]
    assert "bin/l2tp-routes-worker" in found and "bin/l2tp-routectl.py" in found, found
    return found


def vermin(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    # vermin has no __main__ module: its console script's function, in this interpreter.
    run = "import sys; from vermin import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", run, f"-t={OLDEST}-", "--no-tips", "--violations",
                           "--no-parse-comments", *args], cwd=cwd, capture_output=True, text=True)


def test_vermin_finds_nothing_newer_than_python_3_8():
    # Annotations stay unevaluated strings (`from __future__ import annotations`) everywhere but in the
    # command signatures typer reads, checked with their annotations below.
    done = vermin("l2tproute", "bench", "tests", *python_programs())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Minimum required versions: 3.8" in done.stdout or "Minimum required versions: 3.7" in done.stdout, \
        done.stdout


def test_the_signatures_typer_evaluates_are_python_3_8():
    done = vermin("--eval-annotations", "l2tproute/fronts/cli.py")
    assert done.returncode == 0, done.stdout + done.stderr


def test_vermin_refuses_what_came_with_python_3_9(tmp_path):
    # The check above can fail: the same call on a 3.9 method, and on a 3.9 annotation typer would evaluate.
    (tmp_path / "newer.py").write_text("import os\n\ndef code(status):\n    return os.waitstatus_to_exitcode(status)\n")
    (tmp_path / "signature.py").write_text("def command(names: list[str]) -> None:\n    pass\n")
    method = vermin(str(tmp_path / "newer.py"))
    assert method.returncode != 0 and "waitstatus_to_exitcode" in method.stdout and "3.9" in method.stdout, method
    signature = vermin("--eval-annotations", str(tmp_path / "signature.py"))
    assert signature.returncode != 0 and "list[..]" in signature.stdout and "3.9" in signature.stdout, signature
