"""The pppd ip-up hook, timed from inside the session's namespace (`ip netns exec NS ...`).

The hook itself runs `ip` without `-n`, as under pppd, so it must start inside the
namespace; run.py starts this script there and reads the JSON it prints.

  single: the same link comes up `--runs` times (its tagged routes flushed before each);
          the time of each hook and how many routes it left on the link.
  storm:  every session in `--sessions` comes up at once: one hook per session, all
          started before the first is waited for; wall time, each hook's peak RSS
          (wait4) and the peak of their summed PSS (sampled every 10 ms), that is the
          memory they took together, shared pages counted once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from l2tproute import constants as C  # noqa: E402


def _hook_argv(hook: str, iface: str, peer: str) -> list:
    # pppd: IFACE TTY SPEED LOCAL PEER IPPARAM
    return [hook, iface, "/dev/pts/9", "0", "10.127.255.254", peer, ""]


def _hook_env(store: str) -> dict:
    # pppd clears the environment; the store is moved to the benchmark's.
    return {C.STORE_DIR_ENV: store}


def _tagged_on(iface: str) -> int:
    out = subprocess.run(["ip", "-j", "route", "show", "dev", iface, "proto", str(C.RT_PROTO)],
                         capture_output=True, text=True, check=True).stdout.strip()
    return len(json.loads(out)) if out else 0


def single(args) -> dict:
    times, counts = [], []
    for _ in range(args.runs + 1):  # the first run warms the caches and is not counted
        subprocess.run(["ip", "route", "flush", "dev", args.iface, "proto", str(C.RT_PROTO)], check=True)
        start = time.perf_counter()
        done = subprocess.run(_hook_argv(args.hook, args.iface, args.peer), env=_hook_env(args.store),
                              capture_output=True)
        times.append(time.perf_counter() - start)
        counts.append(_tagged_on(args.iface))
        if done.returncode != 0 or done.stdout or done.stderr:
            raise SystemExit(f"the hook exited {done.returncode} or printed: {done.stdout!r} {done.stderr!r}")
    return {"times": times[1:], "routes_after": counts[1:]}


def _pss_of(pids) -> int:
    """Bytes of memory the processes use, shared pages (the interpreter, libraries) split among them."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
                for line in handle:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, IndexError, ValueError):
            pass  # already gone
    return total


def storm(args) -> dict:
    with open(args.sessions) as handle:
        sessions = json.load(handle)
    env = _hook_env(args.store)
    live: set = set()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _pss_of(list(live)))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    for iface, peer in sessions:
        proc = subprocess.Popen(_hook_argv(args.hook, iface, peer), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        live.add(proc.pid)
        proc.returncode = 0  # reaped below with wait4, for its rusage; keeps Popen from waiting again
    statuses, max_rss = [], 0
    while live:
        pid, status, usage = os.wait4(-1, 0)
        live.discard(pid)
        statuses.append(os.waitstatus_to_exitcode(status))
        max_rss = max(max_rss, usage.ru_maxrss * 1024)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    return {"wall": wall, "hooks": len(statuses), "failed": sum(1 for s in statuses if s != 0),
            "max_rss": max_rss, "peak_pss_sum": peak[0]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["single", "storm"])
    parser.add_argument("--hook", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--iface")
    parser.add_argument("--peer")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sessions")
    args = parser.parse_args()
    print(json.dumps(single(args) if args.mode == "single" else storm(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
