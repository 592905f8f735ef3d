"""The pppd ip-up/ip-down hooks and their worker, timed from inside the sessions' namespace.

The hooks run `ip` without `-n`, as under pppd, so this script starts inside the
namespace (`ip netns exec NS ...`); run.py reads the JSON it prints. It makes itself
the subreaper of everything the hooks start (PR_SET_CHILD_SUBREAPER), so the worker a
hook leaves running comes back to it: all work is done when nothing is left to reap.

  single: one link comes up `--runs` times (its tagged routes flushed before each): when
          the hook returned to "pppd", and when the worker was gone; when each run started
          (CLOCK_MONOTONIC, for the caller's `ip monitor route` to time the routes' arrival).
  storm:  every session in `--sessions` comes up at once: one hook each, all started
          before the first is waited for; until everything is done, each hook's return
          time and the largest peak RSS (wait4); with `--memory`, the peak of the summed
          PSS of every process involved (sampled every 20 ms; shared pages counted once).
  flap:   `--plan` links go up, down and up again, others down, some link names pass to
          another peer, each link's steps in order as pppd runs them, all links at once.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scale  # noqa: E402

from l2tproute.core import constants as C  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36
LOCAL = "10.127.255.254"


def _subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("prctl(PR_SET_CHILD_SUBREAPER) failed")


def _hook_argv(hook: str, iface: str, peer: str) -> list:
    # pppd: IFACE TTY SPEED LOCAL PEER IPPARAM
    return [hook, iface, "/dev/pts/9", "0", LOCAL, peer, ""]


def _hook_env(args) -> dict:
    # pppd clears the environment; the store and the spool are moved to the benchmark's.
    return {**scale.store_env(args.store), C.RUN_DIR_ENV: args.run_dir}


def _tagged_on(iface: str) -> int:
    out = subprocess.run(["ip", "-j", "route", "show", "dev", iface, "proto", str(C.RT_PROTO)],
                         capture_output=True, text=True, check=True).stdout.strip()
    return len(json.loads(out)) if out else 0


def _exit_code(status: int) -> int:
    """os.waitstatus_to_exitcode, which Python 3.8 lacks: a signal as its negative number."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)


def _reap_all(hooks: dict, started: float) -> dict:
    """Wait for every descendant; (return time of each hook, peak RSS of any process)."""
    returned, failed, max_rss = [], 0, 0
    while True:
        try:
            pid, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        now = time.perf_counter()
        max_rss = max(max_rss, usage.ru_maxrss * 1024)
        if pid in hooks:
            returned.append(now - hooks.pop(pid))
            failed += _exit_code(status) != 0
    return {"returned": returned, "failed": failed, "max_rss": max_rss, "done": time.perf_counter() - started}


def single(args) -> dict:
    _subreaper()
    returned, done, counts, starts = [], [], [], []
    for _ in range(args.runs + 1):  # the first run warms the caches and is not counted
        subprocess.run(["ip", "route", "flush", "dev", args.iface, "proto", str(C.RT_PROTO)], check=True)
        start = time.perf_counter()
        starts.append(time.monotonic())  # the clock of the caller's ip monitor (CLOCK_MONOTONIC)
        proc = subprocess.Popen(_hook_argv(args.hook, args.iface, args.peer), env=_hook_env(args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate()
        returned.append(time.perf_counter() - start)
        if proc.returncode != 0 or out or err:
            raise SystemExit(f"the hook exited {proc.returncode} or printed: {out!r} {err!r}")
        done.append(_reap_all({}, start)["done"])
        counts.append(_tagged_on(args.iface))
    return {"returned": returned[1:], "done": done[1:], "routes_after": counts[1:], "starts": starts[1:]}


class _Memory:
    """The peak of the summed PSS of this process's descendants, sampled in a thread."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _descendants(self) -> list:
        parent = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat", "rb") as handle:
                        fields = handle.read().rsplit(b")", 1)[1].split()
                    parent[int(name)] = int(fields[1])
                except (OSError, IndexError, ValueError):
                    pass
        me, found = os.getpid(), []
        for pid in parent:
            seen, up = 0, parent.get(pid)
            while up and seen < 64:
                if up == me:
                    found.append(pid)
                    break
                up, seen = parent.get(up), seen + 1
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in self._descendants():
                try:
                    with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
                        for line in handle:
                            if line.startswith(b"Pss:"):
                                total += int(line.split()[1]) * 1024
                                break
                except (OSError, IndexError, ValueError):
                    pass  # already gone
            self.peak = max(self.peak, total)
            self._stop.wait(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def storm(args) -> dict:
    _subreaper()
    # The reaper thread stamps a hook's return when it next holds the GIL; at the default switch
    # interval (5 ms) the spawning loop kept it waiting that long, which was counted as the hook's.
    sys.setswitchinterval(0.0002)
    with open(args.sessions) as handle:
        sessions = json.load(handle)
    env = _hook_env(args)
    memory = _Memory() if args.memory else None
    # Reaped as they end, while the rest are still being started: a hook's return time is its own.
    ended: dict = {}
    spawned = threading.Event()
    max_rss = [0]

    def reap() -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, 0)
            except ChildProcessError:
                if spawned.is_set():
                    return
                time.sleep(0.001)
                continue
            ended[pid] = (time.perf_counter(), _exit_code(status))
            max_rss[0] = max(max_rss[0], usage.ru_maxrss * 1024)

    reaper = threading.Thread(target=reap, daemon=True)
    reaper.start()
    start = time.perf_counter()
    hooks = {}
    for iface, peer in sessions:
        began = time.perf_counter()
        proc = subprocess.Popen(_hook_argv(args.hook, iface, peer), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        hooks[proc.pid] = began
        proc.returncode = 0  # reaped by the thread above; keeps Popen from waiting again
    spawned.set()
    reaper.join()
    done = time.perf_counter() - start
    returned = [ended[pid][0] - began for pid, began in hooks.items()]
    failed = sum(1 for pid in hooks if ended[pid][1] != 0)
    return {"returned": returned, "failed": failed, "max_rss": max_rss[0], "done": done,
            "spawning": max(hooks.values()) - start, "hooks": len(sessions),
            "peak_pss_sum": memory.stop() if memory is not None else None,
            "started": start}  # time.perf_counter (CLOCK_MONOTONIC): comparable with draw.py's route counter


def _run_hook(hook: str, iface: str, peer: str, env: dict) -> int:
    return subprocess.run(_hook_argv(hook, iface, peer), env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode


def flap(args) -> dict:
    """Each link's steps in order (a hook returns before the link's next step), all links at once."""
    _subreaper()
    with open(args.plan) as handle:
        plan = json.load(handle)
    env = _hook_env(args)
    hooks = {"up": args.hook, "down": args.down_hook}
    failures = []

    def ip(*words: str) -> None:
        subprocess.run(["ip", *words], check=True, capture_output=True)

    def steps(link_plan: list) -> None:
        for step in link_plan:
            kind, iface, peer = step
            if kind == "addr-del":  # pppd clears the addresses before it runs ip-down
                ip("addr", "del", LOCAL, "peer", peer, "dev", iface)
            elif kind == "addr-add":
                ip("addr", "add", LOCAL, "peer", peer, "dev", iface)
            elif kind == "link-del":
                ip("link", "del", iface)
            elif kind == "link-add":
                ip("tuntap", "add", "dev", iface, "mode", "tun")
                ip("addr", "add", LOCAL, "peer", peer, "dev", iface)
                ip("link", "set", iface, "up")
            elif _run_hook(hooks[kind], iface, peer, env) != 0:
                failures.append(step)

    start = time.perf_counter()
    threads = [threading.Thread(target=steps, args=(link_plan,)) for link_plan in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = _reap_all({}, start)
    result.update(links=len(plan), failed_hooks=len(failures))
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["single", "storm", "flap"])
    parser.add_argument("--hook", required=True)
    parser.add_argument("--down-hook")
    parser.add_argument("--store", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--iface")
    parser.add_argument("--peer")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sessions")
    parser.add_argument("--plan")
    parser.add_argument("--memory", action="store_true", help="storm: sample every process's PSS meanwhile")
    args = parser.parse_args()
    mode = {"single": single, "storm": storm, "flap": flap}[args.mode]
    print(json.dumps(mode(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
