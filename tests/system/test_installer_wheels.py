"""install-l2tp-per-user-routing.sh --wheels DIR: an install without network, into staging roots.

Each install runs in a new network namespace (`unshare -n`: no interface but a down lo),
so pip cannot reach any index.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO
from test_installer import INSTALLER, PROG, SITE_PACKAGES, copy_checkout, snapshot

PYTHON = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                        capture_output=True, text=True, check=True).stdout.strip()


def offline_installer(*args: str, script: Path = INSTALLER, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", **(env or {})}
    return subprocess.run(["unshare", "-n", "bash", str(script), *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd="/")


def errors(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": error: " in line]


@pytest.fixture(scope="module")
def wheels(wheel_dirs) -> Path:
    """What the README says to make on a machine with access, for the Python the venv is made from."""
    return wheel_dirs(PYTHON)


@pytest.fixture(scope="module")
def staged(tmp_path_factory, wheels) -> Path:
    root = tmp_path_factory.mktemp("offline") / "root"
    result = offline_installer("--root", str(root), "--wheels", str(wheels))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert (f"installing l2tproute 1.0.0 into {root}/opt/l2tproute from the wheels in {wheels} (pip, no network) ..."
            in result.stdout.splitlines())
    assert re.fullmatch(r"Done: \d+ changes. Route files were not touched.", result.stdout.splitlines()[-1])
    return root


def test_the_offline_install_has_the_package_from_this_checkout_and_every_dependency(staged):
    site = staged / SITE_PACKAGES.lstrip("/")
    for source in (REPO / "l2tproute").glob("*.py"):
        assert (site / "l2tproute" / source.name).read_bytes() == source.read_bytes(), source.name
    imports = "import l2tproute.fronts.cli, l2tproute.fronts.entry, typer, sh, filelock; print(l2tproute.__version__)"
    result = subprocess.run([str(staged / "opt/l2tproute/bin/python3"), "-I", "-c", imports], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "1.0.0\n", "")


def test_a_second_offline_run_changes_nothing(staged, wheels):
    before = snapshot(staged)
    result = offline_installer("--root", str(staged), "--wheels", str(wheels))
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    assert "Nothing to do: l2tproute is already installed and up to date; nothing was changed." in result.stdout
    assert snapshot(staged) == before


def test_a_missing_wheel_is_one_error_and_nothing_is_left(wheels, tmp_path):
    partial = tmp_path / "wheels"
    shutil.copytree(wheels, partial)
    (removed,) = partial.glob("filelock-*.whl")
    removed.unlink()
    root = tmp_path / "root"
    # pip's own configuration and variables point at the complete directory: neither may count.
    (tmp_path / "pip.conf").write_text(f"[global]\nfind-links = {wheels}\n")
    result = offline_installer("--root", str(root), "--wheels", str(partial),
                               env={"PIP_CONFIG_FILE": str(tmp_path / "pip.conf"), "PIP_FIND_LINKS": str(wheels)})
    assert result.returncode == 1
    assert errors(result) == [f"{PROG}: error: {partial} has no wheel for filelock>=3.12 (for Python {PYTHON}); make "
                              f"the directory on a machine with network access with: pip wheel {REPO} -w DIR"]
    assert "Rolled back: the system is as it was before this run." in result.stdout
    assert not root.exists()


def test_a_wheel_built_from_other_sources_is_refused_and_the_upgrade_rolled_back(staged, wheels, tmp_path):
    """A changed checkout with the old wheel directory: the installed venv stays as it was."""
    source = tmp_path / "checkout"
    source.mkdir()
    script = copy_checkout(source)
    with (source / "l2tproute/core/constants.py").open("a") as changed:
        changed.write("# changed after the wheels were built\n")
    root = tmp_path / "root"
    shutil.copytree(staged, root, symlinks=True)
    before = snapshot(root)
    result = offline_installer("--root", str(root), "--wheels", str(wheels), script=script)
    assert result.returncode == 1
    assert errors(result) == [f"{PROG}: error: the l2tproute wheel in {wheels} was not built from this checkout "
                              f"(l2tproute/core/constants.py differs); rebuild it: pip wheel {source} -w "
                              f"{wheels}"]
    assert "Rolled back: the system is as it was before this run." in result.stdout
    assert snapshot(root) == before


@pytest.mark.parametrize("args, message", [
    (["--wheels"], "--wheels needs a directory"),
    (["--wheels", ""], "--wheels needs a directory"),
    (["--wheels", "/nonexistent/wheels"], f"--wheels '/nonexistent/wheels' is not a directory; make one with: "
                                          f"pip wheel {REPO} -w DIR"),
    (["--uninstall", "--wheels", "/tmp"], "--wheels is for installing; --uninstall needs no wheels"),
])
def test_a_wrong_wheels_argument_is_one_line_and_exit_2(args, message, tmp_path):
    root = tmp_path / "root"  # a staging root, so a parsing regression could never touch this system
    result = offline_installer("--root", str(root), *args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"{PROG}: error: {message}") and result.stderr.count("\n") == 1, result.stderr
    assert not root.exists()
