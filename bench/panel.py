"""The panel's call, `sudo l2tp-routectl list --peer IP`, against the bash baseline, both through sudo.

Under sudo the tool reads only /etc/l2tp-manager/routes.d (L2TP_ROUTES_DIR is ignored
there, on purpose), so run.py starts this script in a private mount namespace
(`unshare --mount --propagation private`): /etc gets a throwaway overlay and the
benchmark's store is bind-mounted on routes.d. Nothing outside this process changes.
Prints one JSON document: the times of every run, in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import interleaved  # noqa: E402

STORE = "/etc/l2tp-manager/routes.d"
BASH_LIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "old_list.sh")


def _mount_store(store: str, scratch: str) -> None:
    upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
    os.makedirs(upper)
    os.makedirs(work)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir=/etc,upperdir={upper},workdir={work}",
                    "/etc"], check=True)
    os.makedirs(STORE, exist_ok=True)
    subprocess.run(["mount", "--bind", store, STORE], check=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--routectl", required=True)
    parser.add_argument("--python", required=True)
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
    print(json.dumps({"times": times, "same_output": same,
                      "ours_output": outputs["ours"].stdout.decode(errors="replace"),
                      "ours_stderr": outputs["ours"].stderr.decode(errors="replace")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
