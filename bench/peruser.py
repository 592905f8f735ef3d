"""Issue 16: a command about one user costs the same with few users or many.

`add`, `del`, `apply --peer` and `status --peer` for one peer, on a server with `small`
sessions and on one with `big` sessions (each `per_peer` routes, all installed), timed in
turn (small, big, small, big...) so load affects both alike. The lock hold time of add and
del comes from the tool itself: with L2TP_ROUTES_LOCK_TIMES set (honoured only outside
sudo, as L2TP_ROUTES_DIR), Store.locked appends the seconds between acquire and release.
"""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import scale  # noqa: E402
from launcher import Tool  # noqa: E402
from measures import BenchError, Row, ms  # noqa: E402
from timing import median, run_timed  # noqa: E402

from l2tproute.core import constants as C  # noqa: E402

COMMANDS = ("add", "del", "apply --peer", "status --peer")
#: A destination no peer of scale.py has (they are carved from 100.64.0.0/10).
NEW_DST = "198.18.7.0/24"


def _world(tag: str, workdir: str, sessions: int, per_peer: int) -> tuple[scale.Namespace, str]:
    ns = scale.Namespace(tag)
    store = os.path.join(workdir, f"store-{tag}")
    scale.write_store(store, range(sessions), per_peer)
    ns.add_sessions(range(sessions))
    ns.batch(scale.raw_batch(range(sessions), per_peer))
    return ns, store


def _argv(tool: Tool, ns: scale.Namespace, command: str, peer: str) -> list[str]:
    words = {"add": ["add", "--peer", peer, "--dst", NEW_DST], "del": ["del", "--peer", peer, "--dst", NEW_DST],
             "apply --peer": ["apply", "--peer", peer], "status --peer": ["status", "--peer", peer]}[command]
    return [tool.routectl, *words, "--netns", ns.name]


def _lock_times(path: str) -> list[float]:
    try:
        with open(path) as handle:
            values = [float(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []
    os.unlink(path)
    return values


def measure(tool: Tool, workdir: str, small: int, big: int, per_peer: int, runs: int, log) -> list[Row]:
    worlds = {}
    try:
        for tag, sessions in (("s", small), ("l", big)):
            log(f"per-user commands: {sessions} sessions x {per_peer} routes installed")
            worlds[tag] = _world(f"u{tag}", workdir, sessions, per_peer)
        # The middle peer of the small server is in both; the same work, only the others differ.
        peer = scale.peer(small // 2)
        link = f"ppp{small // 2}"
        times = {(tag, cmd): [] for tag in worlds for cmd in COMMANDS}
        held = {(tag, cmd): [] for tag in worlds for cmd in ("add", "del")}
        lock_log = os.path.join(workdir, "lock-times")
        for round_number in range(runs + 1):  # round 0 warms the caches up, untimed
            for tag, (ns, store) in worlds.items():
                env = dict(os.environ, **scale.store_env(store), **{C.LOCK_TIMES_ENV: lock_log})
                for cmd in COMMANDS:
                    _lock_times(lock_log)
                    elapsed = run_timed(_argv(tool, ns, cmd, peer), env)
                    hold = _lock_times(lock_log)
                    if round_number:
                        times[(tag, cmd)].append(elapsed)
                        if cmd in ("add", "del"):
                            if len(hold) != 1:
                                raise BenchError(f"{cmd} reported {len(hold)} lock holds, not 1")
                            held[(tag, cmd)] += hold
                    if cmd == "add" and not _has_route(ns, link):
                        raise BenchError(f"add did not install {NEW_DST} on {link}")
                    if cmd == "del" and _has_route(ns, link):
                        raise BenchError(f"del left {NEW_DST} on {link}")
    finally:
        for ns, _ in worlds.values():
            ns.close()
    rows = []
    for cmd in COMMANDS:
        few, many = median(times[("s", cmd)]), median(times[("l", cmd)])
        ratio = many / few
        rows.append(Row(f"per user: {cmd}, {big} vs {small} sessions x {per_peer} routes", ms(many),
                        f"{ms(few)} ({small} sessions)", f"{ratio:.2f}x", "<= 1.2x", ratio <= 1.2))
    for cmd in ("add", "del"):
        rows.append(Row(f"per user: lock held by {cmd}, {big} sessions (and {small})", ms(median(held[("l", cmd)])),
                        f"{ms(median(held[('s', cmd)]))} ({small} sessions)", "-", "reported", None))
    return rows


def _has_route(ns: scale.Namespace, link: str) -> bool:
    done = ns.ip("-4", "-j", "route", "show", "exact", NEW_DST, "proto", str(C.RT_PROTO), "dev", link)
    return done.stdout.strip() not in ("", "[]")


if __name__ == "__main__":  # python3 bench/peruser.py [SMALL BIG RUNS]: this measure alone (run.py has it too)
    import tempfile

    import launcher
    from run import render

    args = [int(a) for a in sys.argv[1:4]] or [10, 200, 7]
    work = tempfile.mkdtemp(prefix="l2tb-")
    try:
        tool = launcher.prepare(work)
        found = measure(tool, work, args[0], args[1], 5, args[2], lambda t: print(f"bench: {t}", file=sys.stderr))
        print(render(found, "quick", tool, "-").replace("bench/run.py --size quick",
                                                       f"bench/peruser.py {' '.join(map(str, args))}"))
    finally:
        subprocess.run(["rm", "-rf", work], check=False)
