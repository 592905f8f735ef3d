"""The oldest typer, sh and filelock that pyproject.toml admits, really installed and tested on Python 3.8.

pip gives a fresh install the newest releases, which the rest of the suite runs on. A server
that already has older ones keeps them, and an old one can have nothing newer (Ubuntu 18.04's
python3.8 is 3.8.0, on which pip refuses sh 2, which declares Requires-Python >=3.8.1), so every
floor in pyproject.toml is a claim. pyproject.toml allows two major versions of sh, chosen by an
environment marker on the interpreter's full version; this test installs exactly the floors of
each (sh 1.14 as on 3.8.0, sh 2.0 as on 3.8.1 and later) in a venv of their own on Python 3.8 and
runs there the tests that need no routes of this machine: the unit layer, the file format, the
store, the property tests, the command line, and the kernel tests in scratch namespaces (the one
layer that runs `ip` through sh); with sh 2 only the tests that run `ip` through sh, since that
is all the two runs differ in. It also resolves the whole dependency tree for 3.8.0 itself
(pip with --python-version 3.8.0: Requires-Python of every release it picks), floors and newest.

Python 3.8 comes from the distribution (python3.8 with its venv module, as on Ubuntu 18.04) or
pyenv (~/.pyenv/versions/3.8.*); without one the test fails and says so. The venvs are kept
under ~/.cache/l2tproute-floor/ (keyed by Python and floors); the checkout is installed into
them anew on each run.
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
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO
from packaging.requirements import Requirement

# The lint check is about this code, not its dependencies: ruff and vermin are not installed at a floor.
TESTS = ["tests/unit", "--ignore=tests/unit/test_lint.py", "tests/netns/test_store.py",
         "tests/netns/test_properties.py", "tests/netns/test_help.py", "tests/netns/test_cli.py",
         "tests/netns/test_kernel.py"]
#: The tests that run `ip` through sh, the one dependency the two runs below differ in: the
#: second run repeats only these (same Python, typer and filelock; 60-70 s less of the suite).
SH_TESTS = ["tests/netns/test_kernel.py", "tests/netns/test_cli.py"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "l2tproute-floor"
OLDEST_PYTHON = "3.8"
#: Ubuntu 18.04's python3.8 package; the oldest interpreter the dependencies must install on.
OLDEST_RELEASE = "3.8.0"


@dataclass(frozen=True)
class Floor:
    name: str
    floor: str
    requirement: Requirement


def requirements() -> list[Requirement]:
    """The runtime dependencies of pyproject.toml, as written (markers included)."""
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"(?ms)^dependencies = \[(.*?)^\]", text).group(1)
    return [Requirement(spec) for spec in re.findall(r'^\s*"([^"]+)",?\s*$', block, re.M)]


def floors(python_full_version: str) -> list[Floor]:
    """Each dependency that applies on that Python and its `>=` floor."""
    environment = {"python_full_version": python_full_version,
                   "python_version": ".".join(python_full_version.split(".")[:2])}
    found = []
    for requirement in requirements():
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert len(lower) == 1, f"{requirement}: every dependency needs one >= floor for this test to install"
        found.append(Floor(requirement.name, lower[0], requirement))
    return found


def pins(chosen: list[Floor]) -> dict[str, str]:
    return {floor.name: floor.floor for floor in chosen}


def test_pyproject_names_a_floor_for_each_runtime_dependency_on_every_python():
    assert f'requires-python = ">={OLDEST_PYTHON}"' in (REPO / "pyproject.toml").read_text()
    for version in (OLDEST_RELEASE, "3.8.1", "3.8.18", "3.11.2", "3.13.5"):
        assert sorted(pins(floors(version))) == ["filelock", "sh", "typer"], version


def test_sh_1_where_sh_2_cannot_install_and_sh_2_everywhere_else():
    # sh 2.0 declares Requires-Python >=3.8.1: on 3.8.0 the marker must pick the 1.x line.
    assert pins(floors(OLDEST_RELEASE))["sh"] == "1.14"
    assert not [f for f in floors(OLDEST_RELEASE) if f.name == "sh"][0].requirement.specifier.contains("2.0")
    for version in ("3.8.1", "3.9.2", "3.13.5"):
        assert pins(floors(version))["sh"] == "2.0", version


def test_every_dependency_release_pip_picks_for_python_3_8_0_declares_it_supported(tmp_path):
    # pip download for another interpreter checks Requires-Python of each release in the tree
    # (typer's click, rich, typing-extensions...): first the floors, then the newest it admits.
    floor_pins = [f"{floor.name}=={floor.floor}" for floor in floors(OLDEST_RELEASE)]
    ranges = [f"{floor.name}{floor.requirement.specifier}" for floor in floors(OLDEST_RELEASE)]
    for wanted in (floor_pins, ranges):
        target = tmp_path / str(len(list(tmp_path.iterdir())))
        done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "-q",
                               "-d", str(target), "--only-binary=:all:", "--python-version", OLDEST_RELEASE,
                               *wanted], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        got = sorted(path.name for path in target.iterdir())
        assert any(name.startswith("sh-1.") for name in got), got


def oldest_python() -> str:
    wanted = f"python{OLDEST_PYTHON}"
    candidates = [shutil.which(wanted), f"/usr/bin/{wanted}"]
    candidates += sorted(glob.glob(str(Path.home() / f".pyenv/versions/{OLDEST_PYTHON}.*/bin/{wanted}")))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and subprocess.run(
                [candidate, "-c", "import venv, ensurepip"], capture_output=True).returncode == 0:
            return candidate
    pytest.fail(f"no Python {OLDEST_PYTHON} with venv and ensurepip on this machine (looked for {wanted} on PATH, "
                f"/usr/bin and ~/.pyenv/versions/{OLDEST_PYTHON}.*); install one: apt-get install {wanted}-venv "
                f"where the distribution has it, else pyenv install {OLDEST_PYTHON}")


def floor_venv(python: str, wanted: dict[str, str]) -> Path:
    version = full_version(python)
    key = hashlib.sha256(json.dumps([version, wanted], sort_keys=True).encode()).hexdigest()[:12]
    venv = CACHE / f"py{version}-{key}"
    if not (venv / "bin/python").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
        requirements = [f"{name}=={floor}" for name, floor in wanted.items()] + ["pytest>=7", "hypothesis>=6"]
        pip(venv, "install", *requirements)
    pip(venv, "install", "--no-deps", "--force-reinstall", "-e", str(REPO))
    return venv


def full_version(python: str) -> str:
    return subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def pip(venv: Path, *args: str) -> None:
    result = subprocess.run([str(venv / "bin/python"), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def release(version: str) -> tuple[int, ...]:
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


# What the markers pick on 3.8.0 (Ubuntu 18.04: sh 1) and on any later 3.8 (sh 2): each major
# version of sh the package allows, with the floors of the rest, on the oldest Python it admits.
@pytest.mark.parametrize(("marker_python", "tests"), [(OLDEST_RELEASE, TESTS), ("3.8.1", SH_TESTS)],
                         ids=["py3.8-sh1", "py3.8-sh2"])
def test_the_oldest_dependencies_pyproject_admits_pass_the_tests_without_this_machines_routes(marker_python, tests):
    python = oldest_python()
    assert full_version(python).startswith(OLDEST_PYTHON + "."), full_version(python)
    wanted = pins(floors(marker_python))
    venv = floor_venv(python, wanted)
    shown = subprocess.run([str(venv / "bin/python"), "-c", "import importlib.metadata as m, sys; "
                            "print(*(m.version(n) for n in sys.argv[1:]))", *wanted],
                           capture_output=True, text=True, check=True)
    # The floors, not something newer (0.18 is 0.18.0).
    assert [release(v) for v in shown.stdout.split()] == [release(v) for v in wanted.values()], shown.stdout
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_", "PYTHON", "L2TP_")) and key != "VIRTUAL_ENV"}
    # The quick tier's selection of those files: the built older `ip` releases are the suite's own
    # business (tests/netns/test_iproute2_versions.py), not the oldest Python's.
    result = subprocess.run([str(venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                             *tests],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", summary) and "failed" not in summary and "error" not in summary, summary


#: The installer's functions the test below runs, taken from the script itself.
_INSTALLER_PARTS = ("say", "die", "changed", "run_quiet", "pip_env", "venv_pip_version", "venv_pip_builds_pyproject",
                    "ensure_pip_builds_pyproject")


def installer_functions() -> str:
    text = (REPO / "install-l2tp-per-user-routing.sh").read_text()
    parts = [re.search(r"(?m)^PIP_FOR_PYPROJECT=.*$", text).group(0)]
    for name in _INSTALLER_PARTS:
        # A one-line function, or one up to the first line that is only `}`.
        match = re.search(rf"(?ms)^{name}\(\) \{{(?: .*?\}}$|$.*?^\}}$)", text)
        assert match, f"install-l2tp-per-user-routing.sh has no function {name}"
        parts.append(match.group(0))
    return "\n".join(parts)


def test_the_installer_upgrades_a_venv_pip_too_old_to_build_the_package(tmp_path):
    # Ubuntu 18.04's python3.8 -m venv brings the distribution's pip 9.0.1, which cannot build a
    # package that has only pyproject.toml: the installer upgrades it before installing.
    venv = tmp_path / "venv"
    subprocess.run([oldest_python(), "-m", "venv", str(venv)], check=True, capture_output=True)
    pip(venv, "install", "pip==9.0.1")
    source = tmp_path / "src"
    for tree in ("l2tproute", "bin", "lib", "contrib"):  # the package and what it ships (l2tproute/files)
        shutil.copytree(REPO / tree, source / tree, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    install = [str(venv / "bin/python"), "-I", "-m", "pip", "install", "-q", "--no-deps", str(source)]
    before = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert before.returncode != 0 and "setup.py" in before.stdout + before.stderr, before
    # PIP_SOURCES empty: pip's own configuration, as for an install from a checkout.
    script = installer_functions() + '\nPROG=installer WORK=$1 VENV=$2 VENV_PY=$2/bin/python CHANGES=0' \
        ' PIP_SOURCES=()\n' \
        'ensure_pip_builds_pyproject\nensure_pip_builds_pyproject\necho "changes $CHANGES"\n'
    # pip 9's default index is pypi.python.org, which this machine cannot resolve (a server reaches it,
    # redirected to pypi.org), and its HTML parser fails on this machine's local index pages: PyPI itself.
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "https://pypi.org/simple"}
    done = subprocess.run(["bash", "-c", script, "bash", str(tmp_path), str(venv)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done
    # Upgraded once (to a pip that supports Python 3.8), and left alone the second time.
    assert re.fullmatch(r"upgraded pip in \S+ to (\d+)\.\S+ \(from the package index\)\nchanges 1\n", done.stdout), done
    assert int(re.search(r" to (\d+)\.", done.stdout).group(1)) >= 19
    after = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert after.returncode == 0, after
