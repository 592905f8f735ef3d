"""Upgrading a live server from the old bash system under a real systemd (Debian 12, nspawn), and back.

    box      Debian bookworm with systemd as PID 1, private network, the wheels of this checkout in /wheels
    old      the old system as its installer left it, in this file's own words (README: Upgrade from the
             old bash system; ../shared/CONTRACT.md): its tool (apply: one plain `ip route add` per line,
             so proto boot, a route already there reported as "Failed to apply route"), its hooks, sudoers
             and sysctl files, a oneshot service with RemainAfterExit=yes and its timer, enabled and
             started; the timer ran the service once, which put the routes of ppp0 and ppp1 in.
    install  ours with --wheels: the old service, active (exited), is stopped; the timer says when it runs
    hold     a runtime drop-in holds our service in ExecStartPre until the test lets go, so the ip-down
             below comes before the first apply whenever the timer fires
    ip-down  ppp1 (its link kept, as pppd's persist keeps it): the old route of its line goes, an admin's
             route on the link stays; then the session ends (link removed)
    first    the timer's first run takes over ppp0's old routes (Adopted ...)
    rerun    Nothing to do; then the service left active (exited) as an older installer left it: a rerun
             stops it and the timer runs again
    back     --uninstall: the old files as they were, our routes handed back (removed, then added by the
             old apply as proto boot), no "Failed to apply route", its timer firing, the store clean

Each step waits for what systemd or the worker does, with a bound; nothing is timed. The timeline of the
upgrade (install, first timer run, takeover) is printed (pytest -s shows it).
"""

from __future__ import annotations

import calendar
import hashlib
import re
import shutil
import time

import pytest
from conftest import REPO
from support.nspawn import INSTALLER, SERVICE, TIMER, UNIT_DIR, Container, rootfs_or_fail, rootfs_python

from l2tproute.core import constants as C

pytestmark = pytest.mark.system

STORE = C.DEFAULT_STORE_DIR
WAIT_S = 150  # an upper bound for the slowest step on a loaded machine (the timer's period is 60 s)
P, Q = "10.255.10.1", "10.255.10.2"
LOCAL = "10.254.0.1"

#: The old system, file by file: path -> (mode, text).
OLD_TOOL = r"""#!/bin/bash
# The old l2tp-routectl, as far as this test needs it: apply, for every peer or one.
# It finds the peer's pppN by its peer address and adds each line with a plain ip route add.
store=/etc/l2tp-manager/routes.d
apply_peer() {
    local peer=$1 link="" dev dst via gw rest
    if [ ! -f "$store/$peer.routes" ]; then echo "No routes file found for peer: $peer"; return 0; fi
    for dev in /sys/class/net/ppp*; do
        [ -e "$dev" ] || continue
        if ip addr show "${dev##*/}" | grep -q "peer $peer/"; then link=${dev##*/}; break; fi
    done
    if [ -z "$link" ]; then echo "Warning: No PPP interface found for peer $peer."; return 0; fi
    while read -r dst via gw rest; do
        [ -n "$dst" ] || continue
        dev=$link
        case $rest in dev\ *) dev=${rest#dev } ;; esac
        if ip route add "$dst" via "$gw" dev "$dev"; then
            echo "Applied route: $dst via $gw"
        else
            echo "Failed to apply route: $dst via $gw"
        fi
    done <"$store/$peer.routes"
}
if [ "$1" = apply ] && [ "$2" = --peer ]; then
    apply_peer "$3"
elif [ "$1" = apply ]; then
    for file in "$store"/*.routes; do
        [ -f "$file" ] || continue
        peer=${file##*/}
        apply_peer "${peer%.routes}"
    done
else
    echo "this old tool knows apply only"
    exit 1
fi
"""
OLD_SYSTEM = {
    "/usr/local/sbin/l2tp-routectl": ("0755", OLD_TOOL),
    "/etc/ppp/ip-up.d/l2tp-routes": ("0755", '#!/bin/sh\n[ -n "$5" ] && '
                                             '/usr/local/sbin/l2tp-routectl apply --peer "$5"\nexit 0\n'),
    # The old down hook's defect (CONTRACT.md): every route whose text holds "via PEER".
    "/etc/ppp/ip-down.d/l2tp-routes": ("0755", '#!/bin/sh\n[ -n "$5" ] || exit 0\n'
                                               'ip route show | grep "via $5" | while read -r dst rest; do '
                                               'ip route del "$dst" via "$5"; done\nexit 0\n'),
    f"{UNIT_DIR}/{SERVICE}": ("0644", "[Unit]\nDescription=Apply per-user L2TP routes (old)\nAfter=network.target\n\n"
                                      "[Service]\nType=oneshot\nExecStart=/usr/local/sbin/l2tp-routectl apply\n"
                                      "RemainAfterExit=yes\n\n[Install]\nWantedBy=multi-user.target\n"),
    f"{UNIT_DIR}/{TIMER}": ("0644", "[Unit]\nDescription=Apply per-user L2TP routes periodically (old)\n\n"
                                    "[Timer]\nOnBootSec=15\nOnUnitActiveSec=60\n\n[Install]\nWantedBy=timers.target\n"),
    "/etc/sudoers.d/l2tp-routectl": ("0440", "www-data ALL=(root) NOPASSWD: /usr/local/sbin/l2tp-routectl\n"),
    "/etc/sysctl.d/99-l2tp-routing.conf": ("0644", "net.ipv4.ip_forward = 1\nnet.ipv4.conf.ppp*.rp_filter = 2\n"),
}
ROUTE_FILES = {
    P: f"192.168.1.0/24 via {P}\n10.1.0.0/16 via {P} dev ppp0\n",
    Q: f"192.168.2.0/24 via {Q}\n",
}
P_ROUTES = {("192.168.1.0/24", P, "ppp0"), ("10.1.0.0/16", P, "ppp0")}
#: An administrator's route on Q's link, not the old tool's: no down hook of ours may touch it.
ADMIN_ROUTE = ("10.20.0.0/16", "via", Q, "dev", "ppp1", "proto", "static")
HOLD_FILE = "/run/l2t-hold-apply"
HOLD_DROP_IN = f"/run/systemd/system/{SERVICE}.d/50-test-hold.conf"
HOLD_TEXT = f"[Service]\nExecStartPre=/bin/sh -c 'while [ -e {HOLD_FILE} ]; do sleep 0.2; done'\n"
STUCK_DROP_IN = f"/run/systemd/system/{SERVICE}.d/50-test-stuck.conf"


@pytest.fixture(scope="module")
def box(tmp_path_factory, wheel_dirs):
    root = rootfs_or_fail("bookworm")
    scratch = tmp_path_factory.mktemp("upgrade")
    box = Container(root, scratch / "box", binds={"/src": REPO, "/wheels": wheel_dirs(rootfs_python(root))})
    try:
        box.boot()
        yield box
    finally:
        box.poweroff()
        shutil.rmtree(scratch, ignore_errors=True)


def install(box: Container, *args: str):
    return box.run("bash", INSTALLER, *args, timeout=900)


def add_ppp(box: Container, ifname: str, peer: str) -> None:
    """A pppN link as pppd leaves it, made of a tun device (no kernel PPP here)."""
    for argv in (("tuntap", "add", "dev", ifname, "mode", "tun"), ("addr", "add", LOCAL, "peer", peer, "dev", ifname),
                 ("link", "set", ifname, "up")):
        box.check("ip", *argv)


def routes_of(box: Container, *selector: str) -> set[tuple[str, str, str]]:
    """(destination, gateway, link); ip leaves out the link a selector names."""
    named = selector[selector.index("dev") + 1] if "dev" in selector else ""
    return {(r["dst"], r.get("gateway", ""), r.get("dev", named)) for r in box.routes(*selector)}


def usec(box: Container, unit: str, interface: str, name: str) -> int:
    """A unit's property in microseconds, as systemd holds it (0: never, or none)."""
    path = "/org/freedesktop/systemd1/unit/" + re.sub(r"[^A-Za-z0-9]", lambda m: f"_{ord(m[0]):02x}", unit)
    out = box.check("busctl", "get-property", "org.freedesktop.systemd1", path, f"org.freedesktop.systemd1.{interface}",
                    name).split()
    value = int(out[1])
    return 0 if value >= 2**63 else value


def journal_times(box: Container, *argv: str) -> list[tuple[float, str]]:
    """(realtime, message) of this boot's journal lines, of a unit (-u) or an identifier (-t)."""
    out = box.check("journalctl", "-b", "0", "--no-pager", "-o", "short-unix", *argv)
    lines = []
    for line in out.splitlines():
        stamp, _, rest = line.partition(" ")
        if re.fullmatch(r"\d+\.\d+", stamp):
            lines.append((float(stamp), rest.split(": ", 1)[1] if ": " in rest else rest))
    return lines


def digest(box: Container, path: str) -> str:
    return hashlib.sha256(box.check("cat", path).encode()).hexdigest()


@pytest.fixture(scope="module")
def old_system(box):
    """The old system installed and running: files, links up, the timer started and its service run once."""
    add_ppp(box, "ppp0", P)
    add_ppp(box, "ppp1", Q)
    for peer, text in ROUTE_FILES.items():
        box.write(f"{STORE}/{peer}.routes", text)
    for path, (mode, text) in OLD_SYSTEM.items():
        box.write(path, text, mode)
    box.check("systemctl", "daemon-reload")
    box.check("systemctl", "enable", "--quiet", SERVICE, TIMER)
    box.check("systemctl", "start", TIMER)  # its OnBootSec is long past: it starts the service at once
    box.wait_for(lambda: box.unit_property(SERVICE, "SubState") == "exited", WAIT_S, "the old service's run")
    box.wait_for(lambda: usec(box, TIMER, "Timer", "LastTriggerUSec"), WAIT_S, "the old timer's first elapse")
    box.check("ip", "route", "add", *ADMIN_ROUTE)
    return {path: digest(box, path) for path in OLD_SYSTEM}


def test_the_old_system_runs_its_service_once_and_its_timer_then_waits_for_good(box, old_system):
    applied = [m for _, m in journal_times(box, "-u", SERVICE) if m.startswith(("Applied route", "Failed"))]
    assert sorted(applied) == sorted([f"Applied route: 192.168.1.0/24 via {P}", f"Applied route: 10.1.0.0/16 via {P}",
                                      f"Applied route: 192.168.2.0/24 via {Q}"]), applied
    boot = routes_of(box, "table", "main", "proto", "boot")
    assert P_ROUTES | {("192.168.2.0/24", Q, "ppp1")} <= boot
    assert (box.unit_property(SERVICE, "ActiveState"), box.unit_property(SERVICE, "SubState")) == ("active", "exited")
    # The timer fired into a service still active: it waits for it to end, which never comes (NEXT -).
    assert usec(box, TIMER, "Timer", "NextElapseUSecMonotonic") == 0


TIMELINE: dict[str, float] = {}


def test_the_installer_releases_the_old_service_and_says_when_the_timer_takes_the_routes_over(box, old_system):
    box.write(HOLD_FILE, "")
    box.write(HOLD_DROP_IN, HOLD_TEXT)
    TIMELINE["install started"] = time.time()
    result = install(box, "--wheels", "/wheels")
    TIMELINE["install done"] = time.time()
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    print("\n" + "\n".join(result.stdout.splitlines()[-6:]))
    lines = result.stdout.splitlines()
    assert (f"stopped: {SERVICE} (it stayed active (exited) after a run of the old unit, which had "
            "RemainAfterExit=yes, and the timer never starts a unit that is still active)") in lines, result.stdout
    assert f"restarted: {TIMER} (its unit file was replaced)" in lines, result.stdout
    said = [line for line in lines if line.startswith("Next: ")]
    assert len(said) == 1, result.stdout
    takes_over = ("; it takes over the routes the old tool put in the kernel for stored lines (3 routes of the old "
                  "tool on connected links now).")  # ppp0's two, ppp1's one
    assert said[0].endswith(takes_over), said
    when = said[0][:-len(takes_over)]
    match = re.fullmatch(rf"Next: {re.escape(TIMER)} runs the next apply in (\d+) s, at (\d\d):(\d\d):(\d\d) UTC, "
                         r"then every 60 s", when)
    if match:  # the timer is waiting: the time it named, within its period
        assert int(match[1]) <= 60, said
        day = time.gmtime(TIMELINE["install done"])
        stated = calendar.timegm(day[:3] + (int(match[2]), int(match[3]), int(match[4]), 0, 0, 0))
        TIMELINE["stated next run"] = stated if stated > TIMELINE["install started"] - 3600 else stated + 86400
    else:  # it elapsed during the install (the old service's last run was over 60 s before)
        assert when == f"Next: {TIMER} started the next apply just now, then runs it every 60 s", said
        assert box.unit_property(SERVICE, "ActiveState") == "activating"
        TIMELINE["stated next run"] = TIMELINE["install started"]
    assert box.unit_property(SERVICE, "ActiveState") in ("inactive", "activating")
    assert box.unit_property(TIMER, "ActiveState") == "active"


def test_ip_down_before_the_first_apply_removes_the_old_route_of_its_line_and_nothing_else(box, old_system):
    assert box.run("test", "-e", HOLD_FILE).returncode == 0  # no apply has run: it is held
    assert ("192.168.2.0/24", Q, "ppp1") in routes_of(box, "table", "main", "proto", "boot")
    box.check("/etc/ppp/ip-down", "ppp1", "/dev/ttyS1", "115200", LOCAL, Q, "")  # the link stays (persist)
    box.wait_for(lambda: not box.routes("192.168.2.0/24"), WAIT_S, "ip-down to remove the old route of ppp1")
    assert routes_of(box, "dev", "ppp1") == {("10.20.0.0/16", Q, "ppp1"), (Q, "", "ppp1")}  # the admin's; the peer
    assert routes_of(box, "table", "main", "proto", "boot") >= P_ROUTES  # another session's: untouched
    said = [m for _, m in journal_times(box, "-t", C.SYSLOG_IDENT) if m.startswith("ip-down ppp1")]
    assert f"ip-down ppp1 peer {Q}: Released ppp1 of peer {Q}: 1 removed, 0 failed." in said, said
    assert not [m for _, m in journal_times(box, "-u", SERVICE) if m.startswith("Applied routes:")]
    box.check("ip", "link", "del", "ppp1")  # the session ends


def test_the_timer_runs_our_apply_within_its_period_and_takes_the_old_routes_over(box, old_system):
    box.wait_for(lambda: usec(box, TIMER, "Timer", "LastTriggerUSec") > TIMELINE["install started"] * 1e6, WAIT_S,
                 "the timer's first elapse after the install")
    TIMELINE["first timer run"] = usec(box, TIMER, "Timer", "LastTriggerUSec") / 1e6
    # What the installer said is true: not before the time it named (systemd's, rounded down to the second).
    assert TIMELINE["first timer run"] >= TIMELINE["stated next run"], TIMELINE
    TIMELINE["hold released"] = time.time()
    box.check("rm", HOLD_FILE, HOLD_DROP_IN)
    adopted = f"Adopted route for peer {P}: 192.168.1.0/24 via {P} (installed by the old tool, now tagged proto 157)"
    box.wait_for(lambda: adopted in [m for _, m in journal_times(box, "-u", SERVICE)], WAIT_S, "the takeover")
    TIMELINE["takeover"] = next(t for t, m in journal_times(box, "-u", SERVICE) if m == adopted)
    box.check("systemctl", "daemon-reload")
    assert routes_of(box, "proto", str(C.RT_PROTO)) == P_ROUTES
    assert not routes_of(box, "table", "main", "proto", "boot") & P_ROUTES
    summary = [m for _, m in journal_times(box, "-u", SERVICE) if m.startswith("Applied routes:")]
    assert summary[0].endswith("0 installed, 0 updated, 2 adopted, 0 removed, 0 unchanged, 0 blocked, 0 failed."), \
        summary
    start = TIMELINE["install done"]
    print("\nupgrade timeline (s after the install finished; wall clock UTC):")
    for name, at in sorted(TIMELINE.items(), key=lambda item: item[1]):
        print(f"  {name:18} {at - start:+7.1f} s  {time.strftime('%H:%M:%S', time.gmtime(at))}")


def test_a_rerun_has_nothing_to_do_and_repairs_a_service_left_active(box, old_system):
    again = install(box, "--wheels", "/wheels")
    assert (again.returncode, again.stderr) == (0, ""), again.stdout + again.stderr
    lines = again.stdout.splitlines()
    assert "Nothing to do: l2tproute is already installed and up to date; nothing was changed." in lines
    assert [line for line in lines if re.fullmatch(rf"Next: {re.escape(TIMER)} runs the next apply in \d+ s, at "
                                                   r"\d\d:\d\d:\d\d UTC, then every 60 s\.", line)], again.stdout

    # As an installer before this one left it: our service active (exited), the timer stuck (NEXT -).
    box.write(STUCK_DROP_IN, "[Service]\nRemainAfterExit=yes\n")
    box.check("systemctl", "daemon-reload")
    box.wait_for(lambda: box.unit_property(SERVICE, "SubState") == "exited", WAIT_S, "a run that stays active")
    box.check("rm", STUCK_DROP_IN)
    box.check("systemctl", "daemon-reload")
    box.wait_for(lambda: usec(box, TIMER, "Timer", "NextElapseUSecMonotonic") == 0, WAIT_S, "the timer to get stuck")
    before = time.time()
    repaired = install(box, "--wheels", "/wheels")
    assert (repaired.returncode, repaired.stderr) == (0, ""), repaired.stdout + repaired.stderr
    lines = repaired.stdout.splitlines()
    assert [line for line in lines if line.startswith(f"stopped: {SERVICE} (it stayed active (exited)")], lines
    assert "Done: 1 changes. Route files were not touched." in lines, repaired.stdout
    # Unstuck: the timer is armed again (NEXT set) or has already fired since the repair began.
    # Waiting for the run itself would add up to a whole period; the earlier test saw runs happen.
    box.wait_for(lambda: usec(box, TIMER, "Timer", "NextElapseUSecMonotonic") != 0
                 or usec(box, TIMER, "Timer", "LastTriggerUSec") > before * 1e6, WAIT_S,
                 "the timer to be armed again after the repair")
    assert box.unit_property(SERVICE, "SubState") != "exited"


def test_uninstall_hands_the_routes_back_to_the_old_system_whose_timer_fires_without_a_failed_apply(box, old_system):
    route_files = {peer: digest(box, f"{STORE}/{peer}.routes") for peer in ROUTE_FILES}
    assert box.run("test", "-e", f"{STORE}/.l2tproute.lock").returncode == 0
    started = time.time()
    result = install(box, "--uninstall")
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    print("\n" + result.stdout)
    lines = result.stdout.splitlines()
    assert (f"handed back: 2 of 2 routes to the old tool: removed, then added again by its apply just now as it adds "
            f"them (proto boot, table main; journalctl -u {SERVICE})") in lines, result.stdout
    assert f"removed: {STORE}/.l2tproute.lock" in lines, result.stdout
    assert f"kept: {STORE} (route files are never removed)" in lines
    assert {path: digest(box, path) for path in OLD_SYSTEM} == old_system
    assert {peer: digest(box, f"{STORE}/{peer}.routes") for peer in ROUTE_FILES} == route_files
    assert box.check("ls", "-A", STORE).split() == sorted(f"{peer}.routes" for peer in ROUTE_FILES)
    assert routes_of(box, "table", "all", "proto", str(C.RT_PROTO)) == set()
    assert routes_of(box, "table", "main", "proto", "boot") >= P_ROUTES
    since = [(t, m) for t, m in journal_times(box, "-u", SERVICE) if t >= started]
    assert sorted(m for _, m in since if m.startswith(("Applied route", "Failed"))) == sorted(
        [f"Applied route: 192.168.1.0/24 via {P}", f"Applied route: 10.1.0.0/16 via {P}"]), since
    assert (box.unit_property(SERVICE, "SubState"), box.unit_property(SERVICE, "Result")) == ("exited", "success")
    assert box.run("systemctl", "is-enabled", SERVICE, TIMER).stdout.split() == ["enabled", "enabled"]
    assert box.unit_property(TIMER, "ActiveState") == "active"
    box.wait_for(lambda: usec(box, TIMER, "Timer", "LastTriggerUSec") > started * 1e6, WAIT_S,
                 "the old timer to fire")
    assert not [m for t, m in journal_times(box, "-u", SERVICE) if t >= started and m.startswith("Failed")]
