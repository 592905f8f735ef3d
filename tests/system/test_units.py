"""The system files in contrib/: systemd units, sysctl, sudoers, the rt_protos entry.

Each is checked by the tool that reads it on a server (systemd-analyze, sysctl,
visudo, ip), inside private mount or network namespaces so this machine is unchanged.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, require, routectl_path
from support.systemd237 import filter_on_237

from l2tproute.core import constants as C

MARKER = "# Installed by install-l2tp-per-user-routing.sh (l2tproute)"

SERVICE = REPO / "contrib/systemd/route-l2tp-apply-all.service"
TIMER = REPO / "contrib/systemd/route-l2tp-apply-all.timer"
SYSCTL = REPO / "contrib/sysctl/99-l2tp-routing.conf"
SUDOERS = REPO / "contrib/sudoers/l2tp-routectl"
PROTOS = REPO / "contrib/iproute2/l2tproute.conf"


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


def in_mount_namespace(script: str, *args: str) -> subprocess.CompletedProcess:
    # Without the test's L2TP_ROUTES_DIR, as systemd starts the unit: the script mounts a
    # scratch store where the tool looks by default.
    env = {k: v for k, v in os.environ.items() if k != C.STORE_DIR_ENV}
    return subprocess.run(["unshare", "-m", "sh", "-euc", script, "sh", *args], capture_output=True, text=True,
                          timeout=120, env=env)


# -- systemd ----------------------------------------------------------------------

def test_systemd_analyze_verify_passes_on_both_units():
    # verify also checks that ExecStart's program exists: bind this checkout's bin/ over /usr/local/sbin.
    result = in_mount_namespace('mount --bind "$1" /usr/local/sbin; exec systemd-analyze verify "$2" "$3"',
                                str(REPO / "bin"), str(SERVICE), str(TIMER))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result


def test_verify_would_catch_a_broken_unit(tmp_path):
    """The check above can fail: verify exits 0 on a value it ignores, so the test wants silence too."""
    broken = tmp_path / SERVICE.name
    broken.write_text(SERVICE.read_text().replace("Type=oneshot", "Type=oneshoot"))
    result = in_mount_namespace('mount --bind "$1" /usr/local/sbin; exec systemd-analyze verify "$2"',
                                str(REPO / "bin"), str(broken))
    assert "Failed to parse service type, ignoring: oneshoot" in result.stderr, result
    missing = in_mount_namespace('mount -t tmpfs tmpfs /usr/local/sbin; exec systemd-analyze verify "$1"', str(SERVICE))
    assert missing.returncode != 0 and "/usr/local/sbin/l2tp-routectl" in missing.stderr, missing


def test_the_service_runs_apply_once_after_the_network_is_up():
    service = unit(SERVICE)
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"] == "/usr/local/sbin/l2tp-routectl apply"
    assert "network-online.target" in service["Unit"]["After"].split()
    assert "network-online.target" in service["Unit"]["Wants"].split()
    assert service["Install"]["WantedBy"] == "multi-user.target"


def test_the_timer_fires_15_s_after_boot_then_every_60_s():
    timer = unit(TIMER)["Timer"]
    assert (timer["OnBootSec"], timer["OnUnitActiveSec"], timer["Unit"]) == ("15s", "60s", SERVICE.name)
    assert unit(TIMER)["Install"]["WantedBy"] == "timers.target"


def test_the_sandbox_keeps_what_ip_needs_and_little_else():
    service = unit(SERVICE)["Service"]
    assert service["CapabilityBoundingSet"].split() == ["CAP_NET_ADMIN"]
    assert "AF_NETLINK" in service["RestrictAddressFamilies"].split()
    assert "PrivateNetwork" not in service  # the routes belong to the host's namespace
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == f"-{C.DEFAULT_STORE_DIR} -{C.DEFAULT_RUN_DIR}"
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(SERVICE)],
                            capture_output=True, text=True, timeout=120)
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert level, result.stdout + result.stderr
    assert float(level.group(1)) <= 2.0, result.stdout  # an unsandboxed unit is 9.6; test_systemd checks it live


# -- sysctl -------------------------------------------------------------------------

def test_sysctl_file_turns_forwarding_on_and_rp_filter_loose_on_ppp_links(netns):
    netns.add_ppp("ppp0", "10.255.10.1")
    netns.add_lan("eth9", "192.0.2.1/24")

    def read(key: str) -> str:
        return subprocess.run(["ip", "netns", "exec", netns.name, "sysctl", "-n", key], capture_output=True,
                              text=True, check=True).stdout.strip()

    # A new namespace may inherit the host's values: start from the kernel's defaults.
    subprocess.run(["ip", "netns", "exec", netns.name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0",
                    "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.ppp0.rp_filter=1",
                    "net.ipv4.conf.eth9.rp_filter=1", "net.ipv4.conf.default.rp_filter=1"], check=True)
    assert read("net.ipv4.ip_forward") == "0"
    result = subprocess.run(["ip", "netns", "exec", netns.name, "sysctl", "-p", str(SYSCTL)], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert read("net.ipv4.ip_forward") == "1"
    assert read("net.ipv4.conf.ppp0.rp_filter") == "2"
    assert read("net.ipv4.conf.eth9.rp_filter") != "2"
    netns.add_ppp("ppp1", "10.255.10.2")  # a session after boot: the glob did not reach it (the hook does)
    assert read("net.ipv4.conf.ppp1.rp_filter") != "2"
    assert "ip-up.d/l2tp-routes" in SYSCTL.read_text()  # and the file says so


# -- sudoers --------------------------------------------------------------------------

def test_visudo_accepts_the_sudoers_file():
    result = subprocess.run(["visudo", "-cf", str(SUDOERS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"{SUDOERS}: parsed OK"


def test_sudoers_grants_www_data_the_command_and_nothing_else():
    rules = [line for line in SUDOERS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert rules == ["www-data ALL=(root) NOPASSWD: /usr/local/sbin/l2tp-routectl"]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", SUDOERS.name), "sudo skips files in sudoers.d with a dot in the name"


def test_sudo_itself_reads_the_rule_as_meant(tmp_path):
    """Installed in a private /etc/sudoers.d, `sudo -l -U www-data` lists exactly the one command."""
    rules = tmp_path / "sudoers.d"
    rules.mkdir()
    (rules / SUDOERS.name).write_bytes(SUDOERS.read_bytes())
    (rules / SUDOERS.name).chmod(0o440)
    result = in_mount_namespace('mount --bind "$1" /etc/sudoers.d; exec sudo -l -U www-data', str(rules))
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("User www-data may run the following commands"))
    granted = [line.strip() for line in lines[start + 1:] if line.strip()]
    assert granted == ["(root) NOPASSWD: /usr/local/sbin/l2tp-routectl"], result.stdout


# -- rt_protos ---------------------------------------------------------------------------

def test_the_protocol_file_names_our_number(netns):
    assert PROTOS.read_text().splitlines()[-1].split() == [str(C.RT_PROTO), C.RT_PROTO_NAME]
    netns.add_ppp("ppp0", "10.255.10.1")
    netns.ip("route", "add", "192.168.50.0/24", "via", "10.255.10.1", "dev", "ppp0", "proto", str(C.RT_PROTO))
    directory = Path(PROTOS).parent
    result = in_mount_namespace('mount --bind "$1" /etc/iproute2/rt_protos.d; '
                                'ip -n "$2" route show proto "$3"; echo ---; ip -n "$2" route show 192.168.50.0/24',
                                str(directory), netns.name, C.RT_PROTO_NAME)
    assert result.returncode == 0, result
    named, shown = result.stdout.split("---\n")
    assert named.split()[0] == "192.168.50.0/24"
    assert f"proto {C.RT_PROTO_NAME}" in shown


# -- the service's sandbox, emulated around the installed command -----------------------

_SANDBOXED = r"""
mount --bind "$1" /etc/l2tp-manager/routes.d
mount -o remount,bind,ro /
exec ip netns exec "$2" setpriv --no-new-privs --bounding-set "$3" /usr/local/sbin/l2tp-routectl apply
"""


@pytest.mark.parametrize("caps, works", [("-all,+net_admin", True), ("-all", False)])
def test_apply_works_with_only_cap_net_admin_on_a_read_only_system(netns, tmp_path, caps, works):
    """What ProtectSystem=strict + ReadWritePaths=store + CapabilityBoundingSet=CAP_NET_ADMIN leave, without
    systemd (not PID 1 here): a read-only / except the store, and no capability but CAP_NET_ADMIN."""
    command = Path("/usr/local/sbin/l2tp-routectl")
    if not command.is_file() or MARKER not in command.read_text(errors="replace"):
        pytest.fail("/usr/local/sbin/l2tp-routectl is not installed; run `sudo ./install-l2tp-per-user-routing.sh` "
                    "first (.ci/run does)", pytrace=False)
    netns.add_ppp("ppp1", "10.255.10.1")
    store = tmp_path / "routes.d"
    store.mkdir()
    (store / "10.255.10.1.routes").write_text("192.168.50.0/24 via 10.255.10.1\n")
    result = in_mount_namespace(_SANDBOXED, str(store), netns.name, caps)
    if works:
        assert (result.returncode, result.stderr) == (0, ""), result
        assert netns.tagged_set() == {("192.168.50.0/24", "10.255.10.1", "ppp1", "main")}
    else:  # the control: the restriction is real, and without CAP_NET_ADMIN nothing changes
        assert result.returncode != 0, result
        assert "Operation not permitted" in result.stderr, result
        assert netns.tagged_set() == set()


# -- the service's system calls on systemd 237 ----------------------------------------------------

#: What glibc 2.27 and Python 3.8 on Ubuntu 18.04 never call (this machine's newer glibc and Python
#: do): each came with a later glibc (clone3 2.34, rseq 2.35, close_range 2.34, faccessat2 2.33,
#: epoll_pwait2 2.35) or is newer than 18.04's kernel 4.15 (openat2, pidfd_open, pidfd_send_signal).
NEWER_THAN_UBUNTU_18_04 = {"clone3", "rseq", "close_range", "faccessat2", "epoll_pwait2", "openat2", "pidfd_open",
                           "pidfd_send_signal"}


def test_what_a_real_apply_calls_is_allowed_by_systemd_237s_reading_of_the_filter(netns, tmp_path):
    """The service's SystemCallFilter= as systemd 237 builds it (tests/support/systemd237.py) against
    the system calls of a real `l2tp-routectl apply` that installs a route (strace -f: Python and ip)."""
    require(subprocess.run(["sh", "-c", "command -v strace"], capture_output=True).returncode == 0, "strace")
    netns.add_ppp("ppp1", "10.255.10.1")
    store = tmp_path / "routes.d"
    store.mkdir()
    (store / "10.255.10.1.routes").write_text("192.168.50.0/24 via 10.255.10.1\n")
    trace = tmp_path / "trace"
    env = {**os.environ, C.STORE_DIR_ENV: str(store)}
    result = subprocess.run(["ip", "netns", "exec", netns.name, "strace", "-f", "-qq", "-c", "-o", str(trace),
                             routectl_path(), "apply"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result
    assert netns.tagged_set() == {("192.168.50.0/24", "10.255.10.1", "ppp1", "main")}
    rows = [line.split() for line in trace.read_text().splitlines()]
    # strace -c: a header, then one row per call (starting with its share of the time), then a total.
    called = {row[-1] for row in rows if row and re.fullmatch(r"[0-9.]+", row[0]) and row[-1] != "total"}
    assert {"execve", "sendmsg", "openat"} <= called, called  # the trace saw Python and ip
    mode, allowed = filter_on_237(SERVICE)
    assert mode == "allow"
    assert called - NEWER_THAN_UBUNTU_18_04 <= allowed, sorted(called - NEWER_THAN_UBUNTU_18_04 - allowed)
