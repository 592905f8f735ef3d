"""The POSIX sh fronts of bin/, run from this checkout as the installer installs them.

The installed fronts name their final paths (/opt/l2tproute/libexec/...); here those
lines point at this checkout's helpers, this interpreter's console script and a worker
launcher for this interpreter, so the fronts run this checkout's code.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, routectl_path
from support.polling import holds_for  # noqa: F401  (tests import it from here too)

from l2tproute.core import constants as C

HOOK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _install(source: Path, dest: Path, replacements: dict) -> Path:
    text = source.read_text()
    for old, new in replacements.items():
        assert old in text, f"{source} no longer has {old}"
        text = text.replace(old, new)
    dest.write_text(text)
    dest.chmod(0o755)
    return dest


class Fronts:
    def __init__(self, directory: Path, worker: str | None = None):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        lib = str(REPO / "lib" / "l2tproute.sh")
        launcher = directory / "l2tp-routes-worker"
        body = (REPO / "bin" / "l2tp-routes-worker").read_text().split("\n", 1)[1]
        launcher.write_text(f"#!{sys.executable} -I\n{body}")
        launcher.chmod(0o755)
        self.worker = worker or str(launcher)
        self.event_script = _install(REPO / "bin" / "l2tp-routes-event", directory / "l2tp-routes-event", {
            "WORKER=/opt/l2tproute/libexec/l2tp-routes-worker": f"WORKER={self.worker}",
            "LIB=/opt/l2tproute/libexec/l2tproute.sh": f"LIB={lib}",
        })
        self.hooks = {}
        for direction in ("up", "down"):
            self.hooks[direction] = _install(
                REPO / "bin" / f"l2tp-routes-ip-{direction}", directory / f"l2tp-routes-ip-{direction}",
                {"/opt/l2tproute/libexec/l2tp-routes-event": str(self.event_script)})
        self.routectl = _install(REPO / "bin" / "l2tp-routectl", directory / "l2tp-routectl", {
            "CLI=/opt/l2tproute/libexec/l2tp-routectl": f"CLI={routectl_path()}",
            "LIB=/opt/l2tproute/libexec/l2tproute.sh": f"LIB={lib}",
        })


def run_hook_script(fronts: Fronts, direction: str, args: list, *, ns=None, env: dict | None = None,
                    timeout: float = 60) -> subprocess.CompletedProcess:
    """A pppd hook call: the environment cleared but for the test's scratch state (store, run
    directory, chap-secrets: never the real ones) and `env`, inside namespace `ns`."""
    argv = [str(fronts.hooks[direction]), *args]
    if ns is not None:
        argv = ["ip", "netns", "exec", ns.name, *argv]
    scratch = {k: os.environ[k] for k in (C.STORE_DIR_ENV, C.RUN_DIR_ENV, C.CHAP_SECRETS_ENV) if k in os.environ}
    return subprocess.run(argv, capture_output=True, env={"PATH": HOOK_PATH, **scratch, **(env or {})},
                          timeout=timeout)


def spooled(run_dir: Path) -> list[str]:
    spool = run_dir / "spool"
    return sorted(p.name for p in spool.iterdir()) if spool.is_dir() else []


def wait_for_worker(run_dir: Path, limit: float = 120) -> None:
    """Until the spool is empty and no worker holds the lock (a bound, not a timing assertion)."""
    deadline = time.monotonic() + limit
    lock = run_dir / "worker.lock"
    while time.monotonic() < deadline:
        if not spooled(run_dir) and (not lock.exists() or lock_is_free(lock)):
            return
        time.sleep(0.05)
    raise AssertionError(f"the worker did not drain {run_dir} within {limit:g} s: {spooled(run_dir)[:5]}")


def wait_worker_running(run_dir: Path, limit: float = 60) -> None:
    """Until a worker holds the spool's worker lock (it started and has not finished)."""
    deadline = time.monotonic() + limit
    lock = run_dir / "worker.lock"
    while time.monotonic() < deadline:
        if lock.exists() and not lock_is_free(lock):
            return
        time.sleep(0.02)
    raise AssertionError(f"no worker took {lock} within {limit:g} s")


def lock_is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
