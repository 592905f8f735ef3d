"""Wheel directories for the installer's offline mode (`--wheels DIR`), made the way the README says.

Made on this machine, which has access to a package index; the installs that use them run
where there is none (a new network namespace, or a container with a private network).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

#: What `pip wheel CHECKOUT` builds the package from; the installer copies the same files.
#: bin/, lib/ and contrib/ ship inside the package (pyproject.toml), for the released installer.
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "l2tproute", "bin", "lib", "contrib")


def copy_package_source(checkout: Path, target: Path) -> Path:
    """The package's own files in a scratch directory: setuptools writes build/ and *.egg-info next to them."""
    target.mkdir(parents=True, exist_ok=True)
    for name in PACKAGE_SOURCES:
        source = checkout / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    return target


def pip(*args: str, timeout: float = 600) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


def build_wheels(checkout: Path, dest: Path, python_version: str | None = None) -> Path:
    """The package's wheel and one wheel for every dependency, for `python_version` (X.Y).

    For the Python running this (or no version given): `pip wheel`, as the README says.
    For another: the package's own wheel (pure Python), then `pip download --only-binary=:all:`
    of its dependencies for that Python on manylinux2014 x86_64, so a target whose Python
    differs from this machine's gets the binary wheels it can use (markers are evaluated
    for the target version).
    """
    source = copy_package_source(checkout, dest.parent / f"{dest.name}-source")
    dest.mkdir(parents=True, exist_ok=True)
    if python_version in (None, f"{sys.version_info[0]}.{sys.version_info[1]}"):
        pip("wheel", "-q", str(source), "-w", str(dest))
    else:
        pip("wheel", "-q", "--no-deps", str(source), "-w", str(dest))
        version = re.search(r'^__version__ = "(.+)"$', (source / "l2tproute/__init__.py").read_text(), re.M)[1]
        pip("download", "-q", "--only-binary=:all:", "--python-version", python_version,
            "--platform", "manylinux2014_x86_64", "--find-links", str(dest), "-d", str(dest), f"l2tproute=={version}")
    shutil.rmtree(source)
    return dest
