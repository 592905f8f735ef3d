"""The session guard of tests/conftest.py, run on a pytest session of its own: a run that
leaves state behind fails visibly, and an interrupted run is checked and cleaned up too.

The inner sessions leave one of their own scratch namespaces behind (never this machine's
state): the guard must report it, fail the run and remove it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

LEAK = '''
import os, subprocess, time
from pathlib import Path

def test_leaves_a_namespace():
    subprocess.run(["ip", "netns", "add", f"l2t-{os.getpid()}-leak"], check=True)
    Path(os.environ["GUARD_MARK"]).write_text(str(os.getpid()))
    if os.environ.get("GUARD_WAIT"):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until the outer test's signal ends the run
            time.sleep(0.05)
'''


def namespaces() -> list[str]:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()


def inner(tmp_path: Path, wait: bool) -> subprocess.Popen:
    (tmp_path / "test_inner.py").write_text(LEAK)
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "GUARD_MARK": str(tmp_path / "mark"),
           **({"GUARD_WAIT": "1"} if wait else {})}
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                             "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def check_reported(out: str, leak: str) -> None:
    assert f"network namespaces of this run were left behind (removed now): {leak}" in out, out
    assert "FAILED HOST GUARD" in out, out
    assert leak not in namespaces()


def test_a_run_that_leaves_state_fails_in_its_summary_and_exit_status(tmp_path):
    proc = inner(tmp_path, wait=False)
    out, _ = proc.communicate(timeout=120)
    leak = f"l2t-{(tmp_path / 'mark').read_text()}-leak"
    check_reported(out, leak)
    assert proc.returncode == 1 and out.rstrip().splitlines()[-1].startswith("1 failed, 1 passed"), out


def test_a_run_ended_by_sigterm_is_checked_and_cleaned_up(tmp_path):
    proc = inner(tmp_path, wait=True)
    mark = tmp_path / "mark"
    deadline = time.monotonic() + 60
    while not (mark.exists() and mark.read_text()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mark.exists(), proc.communicate(timeout=60)[0] if proc.poll() is not None else "no mark in 60 s"
    leak = f"l2t-{mark.read_text()}-leak"
    assert leak in namespaces()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    check_reported(out, leak)
    assert proc.returncode == 2 and "KeyboardInterrupt: signal SIGTERM" in out, out
