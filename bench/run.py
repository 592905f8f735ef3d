#!/usr/bin/env python3
"""Benchmarks of issue 4: ours against a baseline measured in the same run, medians over runs.

    python3 bench/run.py --size quick    # CI: small, about a minute (tests/system/test_bench.py)
    python3 bench/run.py --size full     # 2,000 sessions x 5 routes; 10,000 x 5; a 500-hook storm
    python3 bench/run.py --installed     # the installed command instead of this checkout

Run as root: it makes its own network namespaces (deleted at the end) and, for the
panel's sudo call, a private mount namespace; the host's routes and files are never
touched. Prints a markdown table: measure, ours, baseline, ratio, target, pass/fail.
Exit status 1 when the tool gave a wrong result (a missing route, a write in steady
state, a changed file); a missed speed target is reported in the table, not as an error.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import launcher  # noqa: E402
import measures as M  # noqa: E402
import peruser  # noqa: E402
import scale  # noqa: E402
from timing import median  # noqa: E402

from l2tproute.core import constants as C  # noqa: E402


@dataclass(frozen=True)
class Size:
    sessions: int  # connected peers for apply-all, steady state and the hooks
    big_sessions: int  # peers for the large apply-all (the 50,000-route case)
    per_peer: int
    storm: int  # hooks started at once
    panel_runs: int
    page_users: int  # users on the panel's page (2 reads each, and one list)
    page_runs: int
    flappers: int  # sessions going up, down and up in the flap storm
    leavers: int
    reused: int  # link names that pass to another peer
    reps: int  # runs of each apply measure
    hook_runs: int
    loop_sessions: int  # sessions whose routes the naive per-route loop adds
    user_small: int  # sessions of the small server of the per-user measure (issue 16)
    user_big: int  # and of the large one
    user_runs: int


SIZES = {
    "quick": Size(sessions=40, big_sessions=200, per_peer=5, storm=40, panel_runs=15, page_users=10, page_runs=2,
                  flappers=10, leavers=10, reused=4, reps=3, hook_runs=5, loop_sessions=40,
                  user_small=10, user_big=200, user_runs=5),
    "full": Size(sessions=2000, big_sessions=10000, per_peer=5, storm=2000, panel_runs=200, page_users=300,
                 page_runs=3, flappers=500, leavers=500, reused=20, reps=5, hook_runs=15, loop_sessions=2000,
                 user_small=10, user_big=2000, user_runs=7),
}


def _rows(size: Size, tool: launcher.Tool, workdir: str, log) -> list[M.Row]:
    rows: list[M.Row] = []
    n, per = size.sessions, size.per_peer
    routes = n * per

    log("panel: list --peer and a page of the user list through sudo")
    rows += M.panel(tool, workdir, size.panel_runs, size.page_users, size.page_runs)

    rows += peruser.measure(tool, workdir, size.user_small, size.user_big, size.per_peer, size.user_runs, log)

    ns = scale.Namespace("a")
    big = None
    try:
        store = os.path.join(workdir, "store-a")
        scale.write_store(store, range(n), per)
        log(f"setting up {n} sessions")
        ns.add_sessions(range(n))
        log(f"apply-all from empty, {routes} routes, against the raw iproute2 work")
        t = M.apply_from_empty(tool, ns, store, range(n), per, size.reps)
        ours, raw = median(t["ours"]), median(t["raw"])
        rows.append(M.Row(f"apply-all from empty: {n} peers x {per} = {routes} routes", M.sec(ours),
                          f"{M.sec(raw)} (ip -j addr; ip -j route; ip -batch)", f"{ours / raw:.2f}x", "<= 2.0x",
                          ours / raw <= 2.0))

        log(f"per-route ip route add loop, {size.loop_sessions * per} routes")
        loop_sessions = range(min(size.loop_sessions, n))
        loop = M.naive_loop(ns, loop_sessions, per)
        scaled = loop * n / len(loop_sessions)
        rows.append(M.Row(f"reference: per-route `ip route add` loop, {len(loop_sessions) * per} routes", M.sec(ours),
                          M.sec(scaled) + ("" if len(loop_sessions) == n else " (scaled)"), f"{ours / scaled:.2f}x",
                          "-", None))

        log("steady state: apply with nothing to change, under ip monitor route")
        s = M.steady(tool, ns, store, range(n), per, size.reps)
        quiet = median(s["times"])
        lines = len(s["monitor_lines"])
        rows.append(M.Row(f"steady-state apply, {routes} routes installed", M.sec(quiet),
                          f"ip monitor route: {lines} lines", "-", "<= 0.5 s, 0 lines",
                          quiet <= 0.5 and lines == 0))

        run_dir = scale.run_dir(os.path.join(workdir, "run"))
        log(f"ip-up hook with {n} other sessions up")
        hook = M.hook_single(tool, ns, store, run_dir, n, per, size.hook_runs)
        returned, done, arrived = median(hook["returned"]), median(hook["done"]), median(hook["in_kernel"])
        rows.append(M.Row(f"ip-up hook returns to pppd, {n} sessions up", M.ms(returned), "-", "-",
                          "<= 10 ms", returned <= 0.010))
        rows.append(M.Row(f"ip-up hook: 1 peer x {per} routes in the kernel (ip monitor), {n} other sessions up",
                          M.ms(arrived), f"worker gone at {M.ms(done)}", "-", "<= 150 ms", arrived <= 0.150))

        log(f"reconnect storm: {size.storm} ip-up hooks at once")
        storm = M.storm(tool, ns, store, run_dir, range(size.storm), range(n + 1), per, workdir)
        slowest = max(storm["returned"])
        rows.append(M.Row(f"reconnect storm: {size.storm} ip-up hooks at once, every route in", M.sec(storm["done"]),
                          f"{storm['routes']} routes present, 0 files changed", "-", "<= 5 s",
                          storm["done"] <= 5.0))
        rows.append(M.Row("storm: a hook returns to pppd, median (slowest)", M.ms(median(storm["returned"])),
                          f"slowest {M.ms(slowest)}; all started within {M.sec(storm['spawning'])}", "-",
                          "<= 10 ms", median(storm["returned"]) <= 0.010))
        rows.append(M.Row(f"storm memory: peak of the {size.storm} hooks and the worker together, PSS "
                          "(peak RSS of one process)",
                          f"{storm['peak_pss_sum'] / 2**20:.0f} MiB ({storm['max_rss'] / 2**20:.1f} MiB)",
                          "-", "-", "<= 150 MiB", storm["peak_pss_sum"] <= 150 * 2**20))
        ns.close()

        log(f"flap storm: {size.flappers} up-down-up, {size.leavers} down, {size.reused} link names reused")
        flap = M.flap(tool, workdir, os.path.join(workdir, "store-flap"),
                      scale.run_dir(os.path.join(workdir, "run-flap")),
                      size.flappers, size.leavers, size.reused, per)
        rows.append(M.Row(f"flap storm: {flap['links']} links at once", M.sec(flap["done"]),
                          f"{flap['expected']} routes as stored, 0 stale, foreign and files untouched", "-",
                          "exactly the stored routes of the links up",
                          flap["missing"] == flap["unexpected"] == 0 and not flap["files_changed"]))

        bn = size.big_sessions
        log(f"setting up {bn} sessions for {bn * per} routes")
        big = scale.Namespace("b")
        big_store = os.path.join(workdir, "store-b")
        scale.write_store(big_store, range(bn), per)
        big.add_sessions(range(bn))
        log(f"apply-all from empty, {bn * per} routes")
        tb = M.apply_from_empty(tool, big, big_store, range(bn), per, max(1, size.reps - 2))
        large = median(tb["ours"])
        rows.append(M.Row(f"apply-all {bn * per} routes vs {routes}", M.sec(large), M.sec(ours) + f" ({routes})",
                          f"{large / ours:.2f}x", f"<= {5.5 * bn / n / 5:.1f}x", large / ours <= 5.5 * bn / n / 5))
    finally:
        ns.close()
        if big is not None:
            big.close()
    return rows


def _load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def _version_of(python: str) -> str:
    done = subprocess.run([python, "-IS", "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def render(rows: list[M.Row], size_name: str, tool: launcher.Tool, load_before: str) -> str:
    head = ["measure", "ours", "baseline", "ratio", "target", "pass/fail"]
    body = [[r.measure, r.ours, r.baseline, r.ratio, r.target, r.verdict] for r in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    chosen = os.environ.get(C.IP_BINARY_ENV)
    prefix = f"{C.IP_BINARY_ENV}={chosen} " if chosen else ""
    floor_ip = _ip_version("ip")
    lines += ["", f"Reproduce: {prefix}python3 bench/run.py --size {size_name}",
              f"Measured: {tool.what}; {os.cpu_count()} CPUs, Python {_version_of(tool.python)}, "
              f"kernel {platform.release()}; the tool's ip: {_ip_version(chosen) if chosen else floor_ip} "
              f"(the floor's: {floor_ip}); load average (1/5/15 min) {load_before} before, {_load()} after; "
              "medians of runs taken in turn."]
    return "\n".join(lines)


def _ip_version(program: str) -> str:
    done = subprocess.run([program, "-V"], capture_output=True, text=True)
    return done.stdout.strip().replace("ip utility, ", "") or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument("--installed", action="store_true",
                        help="measure the installed /usr/local/sbin/l2tp-routectl and ip-up hook (when present) "
                             "instead of this checkout")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/run.py: error: run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    log = (lambda text: None) if args.quiet else (lambda text: print(f"bench: {text}", file=sys.stderr, flush=True))
    scale.private_mounts()
    workdir = tempfile.mkdtemp(prefix="l2tb-")
    load_before = _load()
    try:
        tool = launcher.prepare(workdir, prefer_installed=args.installed)
        rows = _rows(SIZES[args.size], tool, workdir, log)
    except M.BenchError as exc:
        print(f"bench/run.py: error: {exc}", file=sys.stderr)
        return 1
    finally:
        scale.release_run_dirs()
        shutil.rmtree(workdir, ignore_errors=True)
    print(render(rows, args.size, tool, load_before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
