"""The hooks' front names an event's network namespace without a process where it can.

lib/l2tproute.sh's l2t_get_netns reads DEV-INO of /proc/self/ns/net with `stat`, except in
PID 1's namespace (where pppd runs on a server), whose DEV-INO it remembers in RUN/host-netns
under the boot id and PID 1's start time, and recognises with the builtin `test -ef`. Each
case runs the front in fresh namespaces of its own: a network namespace, and a PID namespace
whose PID 1 (a shell) is in that network namespace or not. The worker is never started.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fronts import HOOK_PATH, Fronts

from l2tproute.core import constants as C
from l2tproute.system.spool import parse_name

PEER = "10.255.10.1"
# Run by PID 1 of the new PID namespace: each hook, then what `stat` says of this namespace.
SCRIPT = """
set -e
for step in "$@"; do
    case $step in
    hook) "$HOOK" ppp0 /dev/pts/1 0 10.254.0.1 10.255.10.1 "" ;;
    plant) printf '%s\\n' "$PLANT" >"$L2TP_RUN_DIR/host-netns" ;;
    swap) read -r boot start id <"$L2TP_RUN_DIR/host-netns"; echo "$boot $start 7-7" >"$L2TP_RUN_DIR/host-netns" ;;
    esac
done
stat -L -c %d-%i /proc/self/ns/net
"""


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    return Fronts(tmp_path_factory.mktemp("fronts"), worker="/bin/false")


def _run(fronts: Fronts, run_dir: Path, steps: list[str], *, pid1_in_netns: bool = True, plant: str = ""):
    """(DEV-INO of the namespace, the events' namespaces sorted, RUN/host-netns or None)."""
    run_dir.mkdir(exist_ok=True)
    # The worker lock held: the front starts no worker, its events stay in the spool.
    holder = subprocess.Popen(["flock", str(run_dir / "worker.lock"), "sleep", "600"])
    try:
        inner = ["sh", "-c", SCRIPT, "sh", *steps]
        if pid1_in_netns:  # PID 1 is the shell, in the new network namespace
            argv = ["unshare", "--net", "--pid", "--fork", "--mount-proc", *inner]
        else:  # PID 1 stays in the namespace the new network namespace was made from
            argv = ["unshare", "--net", *inner]
        env = {"PATH": HOOK_PATH, "HOOK": str(fronts.hooks["up"]), C.RUN_DIR_ENV: str(run_dir), "PLANT": plant}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 0, done.stderr
    names = sorted((run_dir / "spool").iterdir())
    memory = run_dir / "host-netns"
    return (done.stdout.strip(), [str(parse_name(p.name).netns) for p in names],
            memory.read_text() if memory.exists() else None)


def _mark() -> str:
    """This boot's id (PID 1's start time is the PID namespace's, read inside it)."""
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_in_pid_1_s_namespace_the_first_hook_remembers_it_and_the_next_ones_use_it(fronts, tmp_path):
    netns, events, memory = _run(fronts, tmp_path / "run", ["hook", "hook", "swap", "hook"])
    boot, start, remembered = memory.split()
    assert boot == _mark() and start.isdigit()
    # The first two name the namespace as stat does; after the id was swapped under the same
    # mark, the third names what was remembered: it read the file and ran no stat.
    assert events == sorted([netns, netns, "7-7"])
    assert remembered == "7-7"


def test_a_memory_of_another_boot_or_pid_1_is_not_used_and_is_written_anew(fronts, tmp_path):
    for plant in (f"{'0' * 8}-0000-0000-0000-{'0' * 12} 1 7-7",  # another boot
                  f"{_mark()} 999999999 7-7",  # another PID 1 (its start time)
                  "garbage", f"{_mark()} 1 7-7-7", ""):
        run_dir = tmp_path / f"run{len(plant)}"
        netns, events, memory = _run(fronts, run_dir, ["plant", "hook"], plant=plant)
        assert events == [netns], plant
        assert memory.split()[0] == _mark() and memory.split()[2] == netns, plant


def test_outside_pid_1_s_namespace_nothing_is_remembered(fronts, tmp_path):
    netns, events, memory = _run(fronts, tmp_path / "run", ["hook", "hook"], pid1_in_netns=False)
    assert events == [netns, netns]
    assert memory is None
    # A memory left there (of PID 1's namespace, under the right mark) is not this namespace's.
    _, _, kept = _run(fronts, tmp_path / "pid1", ["hook"])
    run_dir = tmp_path / "run"
    (run_dir / "host-netns").write_text(kept)
    for path in (run_dir / "spool").iterdir():
        path.unlink()
    netns, events, _ = _run(fronts, run_dir, ["hook"], pid1_in_netns=False)
    assert events == [netns] and netns != kept.split()[2]
