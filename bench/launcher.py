"""Which `l2tp-routectl` and ip-up hook the benchmarks run, started as an install starts them.

This checkout, wrapped the way install-l2tp-per-user-routing.sh wraps it: a
virtual environment, scripts whose first line is `#!VENV/bin/python3 -IS` (isolated
start without `site`) and whose next lines put the package directories on sys.path
(no .pth file runs), and byte-compiled modules; never a pyenv shim or an editable
install's import hook, which cost more at start than the whole `list` does.

The interpreter and libraries are the installed venv's (/opt/l2tproute: the
distribution's python3, which the installer uses) when it is there and can import
them, with this checkout first on sys.path: that is what an admin runs. A
self-built interpreter (pyenv's, without PGO) spent a third more time on the same
steady-state apply here. Without an install, a venv of the running interpreter.
With --installed, the installed /usr/local/sbin/l2tp-routectl, ip-up hook and
worker instead, when they are there. The sh fronts are this checkout's bin/ with their
installed paths pointed at this run's programs.
"""

from __future__ import annotations

import compileall
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INSTALLED = Path("/usr/local/sbin/l2tp-routectl")
INSTALLED_HOOK = Path("/etc/ppp/ip-up.d/l2tp-routes")
INSTALLED_DOWN_HOOK = Path("/etc/ppp/ip-down.d/l2tp-routes")
INSTALLED_VENV = Path("/opt/l2tproute")


@dataclass(frozen=True)
class Tool:
    routectl: str  # the sh front, as /usr/local/sbin/l2tp-routectl
    ip_up: str  # the pppd hooks, as /etc/ppp/ip-up.d/l2tp-routes and ip-down.d
    ip_down: str
    worker: str  # what the hook starts (its path tells its processes apart)
    python: str  # the interpreter the Python programs start, for the bare-start reference
    what: str


INSTALLED_WORKER = INSTALLED_VENV / "libexec" / "l2tp-routes-worker"


def _interpreter(script: Path) -> str:
    first = script.read_text(errors="replace").splitlines()[0]
    return first[2:].split()[0] if first.startswith("#!") else sys.executable


def prepare(workdir: str, prefer_installed: bool = False) -> Tool:
    if prefer_installed and INSTALLED.is_file() and INSTALLED_HOOK.is_file() and INSTALLED_WORKER.is_file():
        return Tool(str(INSTALLED), str(INSTALLED_HOOK), str(INSTALLED_DOWN_HOOK), str(INSTALLED_WORKER),
                    _interpreter(INSTALLED_WORKER),
                    f"the installed {INSTALLED} and {INSTALLED_HOOK}")
    python, packages, whose = _installed_interpreter()
    if python is None:
        venv = Path(workdir) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python, packages, whose = venv / "bin" / "python3", site.getsitepackages(), "a venv of " + sys.executable
    # As the installer's scripts: the package directories as plain sys.path entries.
    paths = [str(REPO), *packages]
    compileall.compile_dir(str(REPO / "l2tproute"), quiet=1)
    work = Path(workdir)
    programs = {}
    for name in ("l2tp-routectl.py", "l2tp-routes-worker"):
        body = (REPO / "bin" / name).read_text().split("\n", 1)[1]
        programs[name] = _write(work / name, f"#!{python} -IS\nimport sys\nsys.path.extend({paths!r})\n{body}")
    lib = str(REPO / "lib" / "l2tproute.sh")
    front = _from_bin("l2tp-routectl", work, {
        "CLI=/opt/l2tproute/libexec/l2tp-routectl": f"CLI={programs['l2tp-routectl.py']}",
        "LIB=/opt/l2tproute/libexec/l2tproute.sh": f"LIB={lib}"})
    event = _from_bin("l2tp-routes-event", work, {
        "WORKER=/opt/l2tproute/libexec/l2tp-routes-worker": f"WORKER={programs['l2tp-routes-worker']}",
        "LIB=/opt/l2tproute/libexec/l2tproute.sh": f"LIB={lib}"})
    up = _from_bin("l2tp-routes-ip-up", work, {"/opt/l2tproute/libexec/l2tp-routes-event": event})
    down = _from_bin("l2tp-routes-ip-down", work, {"/opt/l2tproute/libexec/l2tp-routes-event": event})
    return Tool(front, up, down, programs["l2tp-routes-worker"], str(python),
                f"the checkout {REPO}, started as installed (sh fronts, `#!{python} -IS`, byte-compiled; "
                f"interpreter and libraries: {whose})")


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def _from_bin(name: str, work: Path, replacements: dict) -> str:
    """An sh front of bin/ with its installed paths pointed at this run's programs."""
    text = (REPO / "bin" / name).read_text()
    for old, new in replacements.items():
        if old not in text:
            raise RuntimeError(f"bin/{name} no longer has {old}")
        text = text.replace(old, new)
    return _write(work / name, text)


def _installed_interpreter():
    """(python, [site-packages], description) of the installed venv when it can run this checkout, else Nones."""
    python = INSTALLED_VENV / "bin" / "python3"
    packages = [str(p) for p in sorted(INSTALLED_VENV.glob("lib/python3*/site-packages"))]
    if not python.is_file() or not packages:
        return None, None, None
    probe = f"import sys; sys.path[:0] = {[str(REPO), *packages]!r}; import l2tproute.fronts.cli, sh, filelock"
    if subprocess.run([str(python), "-IS", "-c", probe], capture_output=True).returncode != 0:
        return None, None, None
    return python, packages, f"the installed venv {INSTALLED_VENV} ({Path(python).resolve()})"
