"""tests/unit needs no root and no writable checkout: it runs as nobody (uid 65534, no groups)
from a read-only copy of this checkout, with a venv nobody can run, and every test passes.

The venv is made without pip by an interpreter nobody may execute, and reaches the test
dependencies through a .pth line naming this interpreter's site-packages; PYTHONPATH puts the
copy first, so `l2tproute` and the tests are the copy's (checked below).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, require

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
LEFT_OUT = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "*.egg-info", ".ruff_cache", ".pytest_cache",
                                  ".hypothesis")


def runs_as_nobody(program: str) -> bool:
    # Through sh: setpriv's own exec may still reach a program under a root-only directory
    # (/root/.pyenv), the test's subprocesses (sys.executable) could not.
    return subprocess.run([*NOBODY, "sh", "-c", 'exec "$0" -c pass', program], capture_output=True,
                          timeout=60).returncode == 0


def interpreter() -> str:
    """This Python's own interpreter, or the system's of the same X.Y when nobody may not run it
    (pyenv under /root, say)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/python{version}"):
        if os.path.exists(candidate) and runs_as_nobody(candidate):
            return candidate
    require(False, f"a python{version} that uid 65534 may run (/usr/bin/python{version}, apt-get install python3)")
    return ""


def read_only(top: Path) -> None:
    for path in [top, *top.rglob("*")]:
        if not path.is_symlink():
            mode = path.stat().st_mode
            os.chmod(path, (mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
                            | (0o111 if stat.S_ISDIR(mode) else 0)) & ~0o222)


@pytest.fixture
def top():
    """A directory nobody can reach (pytest's own tmp_path is under a root-only directory)."""
    path = Path(tempfile.mkdtemp(prefix="l2t-unit-ro-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        for entry in [path, *path.rglob("*")]:
            if not entry.is_symlink():
                os.chmod(entry, entry.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(path)


def test_the_unit_layer_passes_as_nobody_from_a_read_only_copy(top):
    site = sysconfig.get_path("purelib")
    require(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    shutil.copytree(REPO, top / "checkout", ignore=LEFT_OUT, symlinks=True)
    venv = top / "venv"
    subprocess.run([interpreter(), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    [venv_site] = venv.glob("lib/python3*/site-packages")
    (venv_site / "test-dependencies.pth").write_text(site + "\n")
    read_only(top)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8",
           "PYTHONPATH": str(top / "checkout"), "PYTHONDONTWRITEBYTECODE": "1"}
    checkout = top / "checkout"
    probe = subprocess.run([*NOBODY, str(venv / "bin" / "python"), "-c",
                            "import os, l2tproute; print(os.path.realpath(l2tproute.__file__)); print(os.getuid())"],
                           capture_output=True, text=True, env=env, cwd=checkout, timeout=60)
    assert probe.stdout.split() == [str(checkout / "l2tproute" / "__init__.py"), "65534"], \
        f"{probe}: is {site} readable by uid 65534?"
    started = time.monotonic()
    done = subprocess.run([*NOBODY, str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=", "tests/unit"], capture_output=True, text=True, env=env, cwd=checkout,
                          timeout=600)
    took = time.monotonic() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # No skip, xfail or error (warnings: hypothesis falls back to memory in a read-only checkout).
    assert re.fullmatch(r"\d+ passed(, \d+ warnings?)? in [\d.]+s( \(.*\))?", summary), summary
    print(f"tests/unit as nobody from a read-only copy: {summary} ({took:.1f} s with the interpreter start)")
    assert not any(path.stat().st_mode & 0o222 for path in checkout.rglob("*") if not path.is_symlink())
