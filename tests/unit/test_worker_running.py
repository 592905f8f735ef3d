"""The worker's mark (RUN/worker.running): a hook that finds a live worker named there starts
nobody and runs no flock; the worker clears the mark, while it still holds the lock, before
its last look at the spool, so an event spooled meanwhile is not left behind.

lib/l2tproute.sh (l2t_worker_running, l2t_start_worker) runs here under /bin/sh as the hooks
run it; worker.run with its drain replaced, as the lock and the mark are all it adds.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO
from fronts import lock_is_free

from l2tproute.fronts import worker
from l2tproute.system.spool import WORKER_RUNNING, Spool

LIB = REPO / "lib" / "l2tproute.sh"


def sh(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", f'. "{LIB}"\n{script}', "sh", *args], capture_output=True, text=True,
                          timeout=60)


def start_time(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()[19]


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def running(run_dir: Path) -> bool:
    return sh('l2t_worker_running "$1"', str(run_dir)).returncode == 0


def test_a_mark_counts_only_when_it_names_a_live_process_by_pid_and_start_time(tmp_path, sleeper):
    mark = tmp_path / WORKER_RUNNING
    assert not running(tmp_path)  # no mark
    mark.write_text(f"{sleeper.pid} {start_time(sleeper.pid)}\n")
    assert running(tmp_path)
    mark.write_text(f"{sleeper.pid} {int(start_time(sleeper.pid)) + 1}\n")  # the PID of another process now
    assert not running(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    mark.write_text(f"{gone.pid} {start_time(sleeper.pid)}\n")
    assert not running(tmp_path)
    # Exited but not reaped yet (a zombie keeps its PID and start time in /proc).
    zombie = subprocess.Popen(["true"])
    try:
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
        mark.write_text(f"{zombie.pid} {start_time(zombie.pid)}\n")
        assert not running(tmp_path)
    finally:
        zombie.wait()
    for garbage in ("", "\n", f"{sleeper.pid}\n", f"{sleeper.pid} {start_time(sleeper.pid)} x\n",
                    f"../{sleeper.pid} {start_time(sleeper.pid)}\n", f"self {start_time(sleeper.pid)}\n",
                    f"{sleeper.pid}/task/{sleeper.pid} {start_time(sleeper.pid)}\n", "1 -\n"):
        mark.write_text(garbage)
        assert not running(tmp_path), garbage


#: Stands in for the worker: records its PID and start time as /proc gives them, and the mark.
FAKE_WORKER = """#!/bin/sh
. "{lib}"
l2t_proc_stat self
echo "$l2t_pid $l2t_start" >"{out}/self"
cat "{out}/../run/worker.running" >"{out}/mark" 2>/dev/null
echo "$*" >"{out}/args"
"""


@pytest.fixture
def fake(tmp_path):
    out, run_dir = tmp_path / "out", tmp_path / "run"
    out.mkdir()
    run_dir.mkdir()
    program = tmp_path / "worker"
    program.write_text(FAKE_WORKER.format(lib=LIB, out=out))
    program.chmod(0o755)
    return program, run_dir, out


def start_worker(program: Path, run_dir: Path) -> None:
    # `wait`: whatever l2t_start_worker put in the background has ended when this returns.
    done = sh('l2t_start_worker "$1" "$2"; wait', str(run_dir), str(program))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_a_mark_the_worker_starts_with_the_lock_and_its_own_mark(fake):
    program, run_dir, out = fake
    start_worker(program, run_dir)
    assert (out / "args").read_text() == "--lock-fd 9\n"
    # The subshell that took the lock wrote the mark, then became the worker: the same process.
    assert (out / "mark").read_text() == (out / "self").read_text()


def test_a_live_mark_starts_nobody_and_a_stale_one_does_not_stop_the_start(fake, sleeper):
    program, run_dir, out = fake
    (run_dir / WORKER_RUNNING).write_text(f"{sleeper.pid} {start_time(sleeper.pid)}\n")
    start_worker(program, run_dir)
    assert not (out / "args").exists()
    assert not (run_dir / "worker.lock").exists()  # not even flock ran
    (run_dir / WORKER_RUNNING).write_text(f"{sleeper.pid} {int(start_time(sleeper.pid)) - 1}\n")
    start_worker(program, run_dir)
    assert (out / "args").read_text() == "--lock-fd 9\n"
    assert (out / "mark").read_text() == (out / "self").read_text()


def test_a_held_lock_without_a_mark_still_starts_nobody(fake):
    program, run_dir, out = fake
    with open(run_dir / "worker.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        start_worker(program, run_dir)
    assert not (out / "args").exists()
    assert not (run_dir / WORKER_RUNNING).exists()


def test_the_worker_marks_each_pass_and_clears_the_mark_holding_the_lock_before_its_last_look(tmp_path, monkeypatch):
    spool = Spool(str(tmp_path))
    os.makedirs(spool.directory)
    seen, cleared_free = [], []

    def drain(spool_, ctx, log, proc_sys):
        mark = Path(spool.running_path).read_text().split()
        seen.append(mark == [str(os.getpid()), start_time(os.getpid())])
        if len(seen) == 1:  # a hook found this mark and started nobody: its event must be handled
            (Path(spool.directory) / "event").write_text("")
        else:
            os.unlink(Path(spool.directory) / "event")
        return worker.Drained(1, stuck=False)

    real_clear = Spool.clear_running

    def clear(self):
        cleared_free.append(lock_is_free(Path(self.lock_path)))
        real_clear(self)

    monkeypatch.setattr(worker, "drain", drain)
    monkeypatch.setattr(Spool, "clear_running", clear)
    assert worker.run(spool, None, lambda *a: None, held_fd=None) == 2
    assert seen == [True, True]
    assert cleared_free == [False, False]  # cleared each time while this worker held the lock
    assert not os.path.exists(spool.running_path)
    assert spool.is_empty()


def test_a_worker_that_fails_leaves_no_mark(tmp_path, monkeypatch):
    spool = Spool(str(tmp_path))

    def drain(*args):
        raise RuntimeError("broken")

    monkeypatch.setattr(worker, "drain", drain)
    with pytest.raises(RuntimeError):
        worker.run(spool, None, lambda *a: None, held_fd=None)
    assert not os.path.exists(spool.running_path)
    assert lock_is_free(Path(spool.lock_path))
