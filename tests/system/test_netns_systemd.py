"""pppd in network namespaces under a real systemd: Debian 12 booted in systemd-nspawn, installed
from wheels, l2tproute-worker.path starting the sandboxed worker.

    isp, isp2   named namespaces (`ip netns add`), each with a ppp0 of its own peer
    host        the box's own namespace, with a ppp0 of a third peer

`ip netns exec NS /etc/ppp/ip-up ...` (Debian's dispatcher, as pppd runs it there): the worker,
started by systemd in the host's namespace, enters NS and installs exactly NS's routes; ip-down
removes them; the host's stay. A burst of the three (path unit stopped while they spool, then
started: one worker) is applied each in its own. Without the path unit (as where systemd does not
run) the hook starts the worker itself, in its namespace. An upgrade moves the OpenVPN session
records of the version before into the host's directory, and the installer's demo leaves the
host's session and its route alone. The worker's exposure is at most 2.0.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import REPO
from support.nspawn import INSTALLER, TIMER, Container, rootfs_or_fail, rootfs_python

from l2tproute.core import constants as C

pytestmark = pytest.mark.system

WORKER = "l2tproute-worker.service"
PATH_UNIT = "l2tproute-worker.path"
STORE = C.DEFAULT_STORE_DIR
WAIT_S = 120  # a bound on waiting, never a timed assertion
PEERS = {"": "10.255.30.1", "isp": "10.255.30.2", "isp2": "10.255.30.3"}
LANS = {"": "192.168.80.0/24", "isp": "192.168.81.0/24", "isp2": "192.168.82.0/24"}


@pytest.fixture(scope="module")
def box(tmp_path_factory, wheel_dirs):
    root = rootfs_or_fail("bookworm")
    scratch = tmp_path_factory.mktemp("netns-systemd")
    box = Container(root, scratch / "box", binds={"/src": REPO, "/wheels": wheel_dirs(rootfs_python(root))},
                    nspawn_args=("--bind=/dev/net/tun",))
    try:
        box.boot()
        result = box.run("bash", INSTALLER, "--wheels", "/wheels", timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        box.check("systemctl", "stop", TIMER)  # only the hooks act here
        for ns, peer in PEERS.items():
            if ns:
                box.check("ip", "netns", "add", ns)
                box.check("ip", "-n", ns, "link", "set", "lo", "up")
            box.write(f"{STORE}/{peer}.routes", f"{LANS[ns]} via {peer}\n")
            for argv in (("tuntap", "add", "dev", "ppp0", "mode", "tun"),
                         ("addr", "add", "10.254.0.1", "peer", peer, "dev", "ppp0"), ("link", "set", "ppp0", "up")):
                box.check("ip", *(("-n", ns) if ns else ()), *argv)
        yield box
    finally:
        box.poweroff()
        shutil.rmtree(scratch, ignore_errors=True)


def tagged(box: Container, ns: str) -> set[tuple[str, str, str]]:
    out = box.check("ip", *(("-n", ns) if ns else ()), "-j", "-N", "route", "show", "proto", str(C.RT_PROTO)).strip()
    return {(r["dst"], r.get("gateway", ""), r["dev"]) for r in (json.loads(out) if out else [])}


def wanted(ns: str) -> set[tuple[str, str, str]]:
    return {(LANS[ns], PEERS[ns], "ppp0")}


def dispatch(box: Container, direction: str, ns: str) -> None:
    """Debian's /etc/ppp/ip-up or ip-down as pppd runs it, inside namespace `ns` ('' for the host)."""
    argv = [f"/etc/ppp/ip-{direction}", "ppp0", "/dev/ttyS1", "115200", "10.254.0.1", PEERS[ns], ""]
    box.check(*(("ip", "netns", "exec", ns) if ns else ()), "env", "-i", *argv)


def test_ip_up_in_a_named_namespace_installs_there_and_ip_down_removes_only_those(box):
    dispatch(box, "up", "")
    box.wait_for(lambda: tagged(box, "") == wanted(""), WAIT_S, "the host's routes")
    dispatch(box, "up", "isp")
    box.wait_for(lambda: tagged(box, "isp") == wanted("isp"), WAIT_S, "isp's routes")
    assert tagged(box, "") == wanted("") and tagged(box, "isp2") == set()
    rp = box.check("ip", "netns", "exec", "isp", "cat", "/proc/sys/net/ipv4/conf/ppp0/rp_filter").split()
    assert rp == ["2"]
    dispatch(box, "down", "isp")
    box.wait_for(lambda: tagged(box, "isp") == set(), WAIT_S, "isp's routes to go")
    assert tagged(box, "") == wanted("")
    log = box.journal(identifier="l2tp-routectl")
    assert not [line for line in log if "refused" in line or "not handled" in line], log
    assert box.unit_property(WORKER, "Result") == "success"


def test_a_burst_of_two_namespaces_and_the_host_is_applied_each_in_its_own(box):
    dispatch(box, "down", "")
    box.wait_for(lambda: tagged(box, "") == set(), WAIT_S, "the host's routes to go")
    box.check("systemctl", "stop", PATH_UNIT)
    try:
        for ns in PEERS:
            dispatch(box, "up", ns)
        spooled = box.check("ls", "/run/l2tproute/spool").split()
        assert len(spooled) == 3 and len({name.split(",")[0] for name in spooled}) == 3, spooled
    finally:
        box.check("systemctl", "start", PATH_UNIT)
    for ns in PEERS:
        box.wait_for(lambda ns=ns: tagged(box, ns) == wanted(ns), WAIT_S, f"the routes of {ns or 'the host'}")
    box.wait_for(lambda: not box.check("ls", "/run/l2tproute/spool").split(), WAIT_S, "the spool to drain")
    assert box.unit_property(WORKER, "Result") == "success"


def test_without_the_path_unit_the_hook_starts_the_worker_in_its_namespace(box):
    """As where systemd does not run: the hook sees no l2tproute-worker.path and starts the worker
    itself, inside pppd's namespace; it applies there and leaves the host's and isp's routes alone."""
    unit = f"/etc/systemd/system/{PATH_UNIT}"
    before = {ns: tagged(box, ns) for ns in ("", "isp")}
    box.check("systemctl", "stop", PATH_UNIT)
    box.check("mv", unit, "/root/path-unit.saved")
    try:
        dispatch(box, "down", "isp2")  # the burst's routes of isp2 go first
        box.wait_for(lambda: tagged(box, "isp2") == set(), WAIT_S, "isp2's routes to go")
        dispatch(box, "up", "isp2")
        box.wait_for(lambda: tagged(box, "isp2") == wanted("isp2"), WAIT_S, "isp2's routes")
        box.wait_for(lambda: not box.check("ls", "/run/l2tproute/spool").split(), WAIT_S, "the spool to drain")
        assert {ns: tagged(box, ns) for ns in ("", "isp")} == before
    finally:
        box.check("mv", "/root/path-unit.saved", unit)
        box.check("systemctl", "start", PATH_UNIT)


APPLY = "route-l2tp-apply-all.service"
VPN_PEER, VPN_LAN, CLIENT = "10.255.30.9", "192.168.89.0/24", "10.10.40.2"


def test_the_demo_leaves_the_hosts_openvpn_session_and_its_route_alone(box):
    """A client of the host's OpenVPN server (its tun and session record, as the worker leaves them;
    OpenVPN itself does not answer here, so the timer keeps a record whose tun exists). The installer's
    demo applies in its scratch namespace with this system's run dir."""
    for argv in (("tuntap", "add", "dev", "tun7", "mode", "tun"), ("addr", "add", "10.10.40.1/24", "dev", "tun7"),
                 ("link", "set", "tun7", "up")):
        box.check("ip", *argv)
    box.write(f"{STORE}/{VPN_PEER}.routes", f"{VPN_LAN} via {VPN_PEER}\n")
    host = box.check("stat", "-L", "-c", "%d-%i", "/proc/self/ns/net").strip()
    record = f"/run/l2tproute/openvpn/{host}/tun7,{CLIENT}"
    # Written where the version before kept it: an install (the upgrade) moves it into the host's directory.
    box.write(f"/run/l2tproute/openvpn/tun7,{CLIENT}", f"{VPN_PEER}\n")
    upgrade = box.run("bash", INSTALLER, "--wheels", "/wheels", timeout=900)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert f"moved: 1 OpenVPN session records into /run/l2tproute/openvpn/{host} (this namespace's)" in \
        upgrade.stdout.splitlines(), upgrade.stdout

    def via_client() -> set:
        return {r["dst"] for r in box.routes("dev", "tun7") if r.get("gateway") == CLIENT}

    box.check("systemctl", "start", APPLY)
    assert box.check("ls", "/run/l2tproute/openvpn").split() == [host]
    assert box.run("test", "-f", record).returncode == 0
    assert via_client() == {VPN_LAN}
    demo = box.run("bash", INSTALLER, "--wheels", "/wheels", "--demo", timeout=900)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "== Demo done: namespace and scratch store removed." in demo.stdout
    assert box.run("test", "-f", record).returncode == 0, "the demo dropped the host's session record"
    assert via_client() == {VPN_LAN}
    box.check("systemctl", "start", APPLY)  # the timer's apply
    assert box.run("test", "-f", record).returncode == 0
    assert via_client() == {VPN_LAN}


def test_the_worker_exposure_is_at_most_2_0(box):
    report = box.check("systemd-analyze", "security", "--no-pager", WORKER)
    level = re.search(rf"Overall exposure level for {re.escape(WORKER)}: (\d+\.\d+)", report)
    assert level, report
    print(f"exposure of {WORKER} on Debian 12: {level[1]}")
    assert float(level[1]) <= 2.0, report
