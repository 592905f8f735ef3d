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

from l2tproute.core import constants as C

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
    return dict(os.environ, **scale.store_env(store))


# -- 1. the panel's calls ---------------------------------------------------------

def panel(tool: Tool, workdir: str, runs: int, users: int, page_runs: int) -> list[Row]:
    store = os.path.join(workdir, "panel-store")
    scale.write_store(store, range(users), 5)
    scratch = os.path.join(workdir, "panel-mnt")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           os.path.join(HERE, "panel.py"), "--store", store, "--scratch", scratch,
                           "--peer", scale.peer(1), "--runs", str(runs), "--routectl", tool.routectl,
                           "--python", tool.python, "--page-peers", ",".join(scale.peer(i) for i in range(users)),
                           "--page-runs", str(page_runs)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"panel benchmark failed: {done.stderr.strip()[-800:]}")
    result = json.loads(done.stdout)
    if not result["same_output"] or not result["page_same"]:
        raise BenchError(f"the panel's calls through sudo did not print what the bash baseline prints: "
                         f"{result['ours_output']!r} {result['ours_stderr']!r}")
    ours, bash, bare = (median(result["times"][k]) for k in ("ours", "bash", "bare"))
    unset, unset_bash = (median(result["without_settings"][k]) for k in ("ours", "bash"))
    page, old_page = (median(result["page_times"][k]) for k in ("ours", "bash"))
    return [
        Row("panel: sudo l2tp-routectl list --peer X", ms(ours), f"{ms(bash)} (bash list, sudo)",
            f"{ours / bash:.2f}x", "<= 1.0x", ours / bash <= 1.0),
        Row(f"panel page: {users} users, {result['page_calls']} calls through sudo", sec(page),
            f"{sec(old_page)} (bash tool)", f"{page / old_page:.2f}x", "<= 1.0x", page / old_page <= 1.0),
        Row("reference: the same list --peer without a settings file", ms(unset), f"{ms(unset_bash)} (bash list, sudo)",
            f"{unset / unset_bash:.2f}x", "-", None),
        Row("reference: sudo python3 -IS -c pass (bare start)", ms(bare),
            f"{ms(bash)} (bash list, sudo)", f"{bare / bash:.2f}x", "-", None),
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
    """`ip monitor route` in the namespace, each line with when it was read (CLOCK_MONOTONIC); a
    sentinel route proves it is listening."""

    SENTINEL = "198.51.100.%d/32"

    def __init__(self, ns: scale.Namespace):
        self.ns = ns
        self.lines: list[str] = []
        self.times: list[float] = []
        self._proc = subprocess.Popen(["ip", "-n", ns.name, "monitor", "route"], stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._serial = 0

    def _read(self) -> None:
        for line in self._proc.stdout:
            self.times.append(time.monotonic())
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

def _in_netns(ns: scale.Namespace, tool: Tool, store: str, run_dir: str, *args: str) -> dict:
    """bench/hooks.py in the namespace, as PID 1 of a PID namespace of its own: pppd runs in the
    namespace of its server's PID 1, and the hooks may rely on that (l2t_get_netns)."""
    done = subprocess.run(["ip", "netns", "exec", ns.name, "unshare", "--pid", "--fork", "--mount-proc",
                           sys.executable, os.path.join(HERE, "hooks.py"), *args,
                           "--hook", tool.ip_up, "--down-hook", tool.ip_down, "--store", store, "--run-dir", run_dir],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"hook benchmark failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def hook_single(tool: Tool, ns: scale.Namespace, store: str, run_dir: str, index: int, per_peer: int,
                runs: int) -> dict:
    """ip-up for one new session with `per_peer` routes, every other session up; "in_kernel": when the
    last of its routes reached the kernel (as `ip monitor route` heard it), from the hook's start."""
    scale.write_store(store, [index], per_peer)
    ns.add_sessions([index])
    monitor = RouteMonitor(ns)
    try:
        monitor.mark()  # listening before the first run starts
        result = _in_netns(ns, tool, store, run_dir, "single", "--iface", f"ppp{index}", "--peer",
                           scale.peer(index), "--runs", str(runs))
        if any(count != per_peer for count in result["routes_after"]):
            raise BenchError(f"the ip-up hook left {result['routes_after']} routes on ppp{index}, not {per_peer}")
        result["in_kernel"] = _arrivals(monitor, f"ppp{index}", result["starts"], per_peer)
        if any(arrived > gone for arrived, gone in zip(result["in_kernel"], result["done"])):
            raise BenchError(f"routes heard after the worker was gone: {result['in_kernel']} {result['done']}")
    finally:
        monitor.close()
    return result


def _arrivals(monitor: RouteMonitor, link: str, starts: list[float], count: int) -> list[float]:
    """For each start, how long until the `count`th route added on `link` after it (and before the
    next start), as the monitor heard them."""
    needle = f" dev {link} "

    def added() -> list[float]:
        return [t for t, line in zip(monitor.times, monitor.lines)
                if t >= starts[0] and not line.startswith("Deleted") and needle in line + " "]

    deadline = time.monotonic() + 5.0
    while len(added()) < count * len(starts):
        if time.monotonic() > deadline:
            raise BenchError("ip monitor route did not hear the routes the hooks installed")
        time.sleep(0.01)
    heard = added()
    found = []
    for start, end in zip(starts, starts[1:] + [float("inf")]):
        mine = [t for t in heard if start <= t < end]
        if len(mine) < count:
            raise BenchError(f"ip monitor route heard {len(mine)} routes after a hook, not {count}")
        found.append(mine[count - 1] - start)
    return found


def _digest(store: str) -> dict[str, str]:
    return {name: hashlib.sha256(open(os.path.join(store, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(store))}


def storm(tool: Tool, ns: scale.Namespace, store: str, run_dir: str, sessions: range, all_sessions: range,
          per_peer: int, workdir: str, memory: bool = True) -> dict:
    """`sessions` reconnect at once: links deleted (their routes go) and made again, one hook each.
    With `memory`, the same storm again while every process's PSS is sampled (peak_pss_sum,
    max_rss): reading smaps_rollup of hundreds of processes every 20 ms takes a share of the
    two cores, so the first storm, which gives the times, runs without it."""
    result = _storm_once(tool, ns, store, run_dir, sessions, all_sessions, per_peer, workdir, memory=False)
    if memory:
        sampled = _storm_once(tool, ns, store, run_dir, sessions, all_sessions, per_peer, workdir, memory=True)
        result.update(peak_pss_sum=sampled["peak_pss_sum"], max_rss=sampled["max_rss"])
    return result


def _storm_once(tool: Tool, ns: scale.Namespace, store: str, run_dir: str, sessions: range, all_sessions: range,
                per_peer: int, workdir: str, memory: bool) -> dict:
    before = _digest(store)
    ns.drop_sessions(sessions)
    ns.add_sessions(sessions)
    if ns.tagged_set() & scale.expected_routes(sessions, per_peer):
        raise BenchError("routes of the dropped sessions survived their links")
    listing = os.path.join(workdir, "storm.json")
    with open(listing, "w") as handle:
        json.dump([[f"ppp{i}", scale.peer(i)] for i in sessions], handle)
    result = _in_netns(ns, tool, store, run_dir, "storm", "--sessions", listing, *(["--memory"] if memory else []))
    wanted = scale.expected_routes(all_sessions, per_peer)
    found = ns.tagged_set()
    result["routes"] = len(scale.expected_routes(sessions, per_peer))
    result["missing"] = len(wanted - found)
    result["unexpected"] = len(found - wanted)
    after = _digest(store)
    result["files_changed"] = sum(1 for name in set(before) | set(after) if before.get(name) != after.get(name))
    if result["failed"] or result["unexpected"] or result["files_changed"] or result["missing"]:
        raise BenchError(f"reconnect storm: {dict(result, returned=len(result['returned']))}")
    return result


def flap(tool: Tool, workdir: str, store: str, run_dir: str, flappers: int, leavers: int, reused: int,
         per_peer: int) -> dict:
    """Sessions flapping up, down and up, others leaving, link names passing to other peers, all at once;
    the kernel must end with exactly the stored routes of the links that are up, foreign routes untouched."""
    total = flappers + leavers + reused
    newcomers = range(total, total + reused)  # the peers that take over the reused link names
    scale.write_store(store, list(range(total)) + list(newcomers), per_peer)
    ns = scale.Namespace("flap")
    try:
        ns.add_sessions(range(total))
        done = subprocess.run([tool.routectl, "apply", "--netns", ns.name], env=_env(store), capture_output=True)
        if done.returncode != 0 or ns.tagged_set() != scale.expected_routes(range(total), per_peer):
            raise BenchError(f"flap: the first apply did not install every route: {done.stderr[-300:]!r}")
        # Somebody else's routes beside ours: never ours to touch.
        ns.batch(["tuntap add dev lan0 mode tun", "addr add 192.0.2.1/24 dev lan0", "link set lan0 up"]
                 + [f"route add 198.18.{i}.0/24 via 192.0.2.2 dev lan0 proto static" for i in range(200)])
        foreign_before = ns.ip("-j", "route", "show", "proto", "static").stdout
        before = _digest(store)
        plan = []
        for i in range(flappers):
            link, peer = f"ppp{i}", scale.peer(i)
            plan.append([["up", link, peer], ["addr-del", link, peer], ["down", link, peer],
                         ["addr-add", link, peer], ["up", link, peer]])
        for i in range(flappers, flappers + leavers):
            plan.append([["addr-del", f"ppp{i}", scale.peer(i)], ["down", f"ppp{i}", scale.peer(i)]])
        for offset, i in enumerate(range(flappers + leavers, total)):
            link, new = f"ppp{i}", scale.peer(newcomers[offset])
            plan.append([["addr-del", link, scale.peer(i)], ["link-del", link, scale.peer(i)],
                         ["down", link, scale.peer(i)], ["link-add", link, new], ["up", link, new]])
        listing = os.path.join(workdir, "flap.json")
        with open(listing, "w") as handle:
            json.dump(plan, handle)
        result = _in_netns(ns, tool, store, run_dir, "flap", "--plan", listing)
        up = {(dst, scale.peer(i), f"ppp{i}") for i in range(flappers) for dst in scale.routes(i, per_peer)}
        up |= {(dst, scale.peer(newcomers[o]), f"ppp{i}") for o, i in enumerate(range(flappers + leavers, total))
               for dst in scale.routes(newcomers[o], per_peer)}
        found = ns.tagged_set()
        result.update(expected=len(up), missing=len(up - found), unexpected=len(found - up),
                      foreign_changed=ns.ip("-j", "route", "show", "proto", "static").stdout != foreign_before,
                      files_changed=_digest(store) != before)
        if result["missing"] or result["unexpected"] or result["foreign_changed"] or result["files_changed"] \
                or result["failed_hooks"]:
            raise BenchError(f"flap storm: {result}")
        return result
    finally:
        ns.close()
