"""Nothing hangs: a stuck lock holder gives the panel a clear error after a bounded wait,
hooks never wait for the lock, and an `ip` that does not answer is killed after its timeout.

The real values are used (constants.LOCK_TIMEOUT, IP_TIMEOUT, hook.HOOK_IP_TIMEOUT); the
waits run side by side, so the whole file costs about one LOCK_TIMEOUT. A hung `ip` is
a stand-in script put first on PATH (the tool honours PATH outside sudo; under sudo,
secure_path decides). The subprocess timeouts below only stop a test that would hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import routectl_path
from fronts import Fronts, holds_for, run_hook_script, wait_for_worker, wait_worker_running

from l2tproute.core import constants as C

PEER = "10.255.10.2"
GUARD = C.LOCK_TIMEOUT + C.IP_BATCH_TIMEOUT  # only against a hang; never reached when the tool is right


def start(argv, env) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen):
    out, err = proc.communicate(timeout=GUARD)
    return proc.returncode, out, err


@pytest.fixture
def env(store_dir):
    values = {k: v for k, v in os.environ.items() if not k.startswith("SUDO_")}
    values[C.STORE_DIR_ENV] = str(store_dir)
    return values


@pytest.fixture
def hung_ip(tmp_path):
    """A directory with an `ip` that records its pid and never answers."""
    bindir = tmp_path / "hung-bin"
    bindir.mkdir()
    pids = tmp_path / "hung-ip.pids"
    script = bindir / "ip"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo $$ >> {pids}
        exec sleep 3600
        """))
    script.chmod(0o755)
    return bindir, pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_stuck_lock_holder_gives_clear_errors_hooks_do_not_wait_and_a_hung_ip_is_killed(
        store_dir, env, netns, hung_ip, tmp_path, monkeypatch):
    (store_dir / f"{PEER}{C.ROUTE_FILE_SUFFIX}").write_text(f"10.9.0.0/24 via {PEER}\n")
    netns.add_ppp("ppp0", PEER)
    lock = store_dir / C.LOCK_FILE_NAME
    # The stuck holder: another process that took the store lock and never lets go.
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import fcntl, os, sys, time
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(3600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        ctl = routectl_path()
        waiting = {name: start([ctl, *argv, "--netns", netns.name], env) for name, argv in {
            "add": ["add", "--peer", PEER, "--dst", "10.8.0.0/24"],
            "del": ["del", "--peer", PEER, "--dst", "10.9.0.0/24"],
            "apply": ["apply", "--peer", PEER]}.items()}
        hung_env = dict(env, PATH=f"{hung_ip[0]}:{env.get('PATH', '')}")
        hung = start([ctl, "add", "--peer", PEER, "--dst", "10.7.0.0/24", "--netns", netns.name], hung_env)

        # Meanwhile: the panel's list does not wait for the lock...
        listed = subprocess.run([ctl, "list", "--peer", PEER], capture_output=True, text=True, env=env, timeout=GUARD)
        assert (listed.returncode, listed.stderr) == (0, ""), listed
        assert listed.stdout == f"Routes for peer {PEER}:\n10.9.0.0/24 via {PEER}\n"
        # ...and neither does a hook: it spools the event and returns while the lock is held;
        # its worker waits for the lock (a hung ip in the worker: tests/netns/test_hooks.py).
        fronts = Fronts(tmp_path / "fronts")
        run_dir = tmp_path / "run"
        hooked = run_hook_script(fronts, "up", ["ppp0", "/dev/pts/1", "0", "10.254.0.1", PEER, ""], ns=netns,
                                 env={C.STORE_DIR_ENV: str(store_dir), C.RUN_DIR_ENV: str(run_dir)}, timeout=GUARD)
        assert (hooked.returncode, hooked.stdout, hooked.stderr) == (0, b"", b"")
        # A worker runs (it holds the spool's worker lock) and routes nothing while the store is locked.
        wait_worker_running(run_dir)
        assert holds_for(lambda: netns.tagged_set() == set()) and holder.poll() is None, \
            "the worker did not wait for the store lock"

        for name, proc in waiting.items():
            code, out, err = finish(proc)
            assert code == C.EXIT_FAILURE, (name, code, out, err)
            lines = err.splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"{C.PROG}: error: "), (name, err)
            assert f"locked by another l2tp-routectl for more than {C.LOCK_TIMEOUT:g} s" in lines[0], lines[0]
            assert "try again" in lines[0] and f"fuser -v {lock}" in lines[0], lines[0]
        assert (store_dir / f"{PEER}{C.ROUTE_FILE_SUFFIX}").read_text() == f"10.9.0.0/24 via {PEER}\n"

        code, out, err = finish(hung)
        assert code == C.EXIT_FAILURE, (code, out, err)
        # The first ip of an add: the reader's look at what the installed iproute2 prints.
        expected = (f"{C.PROG}: error: ip -N -V did not finish within {C.IP_TIMEOUT:g} s; "
                    "ip or the kernel is stuck: look for hung ip processes (ps -C ip) and kernel messages (dmesg), "
                    "then try again")
        assert err.splitlines() == [expected], err
    finally:
        holder.kill()
        holder.wait()
    pids = [int(line) for line in hung_ip[1].read_text().split()]
    assert len(pids) == 1  # the CLI's read
    assert not any(alive(pid) for pid in pids), "a timed-out ip was left running"
    wait_for_worker(run_dir)  # the lock is free: the hook's worker installs the user's routes
    assert netns.tagged_set() == {("10.9.0.0/24", PEER, "ppp0", "main")}

