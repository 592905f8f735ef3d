"""The installer and the units under a real systemd: Debian 12 booted with systemd as PID 1 (systemd-nspawn).

    host   pip wheel: this checkout and its dependencies -> wheels/  (this machine reaches an index)
    box    Debian bookworm, private network (no network access), disk = overlay on the cached rootfs
           /src     this checkout, read-only          /wheels  the wheels, read-only

    install --wheels /wheels      timer enabled and started; a second run: Nothing to do
    reboot                        apply runs at boot, then the timer runs it again (period shortened by a drop-in)
    probe unit                    the service file itself with another ExecStart: routes yes, files outside the store no
    ppp0 peer 10.255.10.2         a route file written meanwhile: the next timer run installs it
    /etc/ppp/ip-up ppp1 ...       Debian's dispatcher (timer stopped): the peer's routes are installed
    openvpn@server (.debs in)     the installer's drop-in puts our hooks on its command line; the server started
                                  has them, and still has them after its config is written afresh and restarted;
                                  a client connects: its user's route via the client, gone when the server stops
    systemd-analyze security      exposure of the service <= 2.0
    --scheduler cron, systemd     units disabled and removed, Debian's cron (its .debs copied in) runs the
                                  shipped /etc/cron.d/l2tproute into the journal; back: cron file gone, timer on
    --uninstall                   no unit left, the timer never fires again

One machine for the module, the tests in file order; each asserts the state it starts from.
To check another unit (for example a path unit), write its scenario with `box.run`, `box.write`,
`box.journal` and `box.wait_for` (tests/support/nspawn.py).
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest
from conftest import REPO
from openvpnworld import OVPN_DROP_IN, OVPN_HOOK, OVPN_UNIT, PANEL_SERVER
from support.nspawn import INSTALLER, SERVICE, TIMER, UNIT_DIR, Container, rootfs_or_fail, rootfs_python
from support.polling import holds_for

from l2tproute.core import constants as C

pytestmark = pytest.mark.system

STORE = C.DEFAULT_STORE_DIR
APPLIED = "Applied routes:"
#: The timer's period for the test: OnUnitActiveSec 60 s would make the layer minutes longer.
PERIOD_S = 3
PERIOD_DROP_IN = f"{UNIT_DIR}/{TIMER}.d/50-test-period.conf"
#: A list-valued setting is reset by an empty assignment, then set.
PERIOD_TEXT = f"[Timer]\nOnBootSec=\nOnBootSec=2s\nOnUnitActiveSec=\nOnUnitActiveSec={PERIOD_S}s\nAccuracySec=100ms\n"
WAIT_S = 120  # an upper bound for the slowest step on a loaded machine, never a timed assertion


@dataclass
class Machine:
    box: Container
    first_install: object  # the CompletedProcess of the install on the freshly booted system

    def install(self, *args: str):
        return self.box.run("bash", INSTALLER, *args, timeout=900)

    def runs(self) -> list[str]:
        """The summary line of every apply the service ran this boot."""
        return [line for line in self.box.journal(SERVICE) if line.startswith(APPLIED)]

    def wait_for_runs(self, count: int) -> list[str]:
        return self.box.wait_for(lambda: len(self.runs()) >= count and self.runs(), WAIT_S,
                                 f"{count} runs of {SERVICE}")


@pytest.fixture(scope="module")
def machine(tmp_path_factory, wheel_dirs):
    root = rootfs_or_fail("bookworm")
    scratch = tmp_path_factory.mktemp("systemd")
    wheels = wheel_dirs(rootfs_python(root))
    # /dev/net/tun: the OpenVPN test starts the panel's server (its tun in the box's own network).
    box = Container(root, scratch / "box", binds={"/src": REPO, "/wheels": wheels},
                    nspawn_args=("--bind=/dev/net/tun",))
    try:
        box.boot()
        yield Machine(box, box.run("bash", INSTALLER, "--wheels", "/wheels", timeout=900))
    finally:
        box.poweroff()
        shutil.rmtree(scratch, ignore_errors=True)


def test_offline_install_enables_and_starts_the_timer(machine):
    box = machine.box
    assert [link["ifname"] for link in json.loads(box.check("ip", "-j", "link"))] == ["lo"]  # no way out
    result = machine.first_install
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "installing l2tproute 1.0.0 into /opt/l2tproute from the wheels in /wheels (pip, no network) ..." in lines
    for line in (f"enabled: {SERVICE}", f"enabled: {TIMER}", f"started: {TIMER}"):
        assert line in lines, result.stdout
    assert box.run("systemctl", "is-enabled", SERVICE, TIMER).stdout.split() == ["enabled", "enabled"]
    assert box.unit_property(TIMER, "ActiveState") == "active"
    # systemd runs here: the timer re-applies, so no cron file (never both at once).
    assert box.run("test", "-e", "/etc/cron.d/l2tproute").returncode == 1
    assert box.check("/usr/local/sbin/l2tp-routectl", "--version").strip() == "l2tp-routectl 1.0.0"


def test_a_second_install_changes_nothing(machine):
    result = machine.install("--wheels", "/wheels")
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "Nothing to do: l2tproute is already installed and up to date; nothing was changed." in lines
    assert not [line for line in lines if re.match(r"(installed|updated|enabled|started|created|applied): ", line)]


def test_the_timer_runs_apply_at_boot_and_again(machine):
    box = machine.box
    box.write(PERIOD_DROP_IN, PERIOD_TEXT)
    box.reboot()
    assert box.run("systemctl", "is-enabled", TIMER).stdout.strip() == "enabled"
    # multi-user.target starts the service once at boot; every run beyond that one is the timer's.
    runs = machine.wait_for_runs(3)
    assert runs[0] == (f"{APPLIED} 0 peers connected, 0 offline; 0 installed, 0 updated, 0 removed, 0 unchanged, "
                       "0 blocked, 0 failed.")
    assert box.unit_property(SERVICE, "Result") == "success"
    assert box.unit_property(TIMER, "LastTriggerUSecMonotonic") not in ("", "0")


PROBE = r"""
check() { what=$1; shift; if "$@" >/dev/null 2>&1; then echo "$what: allowed"; else echo "$what: denied"; fi; }
check "write in the store" sh -c 'echo x >"$0/.probe" && rm "$0/.probe"' "$STORE"
check "add and delete a route" sh -c 'ip route add 198.51.100.0/24 dev lo proto 157 && ip route del 198.51.100.0/24'
check "add and delete an address" sh -c 'ip addr add 198.51.100.1/32 dev lo && ip addr del 198.51.100.1/32 dev lo'
check "open a netlink socket" python3 -c 'import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)'
check "write /etc" touch /etc/l2tp-probe
check "write /opt/l2tproute" touch /opt/l2tproute/l2tp-probe
check "write /usr/local/sbin" touch /usr/local/sbin/l2tp-probe
check "write /var/lib" touch /var/lib/l2tp-probe
check "write /run" touch /run/l2tp-probe
check "write the run directory" sh -c 'touch /run/l2tproute/l2tp-probe && rm /run/l2tproute/l2tp-probe'
check "write /dev/shm" touch /dev/shm/l2tp-probe
check "list /root" ls /root
check "set a sysctl" sysctl -w net.ipv4.ip_forward=1
check "change a file owner" sh -c 'd=$(mktemp -d) && chown 65534 "$d"'
check "mount" sh -c 'd=$(mktemp -d) && mount -t tmpfs none "$d" && umount "$d"'
check "set the hostname" sh -c 'hostname "$(hostname)"'
check "open an IPv4 socket" python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)'
check "open an IPv6 socket" python3 -c 'import socket; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)'
check "open a packet socket" python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)'
check "map writable executable memory" python3 -c 'import mmap; mmap.mmap(-1, 4096, prot=7)'
"""
PROBE_EXPECTED = {
    "write in the store": "allowed",
    "add and delete a route": "allowed",
    "add and delete an address": "allowed",  # CAP_NET_ADMIN is all or nothing: links and addresses too
    "open a netlink socket": "allowed",
    "write /etc": "denied",
    "write /opt/l2tproute": "denied",
    "write /usr/local/sbin": "denied",
    "write /var/lib": "denied",
    "write /run": "denied",
    # The OpenVPN session records the timer drops, and root's iroute precompute it refreshes.
    "write the run directory": "allowed",
    "write /dev/shm": "denied",
    "list /root": "denied",
    "set a sysctl": "denied",
    "change a file owner": "denied",
    "mount": "denied",
    "set the hostname": "denied",
    "open an IPv4 socket": "denied",
    "open an IPv6 socket": "denied",
    "open a packet socket": "denied",
    "map writable executable memory": "denied",
}


def test_the_sandbox_lets_apply_change_routes_and_nothing_else(machine):
    """The installed service file itself, with only ExecStart changed, runs a probe of what it may do.

    The same probe in a unit without the sandbox is allowed everything (asserted too), so each
    denial is the sandbox's doing. That apply itself works under it is the timer tests' business.
    "Nothing else" is about the system outside the network configuration: CAP_NET_ADMIN in the
    host's namespace cannot be narrowed to routes, so addresses and links stay within reach.
    """
    box = machine.box
    service = box.check("cat", f"{UNIT_DIR}/{SERVICE}")
    box.write("/run/l2tp-probe.sh", PROBE, "0755")
    box.check("mkdir", "-p", "/run/l2tproute")
    probe_unit = service.replace("ExecStart=/usr/local/sbin/l2tp-routectl apply\n",
                                 f"ExecStart=/bin/sh /run/l2tp-probe.sh\nEnvironment=STORE={STORE}\n")
    changed = [line for line in difflib.ndiff(service.splitlines(), probe_unit.splitlines()) if line[:1] in "+-"]
    assert changed == ["- ExecStart=/usr/local/sbin/l2tp-routectl apply", "+ ExecStart=/bin/sh /run/l2tp-probe.sh",
                       f"+ Environment=STORE={STORE}"]
    box.write("/run/systemd/system/l2tp-probe.service", probe_unit)
    box.check("systemctl", "daemon-reload")
    box.check("systemctl", "start", "l2tp-probe.service")
    verdicts = [line for line in box.journal("l2tp-probe.service") if line.endswith((": allowed", ": denied"))]
    seen = dict(line.rsplit(": ", 1) for line in verdicts)
    assert seen == PROBE_EXPECTED
    unconfined = box.check("systemd-run", "--quiet", "--wait", "--pipe", "-p", f"Environment=STORE={STORE}",
                           "/bin/sh", "/run/l2tp-probe.sh")
    assert unconfined.splitlines() == [f"{check}: allowed" for check in PROBE_EXPECTED]
    box.check("rm", "-f", "/etc/l2tp-probe", "/opt/l2tproute/l2tp-probe", "/usr/local/sbin/l2tp-probe",
              "/var/lib/l2tp-probe", "/run/l2tp-probe", "/dev/shm/l2tp-probe")


def add_ppp(box: Container, ifname: str, peer: str) -> None:
    """A pppN link as pppd leaves it, made of a tun device (no kernel PPP here)."""
    for argv in (("tuntap", "add", "dev", ifname, "mode", "tun"), ("addr", "add", "10.254.0.1", "peer", peer, "dev",
                                                                    ifname), ("link", "set", ifname, "up")):
        box.check("ip", *argv)


def tagged(box: Container, ifname: str) -> set[tuple[str, str]]:
    return {(route["dst"], route.get("gateway", "")) for route in box.routes("dev", ifname)
            if route.get("protocol") == str(C.RT_PROTO)}


def test_a_route_file_written_meanwhile_is_installed_by_the_next_timer_run(machine):
    box = machine.box
    add_ppp(box, "ppp0", "10.255.10.2")
    assert tagged(box, "ppp0") == set()
    box.write(f"{STORE}/10.255.10.2.routes", "192.168.20.0/24 via 10.255.10.2\n")  # as rsync from the panel host
    installed = "Installed route for peer 10.255.10.2: 192.168.20.0/24 via 10.255.10.2"
    journal = box.wait_for(lambda: installed in box.journal(SERVICE) and box.journal(SERVICE), WAIT_S,
                           "the timer's next apply")
    assert tagged(box, "ppp0") == {("192.168.20.0/24", "10.255.10.2")}
    summaries = [line for line in journal[journal.index(installed):] if line.startswith(APPLIED)]
    assert summaries[0] == (f"{APPLIED} 1 peers connected, 0 offline; 1 installed, 0 updated, 0 removed, "
                            "0 unchanged, 0 blocked, 0 failed.")
    count = len(machine.runs())
    assert machine.wait_for_runs(count + 1)[-1] == (f"{APPLIED} 1 peers connected, 0 offline; 0 installed, "
                                                    "0 updated, 0 removed, 1 unchanged, 0 blocked, 0 failed.")


def test_debians_ip_up_and_ip_down_install_and_remove_a_peers_routes(machine):
    """pppd runs /etc/ppp/ip-up with a cleared environment; the timer is stopped, so only the hook acts."""
    box = machine.box
    box.check("systemctl", "stop", TIMER)
    try:
        box.write(f"{STORE}/10.255.10.3.routes", "192.168.30.0/24 via 10.255.10.3\n")
        add_ppp(box, "ppp1", "10.255.10.3")
        box.check("/etc/ppp/ip-up", "ppp1", "/dev/ttyS1", "115200", "10.254.0.1", "10.255.10.3", "")
        box.wait_for(lambda: tagged(box, "ppp1"), WAIT_S, "ip-up to install the routes")
        assert tagged(box, "ppp1") == {("192.168.30.0/24", "10.255.10.3")}
        box.check("/etc/ppp/ip-down", "ppp1", "/dev/ttyS1", "115200", "10.254.0.1", "10.255.10.3", "")
        box.wait_for(lambda: not tagged(box, "ppp1"), WAIT_S, "ip-down to remove the routes")
        assert tagged(box, "ppp0") == {("192.168.20.0/24", "10.255.10.2")}  # another session is left alone
    finally:
        box.check("systemctl", "start", TIMER)




#: One command to OpenVPN's management socket (the one the hooks' worker asks), its first answer line.
ASK_MANAGEMENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect("/run/l2tproute/openvpn.sock")
s.sendall(sys.argv[1].encode() + b"\\n")
data = b""
while not (data.endswith(b"\\n") and (b"SUCCESS" in data or b"ERROR" in data)):
    data += s.recv(4096) or sys.exit("the socket closed")
print(data.decode().splitlines()[-1])
"""


def copy_debs(box: Container, directory, *packages: str) -> None:
    """Debian packages fetched by this machine's apt, installed in the box (it has no network)."""
    result = subprocess.run(["apt-get", "download", *packages], cwd=directory, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    debs = sorted(directory.glob("*.deb"))
    assert len(debs) == len(packages), debs
    for deb in debs:
        copy = subprocess.run(["nsenter", "-t", str(box.pid1), "-a", "sh", "-c", 'cat >"/root/$0"', deb.name],
                              input=deb.read_bytes(), capture_output=True, timeout=60)
        assert copy.returncode == 0, copy.stderr
    box.check("sh", "-c", "dpkg -i " + " ".join(f"/root/{deb.name}" for deb in debs), timeout=300)


def openvpn_settings(box: Container, cursor: str) -> dict[str, str]:
    """The settings openvpn@server printed at its last start after `cursor` (verb 4), name -> value."""
    lines = box.check("journalctl", "--no-pager", "-o", "cat", "-u", OVPN_UNIT, "--after-cursor", cursor).splitlines()
    settings = {}
    for line in lines:
        match = re.match(r"^\s*(?:\S+ us=\d+ )?\s*(\w+) = (.*)$", line)
        if match:
            settings[match[1]] = match[2]
    return settings


def journal_cursor(box: Container) -> str:
    return box.check("journalctl", "-n", "0", "--show-cursor", "--no-pager").strip().rsplit("cursor: ", 1)[1]


def test_the_openvpn_hooks_survive_the_panel_rewriting_its_config_and_restarting_the_server(machine, tmp_path):
    """The panel's installer writes /etc/openvpn/server.conf afresh and restarts openvpn@server:
    our options live in a drop-in of the unit, so the restarted server still has them."""
    box = machine.box
    copy_debs(box, tmp_path, "openvpn", "liblzo2-2", "libnl-3-200", "libnl-genl-3-200", "libpkcs11-helper1")
    pki = tmp_path / "pki"
    pki.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"), "-days", "2", "-subj", "/CN=server"],
                   check=True, capture_output=True)
    for name in ("ca.crt", "ca.key"):
        box.write(f"/etc/openvpn/pki/{name}", (pki / name).read_text(), "0600")
    box.write("/etc/openvpn/auth.sh", "#!/bin/sh\nexit 0\n", "0755")  # any user; who is who: chap-secrets
    box.write("/etc/openvpn/server.conf", PANEL_SERVER, "0600")

    result = machine.install("--wheels", "/wheels")
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"installed: {OVPN_DROP_IN}" in lines and "installed: /etc/sudoers.d/l2tproute-openvpn" in lines, lines
    assert ("note: restart OpenVPN to load its hooks: systemctl restart openvpn@server (its clients reconnect)"
            in lines)
    assert box.check("cat", "/etc/openvpn/server.conf") == PANEL_SERVER
    assert f"# {OVPN_DROP_IN}" in box.check("systemctl", "cat", OVPN_UNIT)
    exec_start = box.unit_property(OVPN_UNIT, "ExecStart")
    options = (f"--script-security 2 --client-connect {OVPN_HOOK} --client-disconnect {OVPN_HOOK} "
               "--management /run/l2tproute/openvpn.sock unix --management-client-user root")
    assert f"argv[]=/usr/sbin/openvpn {options} --daemon ovpn-server " in exec_start, exec_start
    assert exec_start.index(options) < exec_start.index("--config /etc/openvpn/server.conf"), exec_start
    verified = box.run("systemd-analyze", "verify", "--man=no", OVPN_UNIT)  # the box has no man pages
    assert verified.returncode == 0, verified.stdout + verified.stderr

    cursor = journal_cursor(box)
    box.check("systemctl", "start", OVPN_UNIT)
    settings = openvpn_settings(box, cursor)
    assert (settings["client_connect_script"], settings["client_disconnect_script"]) == (f"'{OVPN_HOOK}'",) * 2
    assert settings["management_addr"] == "'/run/l2tproute/openvpn.sock'", settings
    assert settings["keepalive_timeout"] == "120"
    assert box.check("python3", "-c", ASK_MANAGEMENT, "pid").startswith("SUCCESS: pid=")

    # The panel's installer: its config afresh (another keepalive, none of our lines), then a restart.
    # This panel also raises script-security to 3: our 2 comes first and must not lower it. An up
    # script tells: OpenVPN hands it a variable named password only from level 3 on.
    box.write("/etc/openvpn/up.sh", '#!/bin/sh\necho "password=${password:-absent}" >/run/l2t-up.out\n', "0755")
    rewritten = PANEL_SERVER.replace("keepalive 10 120", "keepalive 10 60").replace(
        "script-security 2\n", "script-security 3\nsetenv password probe\nup /etc/openvpn/up.sh\n")
    box.write("/etc/openvpn/server.conf", rewritten, "0600")
    cursor = journal_cursor(box)
    box.check("systemctl", "restart", OVPN_UNIT)
    settings = openvpn_settings(box, cursor)
    assert settings["keepalive_timeout"] == "60"  # the new config is the one loaded
    assert box.check("cat", "/run/l2t-up.out") == "password=probe\n"

    # OpenVPN's ExecStartPre made root's precompute for the hook: readable by the server's group only.
    listed = box.check("stat", "-c", "%a %U %G", "/run/l2tproute/openvpn-iroutes",
                       "/run/l2tproute/openvpn-iroutes/chap.stamp")
    assert listed.split("\n")[:2] == ["2750 root www-data", "640 root www-data"], listed
    # A user connects (a client in a namespace of the box): the hook copies its precomputed
    # iroute, systemd's path unit and the root worker put its route via the client's VPN address.
    box.write("/etc/ppp/chap-secrets", "user9 * pass9 10.255.10.9\n", "0640")
    box.check("chgrp", "www-data", "/etc/ppp/chap-secrets")
    # l2tproute-worker.path: chap-secrets changed, so the worker brings the precompute up to date.
    box.wait_for(lambda: box.run("cat", "/run/l2tproute/openvpn-iroutes/users/user9").stdout == "10.255.10.9\n",
                 WAIT_S, "the precompute of user9")
    # The panel's add: the precompute follows the route file at once.
    box.check("/usr/local/sbin/l2tp-routectl", "add", "--peer", "10.255.10.9", "--dst", "192.168.90.0/24")
    assert box.check("cat", "/run/l2tproute/openvpn-iroutes/peers/10.255.10.9") == \
        "iroute 192.168.90.0 255.255.255.0\n"
    box.write("/root/user9.pass", "user9\npass9\n", "0600")
    for argv in (("netns", "add", "client"), ("link", "add", "ovpn0", "type", "veth", "peer", "name", "ovpn1"),
                 ("link", "set", "ovpn1", "netns", "client"), ("addr", "add", "172.31.9.1/24", "dev", "ovpn0"),
                 ("link", "set", "ovpn0", "up"), ("-n", "client", "addr", "add", "172.31.9.2/24", "dev", "ovpn1"),
                 ("-n", "client", "link", "set", "ovpn1", "up")):
        box.check("ip", *argv)
    box.check("ip", "netns", "exec", "client", "openvpn", "--client", "--dev", "tun", "--proto", "tcp-client",
              "--remote", "172.31.9.1", "18443", "--ca", "/etc/openvpn/pki/ca.crt", "--auth-user-pass",
              "/root/user9.pass", "--nobind", "--daemon", "--log", "/root/client.log", "--writepid", "/root/client.pid")
    routes = box.wait_for(lambda: [r for r in box.routes("192.168.90.0/24") if r.get("gateway")], WAIT_S,
                          f"the route of user9 via its client\n{box.check('cat', '/root/client.log')[-1500:]}\n"
                          + "\n".join(box.journal(identifier=C.SYSLOG_IDENT)[-20:]))
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.10.30.2", "tun0")], routes
    assert (settings["client_connect_script"], settings["client_disconnect_script"]) == (f"'{OVPN_HOOK}'",) * 2
    assert settings["management_addr"] == "'/run/l2tproute/openvpn.sock'", settings
    assert box.unit_property(OVPN_UNIT, "ActiveState") == "active"
    again = machine.install("--wheels", "/wheels")
    assert "Nothing to do: l2tproute is already installed and up to date; nothing was changed." in \
        again.stdout.splitlines(), again.stdout
    # The server stops: its client-disconnect runs for the client, and the route goes.
    box.check("systemctl", "stop", OVPN_UNIT)
    box.wait_for(lambda: not box.routes("192.168.90.0/24"), WAIT_S, "the route of user9 to go")
    box.check("sh", "-c", 'kill "$(cat /root/client.pid)"')
    box.check("ip", "netns", "del", "client")


def test_the_service_exposure_is_at_most_2_0(machine):
    report = machine.box.check("systemd-analyze", "security", "--no-pager", SERVICE)
    level = re.search(rf"Overall exposure level for {re.escape(SERVICE)}: (\d+\.\d+)", report)
    assert level, report
    assert float(level[1]) <= 2.0, report


CRON_FILE = "/etc/cron.d/l2tproute"


def cron_debs(directory) -> list:
    """Debian's cron and what it needs beyond a minimal bookworm, fetched by this machine's apt."""
    result = subprocess.run(["apt-get", "download", "cron", "cron-daemon-common", "sensible-utils"], cwd=directory,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    debs = sorted(directory.glob("*.deb"))
    assert len(debs) == 3, debs
    return debs


def test_switching_to_cron_disables_the_units_and_cron_reapplies_then_back_to_the_timer(machine, tmp_path):
    box = machine.box
    assert box.unit_property(TIMER, "ActiveState") == "active"
    for deb in cron_debs(tmp_path):  # the box has no network: the packages go in as files
        copy = subprocess.run(["nsenter", "-t", str(box.pid1), "-a", "sh", "-c", 'cat >"/root/$0"', deb.name],
                              input=deb.read_bytes(), capture_output=True, timeout=60)
        assert copy.returncode == 0, copy.stderr
    box.check("sh", "-c", "dpkg -i /root/cron-daemon-common_*.deb /root/sensible-utils_*.deb && "
              "dpkg -i /root/cron_*.deb && systemctl enable --now cron.service", timeout=300)  # pre-depends first

    to_cron = machine.install("--wheels", "/wheels", "--scheduler", "cron")
    assert (to_cron.returncode, to_cron.stderr) == (0, ""), to_cron.stdout + to_cron.stderr
    lines = to_cron.stdout.splitlines()
    for unit in (TIMER, SERVICE):
        assert f"disabled: {unit} (cron re-applies instead)" in lines, to_cron.stdout
        assert f"removed: {UNIT_DIR}/{unit} (cron re-applies instead)" in lines, to_cron.stdout
        assert box.unit_property(unit, "LoadState") == "not-found"
    assert f"installed: {CRON_FILE}" in lines
    assert not [line for line in lines if line.startswith("note: no cron daemon")]
    # Debian's cron under systemd runs the shipped line; its output reaches the journal as syslog,
    # in cron.service's own (the timer, disabled only during the install, may have run once more).
    applied = box.wait_for(lambda: [line for line in box.journal("cron.service") if line.startswith(APPLIED)],
                           WAIT_S, "an apply run by cron")
    assert applied[0].startswith(f"{APPLIED} "), applied
    assert [line for line in box.journal("cron.service") if "CMD ({ flock -n -E 75 /run/l2tproute-cron.lock" in line]

    back = machine.install("--wheels", "/wheels", "--scheduler", "systemd")
    assert (back.returncode, back.stderr) == (0, ""), back.stdout + back.stderr
    lines = back.stdout.splitlines()
    assert f"removed: {CRON_FILE} (systemd re-applies instead)" in lines
    for line in (f"enabled: {SERVICE}", f"enabled: {TIMER}", f"started: {TIMER}"):
        assert line in lines, back.stdout
    assert box.run("test", "-e", CRON_FILE).returncode == 1
    assert box.unit_property(TIMER, "ActiveState") == "active"


def test_uninstall_removes_every_unit_and_the_timer_never_fires_again(machine):
    box = machine.box
    assert box.unit_property(TIMER, "ActiveState") == "active"
    result = machine.install("--uninstall")
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    for unit in (SERVICE, TIMER):
        assert f"removed: {UNIT_DIR}/{unit}" in result.stdout.splitlines()
        assert box.unit_property(unit, "LoadState") == "not-found"
    assert f"removed: {OVPN_DROP_IN}" in result.stdout.splitlines()
    assert box.unit_property(OVPN_UNIT, "DropInPaths") == ""
    assert " --script-security " not in box.unit_property(OVPN_UNIT, "ExecStart")
    left = box.check("find", "/etc/systemd", "/run/systemd/system", "-name", "route-l2tp-apply-all*",
                     "!", "-path", f"{PERIOD_DROP_IN.rsplit('/', 1)[0]}*").split()
    assert left == []
    assert TIMER not in box.check("systemctl", "list-timers", "--all", "--no-pager")
    # Everything else the install put there is gone too: the worker's units, the command, its
    # venv, the sudoers entries, the ppp hooks, the run directory.
    installed = ["/etc/systemd/system/l2tproute-worker.path", "/etc/systemd/system/l2tproute-worker.service",
                 "/usr/local/sbin/l2tp-routectl", "/opt/l2tproute", "/etc/sudoers.d/l2tp-routectl",
                 "/etc/sudoers.d/l2tproute-openvpn", "/etc/ppp/ip-up.d/l2tp-routes", "/etc/ppp/ip-down.d/l2tp-routes",
                 "/etc/tmpfiles.d/l2tproute.conf", "/run/l2tproute"]
    present = box.check("sh", "-c", 'for p do if [ -e "$p" ] || [ -h "$p" ]; then echo "$p"; fi; done', "sh",
                        *installed).split()
    assert present == [], present
    for unit in ("l2tproute-worker.path", "l2tproute-worker.service"):
        assert box.unit_property(unit, "LoadState") == "not-found"
    runs = len(machine.runs())
    # Three periods in which the timer, were it there, would have run apply: no run at any look.
    assert holds_for(lambda: len(machine.runs()) == runs, 3 * PERIOD_S, 0.5)
    box.check("rm", "-r", PERIOD_DROP_IN.rsplit("/", 1)[0])
