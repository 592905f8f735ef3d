"""The panel's calls through sudo, ours against the old bash tool's: one `list --peer IP`, and a page.

A page of USERS users is what the panel's user list runs on every load: `list --peer IP`
twice per user row and one `list` (601 calls for 300 users), one after the other.

Under sudo the tool reads only /etc/l2tp-manager/routes.d (L2TP_ROUTES_DIR is ignored
there, on purpose), so run.py starts this script in a private mount namespace
(`unshare --mount --propagation private`): /etc gets a throwaway overlay, the
benchmark's store is bind-mounted on routes.d and the settings file is the installer's
(a single call is also timed without it). Nothing outside this process changes.
Prints one JSON document: the times of every run, in seconds.

"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import interleaved  # noqa: E402

STORE = "/etc/l2tp-manager/routes.d"
SETTINGS = "/etc/l2tp-manager/l2tproute.conf"
#: What the installer writes there (its comments left out): every installed box has one, and
#: under sudo the front answers `list --peer` only after checking it as the Python CLI would.
INSTALLED_SETTINGS = "panel_users = www-data\nmin_prefix = 8\nmin_prefix6 = 32\n"
BASH_LIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "old_list.sh")


def _mount_store(store: str, scratch: str) -> None:
    upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
    os.makedirs(upper)
    os.makedirs(work)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir=/etc,upperdir={upper},workdir={work}",
                    "/etc"], check=True)
    os.makedirs(STORE, exist_ok=True)
    subprocess.run(["mount", "--bind", store, STORE], check=True)
    with open(SETTINGS, "w") as handle:  # as installed, whatever this host's /etc has
        handle.write(INSTALLED_SETTINGS)
    os.chmod(SETTINGS, 0o644)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--routectl", required=True)
    parser.add_argument("--python", required=True)
    parser.add_argument("--page-peers", required=True, help="the users of one page, comma-separated")
    parser.add_argument("--page-runs", type=int, required=True)
    args = parser.parse_args()
    _mount_store(args.store, args.scratch)
    sudo = ["sudo", "-n", "-u", "root"]
    commands = {
        "ours": sudo + [args.routectl, "list", "--peer", args.peer],
        "bash": sudo + [BASH_LIST, "list", "--peer", args.peer],
        "bare": sudo + [args.python, "-IS", "-c", "pass"],
    }
    outputs = {name: subprocess.run(argv, capture_output=True) for name, argv in commands.items()}
    same = outputs["ours"].stdout == outputs["bash"].stdout and outputs["ours"].returncode == 0
    times = interleaved(commands, args.runs)
    os.unlink(SETTINGS)  # the same without the settings file (a box set up by hand): what checking it costs
    unset = interleaved({name: commands[name] for name in ("ours", "bash")}, args.runs)
    with open(SETTINGS, "w") as handle:
        handle.write(INSTALLED_SETTINGS)
    peers = args.page_peers.split(",")
    pages = {"ours": _page(sudo + [args.routectl], peers), "bash": _page(sudo + [BASH_LIST], peers)}
    # The old tool listed the files in glob order, ours in address order: the same lines.
    page_same = pages["ours"][:-1] == pages["bash"][:-1] and \
        sorted(pages["ours"][-1].splitlines()) == sorted(pages["bash"][-1].splitlines())
    page_times = {name: [] for name in pages}
    for _ in range(args.page_runs):
        for name, program in (("ours", args.routectl), ("bash", BASH_LIST)):
            start = time.perf_counter()
            _page(sudo + [program], peers)
            page_times[name].append(time.perf_counter() - start)
    print(json.dumps({"times": times, "without_settings": unset, "same_output": same, "page_times": page_times,
                      "page_same": page_same,
                      "page_calls": 2 * len(peers) + 1,
                      "ours_output": outputs["ours"].stdout.decode(errors="replace"),
                      "ours_stderr": outputs["ours"].stderr.decode(errors="replace")}))
    return 0


def _page(program: list[str], peers: list[str]) -> list[bytes]:
    """What the panel's user list runs, in its order: each row's two reads, then the list."""
    outputs = []
    for peer in peers:
        for _ in range(2):
            outputs.append(subprocess.run([*program, "list", "--peer", peer], capture_output=True).stdout)
    outputs.append(subprocess.run([*program, "list"], capture_output=True).stdout)
    return outputs


if __name__ == "__main__":
    sys.exit(main())
