#!/usr/bin/env python3
"""The OpenVPN client-connect hook's synchronous time alone, as OpenVPN 2.4 waits for it.

    python3 bench/openvpn_hook.py --users 2000 --runs 500

Run as root. A scratch store and chap-secrets of USERS users (each one route line), root's
precompute of them (l2tproute/transports/openvpn/iroutes.py), then this checkout's
bin/l2tp-routes-openvpn run RUNS times as OpenVPN runs it: as nobody:www-data, with nothing
but OpenVPN's variables, a fresh client config file each time, a different user each run.
Each run is timed from before the fork to after the wait (what the server waits for). Prints
median, 90th percentile and max in ms, and the load average; nothing outside a temporary
directory is touched (no kick: the hook's kick path does not exist there).
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from l2tproute.system.store import Store  # noqa: E402
from l2tproute.transports.openvpn.iroutes import IROUTES, Precompute  # noqa: E402

TIMER = """
import json, subprocess, sys, time
spans = []
for config, env in json.load(sys.stdin):
    start = time.perf_counter()
    subprocess.run([sys.argv[1], config], env=env, check=True)
    spans.append((time.perf_counter() - start) * 1000)
print(json.dumps(spans))
"""


def as_server() -> None:
    """In the child before exec: the server's user and group, no other groups (Python 3.8 has no
    subprocess user=)."""
    os.setgroups([])
    os.setgid(grp.getgrnam("www-data").gr_gid)
    os.setuid(pwd.getpwnam("nobody").pw_uid)


def name(i: int, dotted: bool) -> str:
    return f"user{'.' if dotted else ''}{i:05d}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--dotted", action="store_true",
                        help="user names with a dot (user.00001): the hook encodes them byte by byte")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("openvpn_hook.py: error: run as root (the hook runs as nobody:www-data)")
    root = Path(tempfile.mkdtemp(prefix="l2t-hook-"))
    try:
        root.chmod(0o755)
        store, run = root / "routes.d", root / "run"
        store.mkdir()
        (run / "spool").mkdir(parents=True)
        shutil.chown(run / "spool", "root", "www-data")
        (run / "spool").chmod(0o1770)
        (run / IROUTES).mkdir()
        shutil.chown(run / IROUTES, "root", "www-data")
        (run / IROUTES).chmod(0o2750)
        lines = []
        for i in range(args.users):
            high, low = divmod(i, 250)
            peer = f"10.254.{high}.{low + 1}"
            lines.append(f"{name(i, args.dotted)} * pw {peer}\n")
            (store / f"{peer}.routes").write_text(f"10.{100 + high}.{low + 1}.0/24 via {peer}\n")
        chap = root / "chap-secrets"
        chap.write_text("".join(lines))
        began = time.monotonic()
        Precompute(str(run), Store(str(store)), str(chap)).refresh(force=True)
        precompute_s = time.monotonic() - began
        hook = root / "l2tp-routes-openvpn"
        text = (REPO / "bin" / "l2tp-routes-openvpn").read_text()
        text = text.replace("LIB=/opt/l2tproute/libexec/l2tproute.sh", f"LIB={REPO / 'lib' / 'l2tproute.sh'}")
        hook.write_text(text.replace("KICK=/opt/l2tproute/libexec/l2tp-routes-kick", f"KICK={root / 'no-kick'}"))
        hook.chmod(0o755)
        work = root / "tmp"
        work.mkdir()
        shutil.chown(work, "nobody", "www-data")
        calls = []
        for n in range(args.runs):
            config = work / f"cc-{n}"
            config.write_text("")
            shutil.chown(config, "nobody", "www-data")
            calls.append([str(config), {"script_type": "client-connect", "dev": "tun0",
                                        "ifconfig_pool_remote_ip": "10.10.30.2",
                                        "username": name(n % args.users, args.dotted), "L2TP_RUN_DIR": str(run),
                                        "L2TP_CHAP_SECRETS": str(chap)}])
        # The timing loop runs as the server's user itself, so each hook starts as OpenVPN starts
        # it (a plain fork and exec), not through a Python child that changes its user first.
        # The system's python3: nobody may not run an interpreter under /root (pyenv).
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        done = subprocess.run([python, "-I", "-c", TIMER, str(hook)], input=json.dumps(calls), text=True,
                              capture_output=True, preexec_fn=as_server, check=True)
        spans = sorted(json.loads(done.stdout))
        for config, _ in calls:
            if os.path.getsize(config) == 0:
                raise SystemExit(f"openvpn_hook.py: error: {config} got no iroute")
        figures = {"users": args.users, "runs": args.runs, "precompute_s": round(precompute_s, 3),
                   "median_ms": round(statistics.median(spans), 2), "p90_ms": round(spans[int(len(spans) * 0.9)], 2),
                   "max_ms": round(spans[-1], 2), "events": len(os.listdir(run / "spool")),
                   "load": "/".join(f"{v:.1f}" for v in os.getloadavg())}
        kind = " (dotted names)" if args.dotted else ""
        print(f"hook, {args.runs} connects of {args.users} users{kind}: median {figures['median_ms']} ms, 90% "
              f"{figures['p90_ms']} ms, max {figures['max_ms']} ms; {figures['events']} events spooled; precompute "
              f"of every user {figures['precompute_s']} s; load average {figures['load']}")
        if args.json:
            print(json.dumps(figures))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
