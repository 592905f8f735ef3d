"""The oldest typer, sh and filelock that pyproject.toml admits, really installed and tested.

pip gives a fresh install the newest releases, which the rest of the suite runs on. A server
that already has older ones keeps them (Debian 11's Python 3.9 cannot have typer past 0.23.1,
nor click past 8.1.8), so every floor in pyproject.toml is a claim; this test installs exactly
the floors in a venv of their own and runs the tests that need no kernel routes (the unit
layer, the file format, the store, the property tests and the command line) there: on the
oldest Python the project admits when this machine has it, and on the Python running the
suite. The venvs are kept under ~/.cache/l2tproute-floor/ (keyed by Python and floors); the
checkout is installed into them anew on each run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

# The lint check is about this code, not its dependencies: ruff is not installed at a floor.
TESTS = ["tests/unit", "--ignore=tests/unit/test_lint.py", "tests/netns/test_store.py",
         "tests/netns/test_properties.py", "tests/netns/test_help.py", "tests/netns/test_cli.py"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "l2tproute-floor"
OLDEST_PYTHON = "3.9"


def floors() -> dict[str, str]:
    """Every runtime dependency of pyproject.toml and its `>=` floor."""
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"(?ms)^dependencies = \[(.*?)^\]", text).group(1)
    specs = re.findall(r'"([^"]+)"', block)
    found = {}
    for spec in specs:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)(?:,<[0-9.]+)?", spec)
        assert match, f"{spec}: every dependency needs a >= floor for this test to install"
        found[match.group(1)] = match.group(2)
    return found


def test_pyproject_names_a_floor_for_each_runtime_dependency():
    assert set(floors()) == {"typer", "sh", "filelock"}
    assert f'requires-python = ">={OLDEST_PYTHON}"' in (REPO / "pyproject.toml").read_text()


def oldest_python() -> str | None:
    wanted = f"python{OLDEST_PYTHON}"
    candidates = [shutil.which(wanted), f"/usr/bin/{wanted}"]
    candidates += sorted(glob.glob(str(Path.home() / f".pyenv/versions/{OLDEST_PYTHON}.*/bin/{wanted}")))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and subprocess.run(
                [candidate, "-c", "import venv, ensurepip"], capture_output=True).returncode == 0:
            return candidate
    return None


def interpreters() -> list:
    oldest = oldest_python()
    # The floors on the oldest Python the package admits where there is one (the case most
    # likely to break), else on this Python; the newest releases are the rest of the suite's.
    return [pytest.param(oldest or sys.executable, id="oldest-python" if oldest else "this-python")]


def floor_venv(python: str, pins: dict[str, str]) -> Path:
    version = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    key = hashlib.sha256(json.dumps([version, pins], sort_keys=True).encode()).hexdigest()[:12]
    venv = CACHE / f"py{version}-{key}"
    if not (venv / "bin/python").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
        requirements = [f"{name}=={floor}" for name, floor in pins.items()] + ["pytest>=7", "hypothesis>=6"]
        pip(venv, "install", *requirements)
    pip(venv, "install", "--no-deps", "--force-reinstall", "-e", str(REPO))
    return venv


def pip(venv: Path, *args: str) -> None:
    result = subprocess.run([str(venv / "bin/python"), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def release(version: str) -> tuple[int, ...]:
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@pytest.mark.parametrize("python", interpreters())
def test_the_oldest_dependencies_pyproject_admits_pass_the_tests_without_kernel_routes(python):
    pins = floors()
    venv = floor_venv(python, pins)
    shown = subprocess.run([str(venv / "bin/python"), "-c", "import importlib.metadata as m, sys; "
                            "print(*(m.version(n) for n in sys.argv[1:]))", *pins],
                           capture_output=True, text=True, check=True)
    # The floors, not something newer (0.18 is 0.18.0).
    assert [release(v) for v in shown.stdout.split()] == [release(v) for v in pins.values()], shown.stdout
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_", "PYTHON", "L2TP_")) and key != "VIRTUAL_ENV"}
    result = subprocess.run([str(venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", summary) and "failed" not in summary and "error" not in summary, summary
