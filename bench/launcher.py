"""Which `l2tp-routectl` and ip-up hook the benchmarks run, started as an install starts them.

This checkout, wrapped the way install-l2tp-per-user-routing.sh wraps it: a
virtual environment, scripts whose first line is `#!VENV/bin/python3 -IS` (isolated
start without `site`) and whose next lines put the package directories on sys.path
(no .pth file runs), and byte-compiled modules; never a pyenv shim or an editable
install's import hook, which cost more at start than the whole `list` does. With --installed, the
installed /usr/local/sbin/l2tp-routectl and ip-up hook instead, when they are there.
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


@dataclass(frozen=True)
class Tool:
    routectl: str
    ip_up: str
    python: str  # the interpreter both start, for the bare-start reference
    what: str


def _interpreter(script: Path) -> str:
    first = script.read_text(errors="replace").splitlines()[0]
    return first[2:].split()[0] if first.startswith("#!") else sys.executable


def prepare(workdir: str, prefer_installed: bool = False) -> Tool:
    if prefer_installed and INSTALLED.is_file() and INSTALLED_HOOK.is_file():
        return Tool(str(INSTALLED), str(INSTALLED_HOOK), _interpreter(INSTALLED),
                    f"the installed {INSTALLED} and {INSTALLED_HOOK}")
    venv = Path(workdir) / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # Where the installer appends the venv's site-packages: the checkout, then this
    # interpreter's own packages (typer, sh, filelock) as plain entries.
    paths = [str(REPO), *site.getsitepackages()]
    compileall.compile_dir(str(REPO / "l2tproute"), quiet=1)
    python = venv / "bin" / "python3"
    scripts = {}
    for name in ("l2tp-routectl", "l2tp-routes-ip-up"):
        body = (REPO / "bin" / name).read_text().split("\n", 1)[1]
        target = Path(workdir) / name
        target.write_text(f"#!{python} -IS\nimport sys\nsys.path.extend({paths!r})\n{body}")
        target.chmod(0o755)
        scripts[name] = str(target)
    return Tool(scripts["l2tp-routectl"], scripts["l2tp-routes-ip-up"], str(python),
                f"the checkout {REPO}, started as installed (`#!venv/bin/python3 -IS`, byte-compiled)")
