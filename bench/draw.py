#!/usr/bin/env python3
"""Pictures of what the bench measures (issue 28), for docs/performance.md.

    python3 bench/draw.py                      # measure, then draw: about 5 minutes, as root
    python3 bench/draw.py --redraw             # draw again from docs/performance-data.json
    python3 bench/draw.py --sizes 1000,5000    # other sizes (routes; 5 per session)

apply-vs-routes.png: apply-all from empty (no tagged route installed) against the number of
routes, ours beside the iproute2 floor measured in the same run (`ip -j addr show`, `ip -j route
show proto 157`, one `ip -force -batch -` of the same routes; bench/measures.py), medians of
runs taken in turn. storm.png: a reconnect storm of --storm ip-up hooks started at once (each
session 5 routes), the routes in the kernel over time (`ip monitor route` in the sessions'
namespace) beside the hooks started and returned. The data goes to docs/performance-data.json;
the pictures are drawn from it, so --redraw draws them again without measuring. Needs matplotlib
(pip install '.[bench]').
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import launcher  # noqa: E402
import measures as M  # noqa: E402
import scale  # noqa: E402
from timing import median, run_timed  # noqa: E402

DOCS = os.path.join(os.path.dirname(HERE), "docs")
DATA = os.path.join(DOCS, "performance-data.json")
PER_PEER = 5


class RouteCounter:
    """`ip monitor route` in a namespace: the time (perf_counter) of every route of ours added or deleted."""

    def __init__(self, ns: scale.Namespace):
        self.events: list[tuple[float, int]] = []
        self._proc = subprocess.Popen(["ip", "-N", "-n", ns.name, "monitor", "route"], stdout=subprocess.PIPE,
                                      text=True, bufsize=1)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(0.3)  # listening before the first hook starts

    def _read(self) -> None:
        for line in self._proc.stdout:
            if " proto 157" in line or " proto l2tproute" in line:
                self.events.append((time.perf_counter(), -1 if line.startswith("Deleted") else 1))

    def close(self) -> list[tuple[float, int]]:
        time.sleep(0.3)
        self._proc.terminate()
        self._proc.wait()
        self._thread.join(timeout=5)
        return self.events


def measure_sizes(tool: launcher.Tool, workdir: str, sizes: list[int], reps: int, log) -> list[dict]:
    found = []
    for routes in sizes:
        sessions = range(routes // PER_PEER)
        ns = scale.Namespace(f"d{routes}")
        try:
            store = os.path.join(workdir, f"store-{routes}")
            scale.write_store(store, sessions, PER_PEER)
            log(f"{routes} routes: {len(sessions)} sessions up, apply from empty against the floor")
            ns.add_sessions(sessions)
            times = M.apply_from_empty(tool, ns, store, sessions, PER_PEER, reps)
            found.append({"routes": routes, "ours": median(times["ours"]), "floor": median(times["raw"]),
                          "ours_runs": times["ours"], "floor_runs": times["raw"]})
        finally:
            ns.close()
    return found


def measure_storm(tool: launcher.Tool, workdir: str, hooks: int, log) -> dict:
    ns = scale.Namespace("dstorm")
    try:
        store = os.path.join(workdir, "store-storm")
        scale.write_store(store, range(hooks), PER_PEER)
        log(f"storm: {hooks} sessions with their routes, then all reconnect at once")
        ns.add_sessions(range(hooks))
        run_timed([tool.routectl, "apply", "--netns", ns.name], {**os.environ, **scale.store_env(store)})
        counter = RouteCounter(ns)
        try:
            # measures.storm drops the sessions (the kernel takes their routes with the links), adds them again.
            run_dir = scale.run_dir(os.path.join(workdir, "run-storm"))
            result = M.storm(tool, ns, store, run_dir, range(hooks), range(hooks), PER_PEER, workdir)
        finally:
            events = counter.close()
    finally:
        ns.close()
    start = result["started"]
    return {"hooks": hooks, "routes": hooks * PER_PEER, "done": result["done"], "spawning": result["spawning"],
            "returned_median": median(result["returned"]), "returned_slowest": max(result["returned"]),
            "peak_pss_mib": result["peak_pss_sum"] / 2**20,
            # The storm's routes: all in by `done`; later ones are of the storm again that measures.storm
            # runs for the memory.
            "routes_in": steps(sorted(t - start for t, sign in events if sign > 0 and t - start <= result["done"]))}


def steps(times: list[float]) -> list[list[float]]:
    """[seconds, routes in by then] at each millisecond a route came in: the curve, in little space."""
    found: list[list[float]] = []
    for count, at in enumerate(times, 1):
        at = round(at, 3)
        if found and found[-1][0] == at:
            found[-1][1] = count
        else:
            found.append([at, count])
    return found


def draw(data: dict, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    sizes = data["sizes"]
    if sizes:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        routes = [s["routes"] for s in sizes]
        ax.plot(routes, [s["ours"] for s in sizes], "o-", label="l2tp-routectl apply (from empty)")
        ax.plot(routes, [s["floor"] for s in sizes], "s--", label="iproute2 floor: ip -j addr; ip -j route; ip -batch")
        ax.plot(routes, [2 * s["floor"] for s in sizes], ":", color="grey", label="2.0x the floor (target)")
        ax.set_xlabel("routes (5 per session)")
        ax.set_ylabel("seconds (median)")
        ax.set_title("apply-all from empty against the number of routes")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(out, "apply-vs-routes.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    storm = data.get("storm")
    if storm:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        ins = storm["routes_in"]
        ax.step([at for at, _ in ins], [count for _, count in ins], where="post",
                label=f"routes in the kernel (of {storm['routes']})")
        ax.axvline(storm["spawning"], color="grey", linestyle=":", label=f"last of {storm['hooks']} hooks started")
        ax.axvline(storm["done"], color="black", linestyle="--", label=f"worker done: {storm['done']:.2f} s")
        ax.set_xlim(left=0)
        ax.set_xlabel("seconds since the first hook started")
        ax.set_ylabel("routes in")
        ax.set_title(f"{storm['hooks']} ip-up hooks at once; a hook returns in "
                     f"{storm['returned_median'] * 1000:.1f} ms (median)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        path = os.path.join(out, "storm.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,2000,5000,10000,20000,50000", help="routes, comma-separated")
    parser.add_argument("--storm", type=int, default=2000, help="hooks at once (0: no storm)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--redraw", action="store_true", help="draw from the saved data, measure nothing")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--out", default=DOCS)
    args = parser.parse_args()
    if not args.redraw:
        if os.geteuid() != 0:
            print("bench/draw.py: error: run as root (it creates network namespaces), or use --redraw",
                  file=sys.stderr)
            return 2
        log = lambda text: print(f"draw: {text}", file=sys.stderr, flush=True)  # noqa: E731
        scale.private_mounts()
        workdir = tempfile.mkdtemp(prefix="l2tdraw-")
        try:
            tool = launcher.prepare(workdir)
            sizes = [int(x) for x in args.sizes.split(",") if x]
            data = {"what": tool.what, "load_before": os.getloadavg()[0],
                    "sizes": measure_sizes(tool, workdir, sizes, args.reps, log),
                    "storm": measure_storm(tool, workdir, args.storm, log) if args.storm else None}
            data["load_after"] = os.getloadavg()[0]
        except M.BenchError as exc:
            print(f"bench/draw.py: error: {exc}", file=sys.stderr)
            return 1
        finally:
            scale.release_run_dirs()
            shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(os.path.dirname(args.data) or ".", exist_ok=True)
        with open(args.data, "w") as handle:
            json.dump(data, handle, separators=(",", ":"))
            handle.write("\n")
    with open(args.data) as handle:
        data = json.load(handle)
    for path in draw(data, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
