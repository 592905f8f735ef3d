"""Each benchmark of issue 4, measured against its baseline in the same run.

Every function returns Row objects for the table and raises BenchError when the tool
did not do its job (a route missing, the kernel written in steady state, a file
changed): a fast wrong answer is not a result.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import scale
from launcher import Tool
from timing import median, run_timed, timed

from l2tproute import constants as C

HERE = os.path.dirname(os.path.abspath(__file__))


class BenchError(RuntimeError):
    """The tool gave a wrong result during a benchmark."""


@dataclass
class Row:
    measure: str
    ours: str
    baseline: str
    ratio: str
    target: str
    ok: bool | None  # None: a reference row, no target

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("pass" if self.ok else "FAIL")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def sec(seconds: float) -> str:
    return f"{seconds:.3f} s"


def _env(store: str) -> dict:
    return dict(os.environ, **{C.STORE_DIR_ENV: store})


# -- 1. the panel's call --------------------------------------------------------

def panel(tool: Tool, workdir: str, runs: int) -> list[Row]:
    store = os.path.join(workdir, "panel-store")
    scale.write_store(store, range(3), 5)
    scratch = os.path.join(workdir, "panel-mnt")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           os.path.join(HERE, "panel.py"), "--store", store, "--scratch", scratch,
                           "--peer", scale.peer(1), "--runs", str(runs), "--routectl", tool.routectl,
                           "--python", tool.python], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"panel benchmark failed: {done.stderr.strip()[-800:]}")
    result = json.loads(done.stdout)
    if not result["same_output"]:
        raise BenchError(f"`list --peer` through sudo did not print what the bash baseline prints: "
                         f"{result['ours_output']!r} {result['ours_stderr']!r}")
    ours, bash, bare = (median(result["times"][k]) for k in ("ours", "bash", "bare"))
    return [
        Row("panel: sudo l2tp-routectl list --peer X", ms(ours), f"{ms(bash)} (bash list, sudo)",
            f"{ours / bash:.2f}x", "<= 2.0x", ours / bash <= 2.0),
        Row("reference: sudo python3 -IS -c pass (bare start, as ours starts)", ms(bare),
            f"{ms(bash)} (bash list, sudo)",
            f"{bare / bash:.2f}x", "-", None),
    ]


# -- 2, 3. apply-all from empty, the raw iproute2 work, and the per-route loop ----------

def _raw_work(ns: scale.Namespace, batch_text: str) -> float:
    """What a reconciling apply cannot avoid: read links, read our routes, one batch."""
    def work() -> None:
        ns.ip("-j", "addr", "show")
        ns.ip("-j", "route", "show", "proto", str(C.RT_PROTO))
        ns.ip("-force", "-batch", "-", stdin=batch_text)
    return timed(work)


def apply_from_empty(tool: Tool, ns: scale.Namespace, store: str, sessions: range, per_peer: int,
                     reps: int) -> dict[str, list[float]]:
    """Ours and the raw baseline, in turn, each starting with no tagged route installed."""
    batch_text = "\n".join(scale.raw_batch(sessions, per_peer)) + "\n"
    expected = scale.expected_routes(sessions, per_peer)
    times: dict[str, list[float]] = {"ours": [], "raw": []}
    for _ in range(reps):
        ns.flush_tagged()
        times["raw"].append(_raw_work(ns, batch_text))
        if ns.tagged_set() != expected:
            raise BenchError("the raw ip -batch baseline did not install every route")
        ns.flush_tagged()
        times["ours"].append(run_timed([tool.routectl, "apply", "--netns", ns.name], _env(store)))
        found = ns.tagged_set()
        if found != expected:
            raise BenchError(f"apply installed {len(found)} routes, {len(expected & found)} of the "
                             f"{len(expected)} expected")
    return times


def naive_loop(ns: scale.Namespace, sessions: range, per_peer: int) -> float:
    """A naive tool: one `ip route add` process per route."""
    ns.flush_tagged()
    lines = [line.split(" ", 1)[1] for line in scale.raw_batch(sessions, per_peer, verb="add")]

    def loop() -> None:
        for line in lines:
            subprocess.run(["ip", "-n", ns.name, "route", *line.split()], check=True,
                           stdout=subprocess.DEVNULL)
    elapsed = timed(loop)
    if ns.tagged_set() != scale.expected_routes(sessions, per_peer):
        raise BenchError("the per-route loop baseline did not install every route")
    return elapsed


# -- 3. steady state: nothing changed, nothing written -------------------------------

class RouteMonitor:
    """`ip monitor route` in the namespace; a sentinel route proves it is listening."""

    SENTINEL = "198.51.100.%d/32"

    def __init__(self, ns: scale.Namespace):
        self.ns = ns
        self.lines: list[str] = []
        self._proc = subprocess.Popen(["ip", "-n", ns.name, "monitor", "route"], stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._serial = 0

    def _read(self) -> None:
        for line in self._proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def mark(self) -> int:
        """Add and delete a sentinel route, wait until both are seen; the line count after them."""
        self._serial += 1
        sentinel = self.SENTINEL % self._serial
        for _ in range(50):
            self.ns.ip("route", "add", sentinel, "dev", "lo")
            self.ns.ip("route", "del", sentinel, "dev", "lo")
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if any(line.startswith("Deleted") and sentinel.split("/")[0] in line for line in self.lines):
                    return len(self.lines)
                time.sleep(0.01)
        raise BenchError("ip monitor route never showed the sentinel route")

    def between(self, first: int, last: int) -> list[str]:
        return [line for line in self.lines[first:last] if "198.51.100." not in line]

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait()


def steady(tool: Tool, ns: scale.Namespace, store: str, sessions: range, per_peer: int,
           reps: int) -> dict[str, object]:
    """`apply` again with every route in place: its time, and what ip monitor saw meanwhile."""
    run_timed([tool.routectl, "apply", "--netns", ns.name], _env(store))  # everything installed
    expected = scale.expected_routes(sessions, per_peer)
    monitor = RouteMonitor(ns)
    try:
        times, seen = [], []
        for _ in range(reps):
            first = monitor.mark()
            times.append(run_timed([tool.routectl, "apply", "--netns", ns.name], _env(store)))
            last = monitor.mark()
            seen += monitor.between(first, last)
    finally:
        monitor.close()
    if ns.tagged_set() != expected:
        raise BenchError("a steady-state apply lost routes")
    return {"times": times, "monitor_lines": seen}


# -- 4. hooks --------------------------------------------------------------------------

def _in_netns(ns: scale.Namespace, *args: str) -> dict:
    done = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, os.path.join(HERE, "hooks.py"), *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"hook benchmark failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def hook_single(tool: Tool, ns: scale.Namespace, store: str, index: int, per_peer: int, runs: int) -> list[float]:
    """ip-up for one new session with `per_peer` routes, every other session up."""
    scale.write_store(store, [index], per_peer)
    ns.add_sessions([index])
    result = _in_netns(ns, "single", "--hook", tool.ip_up, "--store", store, "--iface", f"ppp{index}",
                       "--peer", scale.peer(index), "--runs", str(runs))
    if any(count != per_peer for count in result["routes_after"]):
        raise BenchError(f"the ip-up hook left {result['routes_after']} routes on ppp{index}, not {per_peer}")
    return result["times"]


def _digest(store: str) -> dict[str, str]:
    return {name: hashlib.sha256(open(os.path.join(store, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(store))}


def storm(tool: Tool, ns: scale.Namespace, store: str, sessions: range, all_sessions: range,
          per_peer: int, workdir: str) -> dict:
    """`sessions` reconnect at once: links deleted (their routes go) and made again, one hook each."""
    before = _digest(store)
    ns.drop_sessions(sessions)
    ns.add_sessions(sessions)
    if ns.tagged_set() & scale.expected_routes(sessions, per_peer):
        raise BenchError("routes of the dropped sessions survived their links")
    listing = os.path.join(workdir, "storm.json")
    with open(listing, "w") as handle:
        json.dump([[f"ppp{i}", scale.peer(i)] for i in sessions], handle)
    result = _in_netns(ns, "storm", "--hook", tool.ip_up, "--store", store, "--sessions", listing)
    wanted = scale.expected_routes(all_sessions, per_peer)
    found = ns.tagged_set()
    result["routes"] = len(scale.expected_routes(sessions, per_peer))
    result["missing"] = len(wanted - found)
    result["unexpected"] = len(found - wanted)
    after = _digest(store)
    result["files_changed"] = sum(1 for name in set(before) | set(after) if before.get(name) != after.get(name))
    if result["failed"] or result["unexpected"] or result["files_changed"]:
        raise BenchError(f"reconnect storm: {result}")
    # Hooks that ran out of time leave the rest to the timer's apply: one run must finish the job.
    result["timer_apply"] = run_timed([tool.routectl, "apply", "--netns", ns.name], _env(store))
    result["missing_after_apply"] = len(wanted - ns.tagged_set())
    return result
