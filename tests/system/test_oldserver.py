"""An old server, whole: Debian 11 booted with systemd as PID 1, its `ip` and `openvpn` replaced
by iproute2 4.15.0 and OpenVPN 2.4.4 (Ubuntu 18.04's), driven as the panel's server is.

    host   pip download: this checkout and its dependencies for the box's Python -> wheels/
    box    Debian bullseye + its openvpn package, private network, disk = overlay on the cached rootfs
           /src     this checkout, read-only          /wheels  the wheels, read-only
           ip       iproute2 4.15.0 bound read-only over the distribution's (text routes, no -N)
           openvpn  OpenVPN 2.4.4 bound read-only over the distribution's (no deferred client-connect)

    install --wheels /wheels      timer enabled and started, OpenVPN's hooks on openvpn@server's command line;
                                  the timer's first apply (OnBootSec)
    /etc/ppp/ip-up ppp0 ...       Debian's dispatcher (timer stopped): the peer's route in; ip-down: out
    the panel (sudo, www-data)    list --peer, add (into the kernel), apply --peer (puts back a lost route), del
    the timer                     a route file written meanwhile: the timer's next apply installs it
    openvpn@server (2.4.4)        the panel adds a route for an OpenVPN user; a client (2.4.4, in a namespace
                                  of the box) connects: the route via its VPN address; it leaves: the route goes
    --uninstall                   units gone, the kernel's routes untouched, /etc /opt /usr/local as before
                                  but the route files

Both programs are built by hand from their upstream tags inside a bullseye root filesystem
(its glibc 2.31) and cached per machine in /var/cache/l2tproute-tests/bullseye, like the root
filesystem itself; never in the repository. A missing one fails the module with one line.
The kernel is read from the host's side (this machine's `ip -j -N` in the box's network
namespace): the box's own `ip` is 4.15.0, which has neither.

One machine for the module, the tests in file order; each asserts the state it starts from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO
from openvpnworld import OVPN_DROP_IN, OVPN_HOOK, OVPN_UNIT, PANEL_SERVER
from support.nspawn import (
    CACHE,
    INSTALLER,
    SERVICE,
    TIMER,
    UNIT_DIR,
    Container,
    ContainerError,
    rootfs_or_fail,
    rootfs_python,
)

from l2tproute.core import constants as C

pytestmark = pytest.mark.system

SUITE = "bullseye"
#: The box's distribution openvpn: its unit file, its libraries, the programs it brings.
EXTRA = ("openvpn",)
BUILT = CACHE / SUITE
#: The programs built inside bullseye (cached per machine), and what they say of their version.
IP_415 = BUILT / "iproute2-4.15.0/ip"
OVPN_244 = BUILT / "openvpn-2.4.4/openvpn"
IP_SAYS = "iproute2-ss180129"
OVPN_SAYS = "OpenVPN 2.4.4 "
STORE = C.DEFAULT_STORE_DIR
APPLIED = "Applied routes:"
ROUTECTL = "/usr/local/sbin/l2tp-routectl"
PERIOD_DROP_IN = f"{UNIT_DIR}/{TIMER}.d/50-test-period.conf"
#: The timer fires a second after it starts and every 3 s after each run (60 s would make this minutes longer).
PERIOD_TEXT = ("[Timer]\nOnActiveSec=1s\nOnBootSec=\nOnBootSec=2s\nOnUnitActiveSec=\nOnUnitActiveSec=3s\n"
               "AccuracySec=100ms\n")
WAIT_S = 120  # an upper bound for the slowest step on a loaded machine, never a timed assertion
WATCHED = ("/etc", "/opt", "/usr/local")

#: L2TP users: (peer, its LAN). OpenVPN's user: name, password, peer, LAN.
PPP_PEER, PPP_LAN = "10.255.10.2", "192.168.20.0/24"
PANEL_LAN = "192.168.22.0/24"
TIMER_PEER, TIMER_LAN = "10.255.10.4", "192.168.40.0/24"
VPN_USER, VPN_PASS, VPN_PEER, VPN_LAN = "user9", "pass9", "10.255.10.9", "192.168.90.0/24"


def box_program(root: Path, name: str) -> str:
    """Where the root filesystem's program `name` is a file, not a link to one: what a bind mount must cover."""
    for directory in ("usr/bin", "usr/sbin"):
        candidate = root / directory / name
        if candidate.is_file() and not candidate.is_symlink():
            return f"/{directory}/{name}"
    raise ContainerError(f"{root} has no /usr/bin/{name} nor /usr/sbin/{name}: remove it to rebuild it")


@dataclass
class Machine:
    box: Container
    first_install: subprocess.CompletedProcess
    before: set[str]  # /etc /opt /usr/local before the install

    def install(self, *args: str) -> subprocess.CompletedProcess:
        return self.box.run("bash", INSTALLER, *args, timeout=900)

    def kernel(self, *selector: str) -> list[dict]:
        """The box's IPv4 routes as this machine's `ip -j -N` reads them in the box's network namespace."""
        result = subprocess.run(["nsenter", "-t", str(self.box.pid1), "-n", "ip", "-4", "-j", "-N", "route", "show",
                                 *selector], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise ContainerError(f"ip route show {' '.join(selector)} in the box: {result.stderr.strip()}")
        return json.loads(result.stdout) if result.stdout.strip() else []

    def tagged(self, *selector: str) -> set[tuple[str, str, str]]:
        """Our routes (proto 157): (destination, gateway, link)."""
        return {(r["dst"], r.get("gateway", ""), r["dev"]) for r in self.kernel(*selector)
                if r.get("protocol") == str(C.RT_PROTO)}

    def panel(self, *args: str) -> subprocess.CompletedProcess:
        """The panel's call: www-data runs the command through sudo, as its PHP does."""
        return self.box.run("runuser", "-u", "www-data", "--", "sudo", "-n", ROUTECTL, *args)

    def wait(self, probe, what: str, *logs: str):
        """box.wait_for; on giving up, what the tool logged by then (and the files `logs`), not before."""
        try:
            return self.box.wait_for(probe, WAIT_S, what)
        except ContainerError as error:
            seen = [*self.box.journal(identifier=C.SYSLOG_IDENT)[-20:], *self.box.journal(SERVICE)[-10:]]
            seen += [self.box.run("tail", "-n", "30", log).stdout for log in logs]
            raise ContainerError("\n".join([str(error).split("\n", 1)[0], *seen])) from None


def tree(box: Container) -> set[str]:
    return set(box.check("find", *WATCHED, "-xdev").split("\n")) - {""}


def pki(directory: Path) -> dict[str, str]:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.crt"), "-days", "2", "-subj",
                    "/CN=server"], check=True, capture_output=True)
    return {name: (directory / name).read_text() for name in ("ca.crt", "ca.key")}


@pytest.fixture(scope="module")
def machine(tmp_path_factory, wheel_dirs):
    for program in (IP_415, OVPN_244):
        if not (program.is_file() and os.access(program, os.X_OK)):
            pytest.fail(f"{program} is missing: build it from its upstream tag inside a {SUITE} root filesystem "
                        "(docs/testing.md)", pytrace=False)
    root = rootfs_or_fail(SUITE, extra=EXTRA)
    try:
        binds = {"/src": REPO, "/wheels": wheel_dirs(rootfs_python(root)),
                 box_program(root, "ip"): IP_415, box_program(root, "openvpn"): OVPN_244}
    except ContainerError as error:
        pytest.fail(str(error))
    scratch = tmp_path_factory.mktemp("oldserver")
    (scratch / "pki").mkdir()
    keys = pki(scratch / "pki")
    # /dev/net/tun: OpenVPN's server and client make their tun devices in the box's network.
    box = Container(root, scratch / "box", binds=binds, nspawn_args=("--bind=/dev/net/tun",))
    try:
        box.boot()
        # The panel's server as it is before l2tproute arrives: its config, keys, users.
        for name, text in keys.items():
            box.write(f"/etc/openvpn/pki/{name}", text, "0600")
        box.write("/etc/openvpn/auth.sh", "#!/bin/sh\nexit 0\n", "0755")  # any user; who is who: chap-secrets
        box.write("/etc/openvpn/server.conf", PANEL_SERVER, "0600")
        box.write("/etc/ppp/chap-secrets", f"{VPN_USER} * {VPN_PASS} {VPN_PEER}\n", "0640")
        box.check("chgrp", "www-data", "/etc/ppp/chap-secrets")
        # As a server's /etc/hosts has it: sudo 1.8 and 1.9.5 resolve the host name, else they warn.
        box.check("sh", "-c", 'echo "127.0.1.1 $(hostname)" >>/etc/hosts')
        before = tree(box)
        yield Machine(box, box.run("bash", INSTALLER, "--wheels", "/wheels", timeout=900), before)
    finally:
        box.poweroff()
        shutil.rmtree(scratch, ignore_errors=True)


def test_the_box_runs_iproute2_4_15_and_openvpn_2_4_4(machine):
    box = machine.box
    assert IP_SAYS in box.check("ip", "-V"), "the box's ip is not iproute2 4.15.0"
    assert box.run("ip", "-N", "route").returncode != 0  # 4.15 knows no -N: the tool must do without
    version = box.run("openvpn", "--version").stdout  # 2.4 exits 1 after printing it
    assert version.startswith(OVPN_SAYS), version[:200]
    assert box.check("cat", "/etc/debian_version").startswith("11.")
    assert [link["ifname"] for link in json.loads(subprocess.run(
        ["nsenter", "-t", str(box.pid1), "-n", "ip", "-j", "link"], capture_output=True, text=True,
        check=True).stdout)] == ["lo"]  # no way out


def test_install_enables_the_timer_and_wires_openvpn(machine):
    box = machine.box
    result = machine.first_install
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for line in (f"enabled: {SERVICE}", f"enabled: {TIMER}", f"started: {TIMER}", f"installed: {OVPN_DROP_IN}"):
        assert line in lines, result.stdout
    assert box.unit_property(TIMER, "ActiveState") == "active"
    exec_start = box.unit_property(OVPN_UNIT, "ExecStart")
    assert f"--client-connect {OVPN_HOOK} --client-disconnect {OVPN_HOOK} " in exec_start, exec_start
    # Its first run, OnBootSec after the boot: the service has run once, so OnUnitActiveSec counts from then.
    first = machine.wait(lambda: [line for line in box.journal(SERVICE) if line.startswith(APPLIED)],
                         "the timer's first apply")
    assert first[0] == (f"{APPLIED} 0 peers connected, 0 offline; 0 installed, 0 updated, 0 removed, 0 unchanged, "
                        "0 blocked, 0 failed.")
    assert machine.tagged() == set()


def add_ppp(box: Container, ifname: str, peer: str) -> None:
    """A pppN link as pppd leaves it, made of a tun device (no kernel PPP here), by the box's ip 4.15."""
    for argv in (("tuntap", "add", "dev", ifname, "mode", "tun"),
                 ("addr", "add", "10.254.0.1", "peer", peer, "dev", ifname), ("link", "set", ifname, "up")):
        box.check("ip", *argv)


def test_debians_ip_up_and_ip_down_install_and_remove_a_peers_route(machine):
    """pppd runs /etc/ppp/ip-up with a cleared environment; the timer is stopped, so only the hooks act."""
    box = machine.box
    box.check("systemctl", "stop", TIMER)  # started again by the timer's test
    box.write(f"{STORE}/{PPP_PEER}.routes", f"{PPP_LAN} via {PPP_PEER}\n")
    add_ppp(box, "ppp0", PPP_PEER)
    assert machine.tagged() == set()
    ppp_args = ("ppp0", "/dev/ttyS0", "115200", "10.254.0.1", PPP_PEER, "")
    box.check("/etc/ppp/ip-up", *ppp_args)
    machine.wait(lambda: machine.tagged(), "ip-up to install the route")
    assert machine.tagged() == {(PPP_LAN, PPP_PEER, "ppp0")}
    box.check("/etc/ppp/ip-down", *ppp_args)
    machine.wait(lambda: not machine.tagged(), "ip-down to remove the route")
    box.check("/etc/ppp/ip-up", *ppp_args)  # the session is back for the tests below
    machine.wait(lambda: machine.tagged(), "ip-up to install the route again")
    assert machine.tagged() == {(PPP_LAN, PPP_PEER, "ppp0")}


def test_the_panels_calls_through_sudo(machine):
    box = machine.box
    assert box.unit_property(TIMER, "ActiveState") == "inactive"  # only the panel acts
    listed = machine.panel("list", "--peer", PPP_PEER)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, f"Routes for peer {PPP_PEER}:\n{PPP_LAN} via "
                                                                     f"{PPP_PEER}\n", "")
    added = machine.panel("add", "--peer", PPP_PEER, "--dst", PANEL_LAN)
    assert (added.returncode, added.stderr) == (0, ""), added.stdout + added.stderr
    assert added.stdout == f"Added route: {PANEL_LAN} via {PPP_PEER}\nInstalled on ppp0.\n"
    both = {(PPP_LAN, PPP_PEER, "ppp0"), (PANEL_LAN, PPP_PEER, "ppp0")}
    assert machine.tagged() == both
    box.check("ip", "route", "del", PANEL_LAN)  # lost (someone's hand): apply --peer puts it back
    assert machine.tagged() == {(PPP_LAN, PPP_PEER, "ppp0")}
    applied = machine.panel("apply", "--peer", PPP_PEER)
    assert (applied.returncode, applied.stderr) == (0, ""), applied.stdout + applied.stderr
    assert f"Installed route for peer {PPP_PEER}: {PANEL_LAN} via {PPP_PEER}" in applied.stdout.splitlines()
    assert machine.tagged() == both
    deleted = machine.panel("del", "--peer", PPP_PEER, "--dst", PANEL_LAN)
    assert (deleted.returncode, deleted.stderr) == (0, ""), deleted.stdout + deleted.stderr
    assert deleted.stdout.splitlines()[0] == f"Deleted route: {PANEL_LAN} via {PPP_PEER}"
    assert machine.tagged() == {(PPP_LAN, PPP_PEER, "ppp0")}
    assert box.check("cat", f"{STORE}/{PPP_PEER}.routes") == f"{PPP_LAN} via {PPP_PEER}\n"


def test_a_route_file_written_meanwhile_is_installed_by_the_timers_apply(machine):
    box = machine.box
    add_ppp(box, "ppp1", TIMER_PEER)
    box.write(f"{STORE}/{TIMER_PEER}.routes", f"{TIMER_LAN} via {TIMER_PEER}\n")  # as rsync from the panel host
    assert machine.tagged("dev", "ppp1") == set()
    box.write(PERIOD_DROP_IN, PERIOD_TEXT)
    box.check("systemctl", "daemon-reload")
    box.check("systemctl", "start", TIMER)
    installed = f"Installed route for peer {TIMER_PEER}: {TIMER_LAN} via {TIMER_PEER}"
    journal = machine.wait(lambda: installed in box.journal(SERVICE) and box.journal(SERVICE), "the timer's apply")
    assert machine.tagged() == {(PPP_LAN, PPP_PEER, "ppp0"), (TIMER_LAN, TIMER_PEER, "ppp1")}
    summaries = [line for line in journal[journal.index(installed):] if line.startswith(APPLIED)]
    assert summaries[0] == (f"{APPLIED} 2 peers connected, 0 offline; 1 installed, 0 updated, 0 removed, "
                            "1 unchanged, 0 blocked, 0 failed.")
    assert box.unit_property(SERVICE, "Result") == "success"


def test_an_openvpn_2_4_4_client_connects_and_leaves(machine):
    """The panel's server (2.4.4, run by Debian's openvpn@.service with our drop-in) and a 2.4.4 client
    in a namespace of the box: the hook, systemd's path unit and the root worker put the user's
    route via the client's VPN address, and take it away when the client leaves."""
    box = machine.box
    cursor = box.check("journalctl", "-n", "0", "--show-cursor", "--no-pager").strip().rsplit("cursor: ", 1)[1]
    box.check("systemctl", "start", OVPN_UNIT)
    started = box.check("journalctl", "--no-pager", "-o", "cat", "-u", OVPN_UNIT, "--after-cursor", cursor)
    assert OVPN_SAYS in started, started[-1500:]
    # The panel gives the user, offline, a route: only its file changes.
    added = machine.panel("add", "--peer", VPN_PEER, "--dst", VPN_LAN)
    assert (added.returncode, added.stderr) == (0, ""), added.stdout + added.stderr
    assert added.stdout.splitlines()[0] == f"Added route: {VPN_LAN} via {VPN_PEER}"
    box.write("/root/user9.pass", f"{VPN_USER}\n{VPN_PASS}\n", "0600")
    for argv in (("netns", "add", "client"), ("link", "add", "ovpn0", "type", "veth", "peer", "name", "ovpn1"),
                 ("link", "set", "ovpn1", "netns", "client"), ("addr", "add", "172.31.9.1/24", "dev", "ovpn0"),
                 ("link", "set", "ovpn0", "up"), ("-n", "client", "addr", "add", "172.31.9.2/24", "dev", "ovpn1"),
                 ("-n", "client", "link", "set", "ovpn1", "up")):
        box.check("ip", *argv)
    assert machine.tagged(VPN_LAN) == set()
    box.check("ip", "netns", "exec", "client", "openvpn", "--client", "--dev", "tun", "--proto", "tcp-client",
              "--remote", "172.31.9.1", "18443", "--ca", "/etc/openvpn/pki/ca.crt", "--auth-user-pass",
              "/root/user9.pass", "--nobind", "--daemon", "--log", "/root/client.log", "--writepid", "/root/client.pid")
    machine.wait(lambda: machine.tagged(VPN_LAN), f"the route of {VPN_USER} via its client", "/root/client.log")
    assert machine.tagged(VPN_LAN) == {(VPN_LAN, "10.10.30.2", "tun0")}
    box.check("sh", "-c", 'kill "$(cat /root/client.pid)"')  # the client leaves; the server stays up
    machine.wait(lambda: not machine.tagged(VPN_LAN), f"the route of {VPN_USER} to go", "/root/client.log")
    assert box.unit_property(OVPN_UNIT, "ActiveState") == "active"
    assert machine.tagged() == {(PPP_LAN, PPP_PEER, "ppp0"), (TIMER_LAN, TIMER_PEER, "ppp1")}
    box.check("systemctl", "stop", OVPN_UNIT)
    box.check("ip", "netns", "del", "client")


def test_uninstall_removes_the_units_and_leaves_the_kernel_and_the_route_files(machine):
    box = machine.box
    box.check("rm", "-r", PERIOD_DROP_IN.rsplit("/", 1)[0])
    kernel = machine.kernel("table", "all")
    result = machine.install("--uninstall")
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    for unit in (SERVICE, TIMER):
        assert box.unit_property(unit, "LoadState") == "not-found"
    assert box.unit_property(OVPN_UNIT, "DropInPaths") == ""
    assert " --client-connect " not in box.unit_property(OVPN_UNIT, "ExecStart")
    assert machine.kernel("table", "all") == kernel  # the routes stay until the sessions end
    left, gone = sorted(tree(box) - machine.before), sorted(machine.before - tree(box))
    routes = [f"{STORE}/{peer}.routes" for peer in (PPP_PEER, TIMER_PEER, VPN_PEER)]
    # Route files are never removed: they, their directory and the tool's own files there (its lock,
    # its index of destinations) are all that stays.
    own = [path for path in left if path.startswith(f"{STORE}/.l2tproute.")]
    assert gone == []
    assert sorted(set(left) - set(own)) == sorted([str(Path(STORE).parent), STORE, *routes]), left
