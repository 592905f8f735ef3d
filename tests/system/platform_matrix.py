#!/usr/bin/env python3
"""The platform matrix (opt-in, not part of the default run): a fresh Debian 11, 12 and 13, each as a new user has it.

    sudo .venv-tests/bin/python tests/system/platform_matrix.py [bullseye] [bookworm] [trixie] [--report FILE]

For each release: a root filesystem by debootstrap (once per machine, cached like the
system layer's), the wheels its Python needs (`pip download --only-binary=:all:
--python-version X.Y`, then `pip check` inside the target, which evaluates every marker
for the target's own interpreter), a boot with systemd as PID 1 (systemd-nspawn, private
network: the install is offline), and then as an administrator would:

    install --demo --wheels       installs, enables and starts the timer, the demo passes
    the timer                     the service runs apply (Applied routes: in its journal)
    systemd-analyze security      the service's exposure is at most 2.0 on that systemd
    Debian's dispatcher           /etc/ppp/ip-up installs a peer's routes, ip-down removes them
    the panel                     sudo -u www-data l2tp-routectl list --peer X
    apply into a closed pipe      no traceback
    a second install              Nothing to do
    --uninstall                   no unit, no venv, and /etc, /opt, /usr/local as before the install

Prints one line per step and release (PASS/FAIL and what was seen) and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from support import wheelhouse  # noqa: E402
from support.nspawn import Container, rootfs, rootfs_python  # noqa: E402

REPO = TESTS.parent
RELEASES = {"bullseye": "Debian 11", "bookworm": "Debian 12", "trixie": "Debian 13"}
SERVICE = "route-l2tp-apply-all.service"
TIMER = "route-l2tp-apply-all.timer"
INSTALLER = "/src/install-l2tp-per-user-routing.sh"
PEER = "10.255.10.2"
ROUTE = "192.168.20.0/24"
STORE = "/etc/l2tp-manager/routes.d"
WAIT_S = 180
#: What an install may leave behind: nothing under these, once it is uninstalled.
WATCHED = ("/etc", "/opt", "/usr/local")


class StepFailed(Exception):
    pass


def expect(condition: bool, seen: str) -> None:
    if not condition:
        raise StepFailed(seen)


@dataclass
class Result:
    release: str
    versions: dict[str, str] = field(default_factory=dict)
    steps: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(ok for _, ok, _ in self.steps)


def step(result: Result, name: str, action: Callable[[], str]) -> bool:
    started = time.monotonic()
    try:
        detail = action() or ""
        ok = True
    except StepFailed as failure:
        detail, ok = str(failure), False
    except Exception:  # a broken harness is a failed step too, with its traceback
        detail, ok = traceback.format_exc(limit=3), False
    detail = " ".join(detail.split())[:400]
    result.steps.append((name, ok, f"{detail} ({time.monotonic() - started:.0f} s)"))
    print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
    return ok


def tree(box: Container) -> set[str]:
    return set(box.check("find", *WATCHED, "-xdev").split("\n")) - {""}


def tagged(box: Container, ifname: str) -> set[str]:
    return {route["dst"] for route in box.routes("dev", ifname) if route.get("protocol") == "157"}


def run_release(suite: str, scratch: Path) -> Result:
    result = Result(f"{RELEASES[suite]} ({suite})")
    print(f"== {result.release}", flush=True)
    found: dict[str, object] = {}

    def build() -> str:
        started = time.monotonic()
        found["root"] = root = rootfs(suite)
        found["python"] = rootfs_python(root)
        return f"{root} ready after {time.monotonic() - started:.0f} s"

    def wheels() -> str:
        target = scratch / f"wheels-{suite}"
        found["wheels"] = wheelhouse.build_wheels(REPO, target, python_version=str(found["python"]))
        return ", ".join(sorted(p.name.split("-")[0] + " " + p.name.split("-")[1] for p in target.glob("*.whl")))

    if not (step(result, "root filesystem", build) and step(result, "wheels", wheels)):
        return result
    box = Container(found["root"], scratch / f"box-{suite}",
                    binds={"/src": REPO, "/wheels": found["wheels"]})
    try:
        if not step(result, "boot", lambda: f"systemd says {box.boot()}"):
            return result
        run_scenario(box, result)
    finally:
        box.poweroff()
    return result


def run_scenario(box: Container, result: Result) -> None:
    result.versions = {
        "python": box.check("python3", "--version").strip(),
        "iproute2": box.check("ip", "-V").strip(),
        "systemd": box.check("systemctl", "--version").splitlines()[0],
        "debian": box.check("cat", "/etc/debian_version").strip(),
    }
    print(f"  versions: {result.versions}", flush=True)
    before = tree(box)

    def install() -> str:
        done = box.run("bash", INSTALLER, "--demo", "--wheels", "/wheels", timeout=1200)
        lines = done.stdout.splitlines()
        expect(done.returncode == 0, f"exit {done.returncode}: {done.stderr[-600:]}")
        expect("== Demo done: namespace and scratch store removed." in lines, done.stdout[-600:])
        for line in (f"enabled: {TIMER}", f"started: {TIMER}"):
            expect(line in lines, f"no line {line}")
        warnings = [line for line in done.stderr.splitlines() if line.strip()]
        expect(not warnings, "stderr: " + " | ".join(warnings))
        code = "import typer, sh, filelock; print(typer.__version__, sh.__version__, filelock.__version__)"
        versions = box.check("/opt/l2tproute/bin/python3", "-c", code)
        result.versions["typer sh filelock"] = versions.strip()
        return "installed offline, timer enabled and started, demo passed, stderr empty"

    def exposure() -> str:
        text = box.check("systemd-analyze", "security", "--no-pager", SERVICE)
        level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", text)
        expect(bool(level) and float(level[1]) <= 2.0, text[-600:])
        return f"exposure {level[1]}"

    def pip_check() -> str:
        done = box.run("/opt/l2tproute/bin/python3", "-m", "pip", "check")
        expect(done.returncode == 0, done.stdout + done.stderr)
        return done.stdout.strip()

    def timer_fires() -> str:
        lines = box.wait_for(lambda: [line for line in box.journal(SERVICE) if line.startswith("Applied routes:")],
                             WAIT_S, "the timer to run the service")
        expect(box.unit_property(SERVICE, "Result") == "success", "service result " +
               box.unit_property(SERVICE, "Result"))
        return lines[0]

    def dispatcher() -> str:
        box.check("systemctl", "stop", TIMER)  # only the hooks act
        try:
            box.write(f"{STORE}/{PEER}.routes", f"{ROUTE} via {PEER}\n")
            for argv in (("tuntap", "add", "dev", "ppp0", "mode", "tun"),
                         ("addr", "add", "10.254.0.1", "peer", PEER, "dev", "ppp0"), ("link", "set", "ppp0", "up")):
                box.check("ip", *argv)
            box.check("/etc/ppp/ip-up", "ppp0", "/dev/ttyS0", "115200", "10.254.0.1", PEER, "")
            box.wait_for(lambda: tagged(box, "ppp0") == {ROUTE}, WAIT_S, "ip-up to install the route")
            box.check("/etc/ppp/ip-down", "ppp0", "/dev/ttyS0", "115200", "10.254.0.1", PEER, "")
            box.wait_for(lambda: not tagged(box, "ppp0"), WAIT_S, "ip-down to remove the route")
            box.check("/etc/ppp/ip-up", "ppp0", "/dev/ttyS0", "115200", "10.254.0.1", PEER, "")
            box.wait_for(lambda: tagged(box, "ppp0") == {ROUTE}, WAIT_S, "ip-up again")
        finally:
            box.check("systemctl", "start", TIMER)
        return f"ip-up installed {ROUTE} proto 157 on ppp0, ip-down removed it"

    def panel() -> str:
        done = box.run("runuser", "-u", "www-data", "--", "sudo", "-n", "/usr/local/sbin/l2tp-routectl", "list",
                       "--peer", PEER)
        expect(done.returncode == 0, f"exit {done.returncode}: {done.stdout}{done.stderr}")
        expect(done.stdout == f"Routes for peer {PEER}:\n{ROUTE} via {PEER}\n", repr(done.stdout + done.stderr))
        return repr(done.stdout)

    def closed_pipe() -> str:
        done = box.run("sh", "-c", '{ /usr/local/sbin/l2tp-routectl apply; echo "exit $?" >&2; } | true')
        expect("Traceback" not in done.stderr, done.stderr[-600:])
        return done.stderr.strip().splitlines()[-1]

    def second_install() -> str:
        done = box.run("bash", INSTALLER, "--wheels", "/wheels", timeout=1200)
        expect(done.returncode == 0 and done.stderr == "", f"exit {done.returncode}: {done.stderr[-600:]}")
        line = "Nothing to do: l2tproute is already installed and up to date; nothing was changed."
        expect(line in done.stdout.splitlines(), done.stdout[-600:])
        return line

    def uninstall() -> str:
        box.check("/usr/local/sbin/l2tp-routectl", "del", "--peer", PEER, "--dst", "all")
        done = box.run("bash", INSTALLER, "--uninstall", timeout=600)
        expect(done.returncode == 0 and done.stderr == "", f"exit {done.returncode}: {done.stderr[-600:]}")
        for unit in (SERVICE, TIMER):
            expect(box.unit_property(unit, "LoadState") == "not-found", f"{unit} still loaded")
        left = sorted(tree(box) - before)
        gone = sorted(before - tree(box))
        expect(not left and not gone, f"left behind: {left[:10]}; gone: {gone[:10]}")
        return f"units not-found; {', '.join(WATCHED)} as before the install"

    if not step(result, "install --demo --wheels (offline)", install):
        return
    step(result, "pip check (markers for the target Python)", pip_check)
    step(result, "timer runs the service", timer_fires)
    step(result, "systemd-analyze security <= 2.0", exposure)
    step(result, "Debian ip-up/ip-down dispatcher", dispatcher)
    step(result, "list --peer through sudo as www-data", panel)
    step(result, "apply into a closed pipe", closed_pipe)
    step(result, "second install", second_install)
    step(result, "uninstall", uninstall)


def report(results: list[Result]) -> str:
    lines = ["| release | versions | step | result |", "|---|---|---|---|"]
    for res in results:
        versions = "; ".join(f"{key} {value}" for key, value in res.versions.items())
        for index, (name, ok, detail) in enumerate(res.steps):
            lines.append(f"| {res.release if index == 0 else ''} | {versions if index == 0 else ''} | {name} | "
                         f"{'pass' if ok else 'FAIL'}: {detail.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("releases", nargs="*", metavar="RELEASE", help=f"any of {', '.join(RELEASES)} (default: all)")
    parser.add_argument("--report", type=Path, help="also write the results as a Markdown table here")
    args = parser.parse_args()
    unknown = [name for name in args.releases if name not in RELEASES]
    if unknown:
        parser.error(f"unknown release {', '.join(unknown)}: use {', '.join(RELEASES)}")
    scratch = Path(tempfile.mkdtemp(prefix="l2tproute-platforms-"))
    try:
        results = [run_release(suite, scratch) for suite in args.releases or RELEASES]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = report(results)
    print(table)
    if args.report:
        args.report.write_text(table)
    return 0 if all(res.passed for res in results) else 1


if __name__ == "__main__":
    sys.exit(main())
