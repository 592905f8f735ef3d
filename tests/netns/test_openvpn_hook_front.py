"""bin/l2tp-routes-openvpn's fallback paths, which a working server never takes: variables
that are not a link and an address, no config file argument, no or an outdated precompute
of root, a spool or config file it cannot write, an unknown script_type, and a missing sh
library. In each the client gets in (exit 0) and the hook says why on syslog.

The hook runs as OpenVPN runs it (environment only, no terminal) with this checkout's sh
library, a kick that records its calls, and a logger that records its message.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO

from l2tproute.core import constants as C

PEER = "10.255.10.1"


class Hook:
    def __init__(self, root: Path, lib: str | None = None):
        self.root = root
        self.run = root / "run"
        (self.run / "spool").mkdir(parents=True)
        (self.run / "openvpn-connect").mkdir()
        self.chap = root / "chap-secrets"
        self.chap.write_text(f"user3 * pass {PEER}\n")
        self.iroutes = self.run / "openvpn-iroutes"
        (self.iroutes / "users").mkdir(parents=True)
        (self.iroutes / "peers").mkdir()
        (self.iroutes / "users" / "user3").write_text(f"{PEER}\n")
        (self.iroutes / "peers" / PEER).write_text("iroute 192.168.20.0 255.255.255.0\niroute-ipv6 2001:db8:20::/48\n")
        stamp = self.iroutes / "chap.stamp"
        stamp.touch()
        os.utime(self.chap, ns=(stamp.stat().st_mtime_ns - 10**9,) * 2)  # the precompute is newer
        self.kicks, self.logged = root / "kicks", root / "logged"
        kick = root / "kick"
        kick.write_text(f"#!/bin/sh\necho kick >>{self.kicks}\n")
        kick.chmod(0o755)
        logger = root / "logger"
        logger.write_text(f'#!/bin/sh\nfor last do :; done\nprintf "%s\\n" "$last" >>{self.logged}\n')
        logger.chmod(0o755)
        text = (REPO / "bin" / "l2tp-routes-openvpn").read_text()
        for old, new in {"LIB=/opt/l2tproute/libexec/l2tproute.sh": f"LIB={lib or REPO / 'lib' / 'l2tproute.sh'}",
                         "KICK=/opt/l2tproute/libexec/l2tp-routes-kick": f"KICK={kick}",
                         "timeout 2 logger ": f"timeout 2 {logger} "}.items():
            assert old in text, old
            text = text.replace(old, new)
        self.path = root / "hook"
        self.path.write_text(text)
        self.path.chmod(0o755)
        self.config = root / "client.conf"
        self.config.write_text("")

    def __call__(self, *args: str, **variables: str) -> subprocess.CompletedProcess:
        env = {C.RUN_DIR_ENV: str(self.run), C.CHAP_SECRETS_ENV: str(self.chap), **variables}
        return subprocess.run([str(self.path), *args], env=env, capture_output=True, timeout=30)

    @staticmethod
    def lines(path: Path) -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    def wait_kicks(self, count: int) -> list[str]:
        """The kick's recorded calls once there are `count` (it runs in the background)."""
        deadline = time.monotonic() + 20
        while len(self.lines(self.kicks)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.lines(self.kicks)

    def spooled(self) -> list[str]:
        return sorted(os.listdir(self.run / "spool")) if (self.run / "spool").is_dir() else []


CLIENT = {"script_type": "client-connect", "dev": "tun0", "username": "user3", "ifconfig_pool_remote_ip": "10.10.30.2"}


def quiet(done: subprocess.CompletedProcess) -> None:
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b""), done


def test_a_connect_copies_the_users_iroutes_and_spools_its_event(tmp_path):
    # The path the fallbacks below leave.
    hook = Hook(tmp_path)
    quiet(hook(str(hook.config), **CLIENT))
    assert hook.config.read_text() == "iroute 192.168.20.0 255.255.255.0\n"  # no IPv6 pool: no iroute-ipv6
    [event] = hook.spooled()
    assert event.split(",")[1:] == ["tun0", event.split(",")[2], "vpn-up", "10.10.30.2", PEER]
    assert hook.lines(hook.logged) == [] and hook.wait_kicks(1) == ["kick"]


BAD_CONNECTS = {
    "no dev": ({"dev": ""}, "no routes: expected dev and ifconfig_pool_remote_ip from OpenVPN"),
    "dev with a space": ({"dev": "tun0 x"}, "no routes: expected dev and ifconfig_pool_remote_ip from OpenVPN"),
    "no pool address": ({"ifconfig_pool_remote_ip": ""}, "no routes: expected dev and ifconfig_pool_remote_ip"),
    "address out of range": ({"ifconfig_pool_remote_ip": "10.10.30.256"}, "expected dev and ifconfig_pool"),
    "bad IPv6 address": ({"ifconfig_pool_remote_ip6": "fd00::1;x"}, "ifconfig_pool_remote_ip6 is not an IPv6 address"),
}


@pytest.mark.parametrize("case", BAD_CONNECTS, ids=BAD_CONNECTS.keys())
def test_a_connect_without_usable_variables_lets_the_client_in_without_routes(tmp_path, case):
    change, words = BAD_CONNECTS[case]
    hook = Hook(tmp_path)
    quiet(hook(str(hook.config), **{**CLIENT, **change}))
    assert hook.config.read_text() == "" and hook.spooled() == []
    [message] = hook.lines(hook.logged)
    assert message.startswith("openvpn client-connect: ") and words in message, message


def test_a_connect_without_the_config_argument_is_logged(tmp_path):
    hook = Hook(tmp_path)
    quiet(hook(**CLIENT))
    assert hook.spooled() == [] and hook.lines(hook.logged) == [
        "openvpn client-connect: tun0 client 10.10.30.2: no routes: expected one argument, the config file OpenVPN "
        "passes"]


@pytest.mark.parametrize("precompute", ["missing", "older than chap-secrets"])
def test_without_a_current_precompute_the_client_gets_in_and_the_worker_is_kicked(tmp_path, precompute):
    hook = Hook(tmp_path)
    stamp = hook.iroutes / "chap.stamp"
    if precompute == "missing":
        stamp.unlink()
    else:
        os.utime(hook.chap, ns=(stamp.stat().st_mtime_ns + 10**9,) * 2)
    quiet(hook(str(hook.config), **CLIENT))
    assert hook.config.read_text() == "" and hook.spooled() == []
    assert hook.lines(hook.logged) == [
        f"openvpn client-connect: tun0 client 10.10.30.2: no routes: {hook.iroutes} is missing or older than "
        f"{hook.chap}; the worker brings it up to date, the client gets its routes at its next connect"]
    assert hook.wait_kicks(1) == ["kick"]


def test_a_connect_that_cannot_spool_writes_no_iroutes_and_one_that_cannot_write_them_takes_its_event_back(
        tmp_path):
    hook = Hook(tmp_path)
    (hook.run / "spool").rmdir()
    quiet(hook(str(hook.config), **CLIENT))
    assert hook.config.read_text() == ""  # iroutes without the worker's kernel routes would black-hole
    assert hook.lines(hook.logged) == [
        f"openvpn client-connect: tun0 client 10.10.30.2: no routes: cannot create an event in {hook.run}/spool"]
    (hook.run / "spool").mkdir()
    quiet(hook(str(tmp_path / "gone" / "client.conf"), **CLIENT))
    assert hook.spooled() == []
    assert hook.lines(hook.logged)[-1] == (f"openvpn client-connect: tun0 client 10.10.30.2: no routes: cannot write "
                                           f"its iroutes into {tmp_path / 'gone' / 'client.conf'}")


BAD_DISCONNECTS = {
    "no dev": {"ifconfig_pool_remote_ip": "10.10.30.2"},
    "no address": {"dev": "tun0"},
    "dev with a slash": {"dev": "../tun0", "ifconfig_pool_remote_ip": "10.10.30.2"},
    "dev too long": {"dev": "t" * 16, "ifconfig_pool_remote_ip": "10.10.30.2"},
    "address with a comma": {"dev": "tun0", "ifconfig_pool_remote_ip": "10.10.30.2,x"},
    "IPv6 address": {"dev": "tun0", "ifconfig_pool_remote_ip": "fd00::2"},
}


@pytest.mark.parametrize("variables", BAD_DISCONNECTS.values(), ids=BAD_DISCONNECTS.keys())
def test_a_disconnect_without_a_usable_link_and_address_is_logged_and_spools_nothing(tmp_path, variables):
    hook = Hook(tmp_path)
    quiet(hook(script_type="client-disconnect", **variables))
    assert hook.spooled() == []
    assert hook.lines(hook.logged) == ["openvpn client-disconnect: ignored: expected dev and ifconfig_pool_remote_ip "
                                       "from OpenVPN"]


def test_a_disconnect_spools_its_event_and_one_that_cannot_is_logged(tmp_path):
    hook = Hook(tmp_path)
    quiet(hook(script_type="client-disconnect", dev="tun0", ifconfig_pool_remote_ip="10.10.30.2"))
    [name] = hook.spooled()
    assert name.endswith(",vpn-down,10.10.30.2") and hook.lines(hook.logged) == []
    os.unlink(hook.run / "spool" / name)
    (hook.run / "spool").rmdir()
    quiet(hook(script_type="client-disconnect", dev="tun0", ifconfig_pool_remote_ip="10.10.30.2"))
    assert hook.lines(hook.logged) == [f"openvpn client-disconnect: tun0 client 10.10.30.2: cannot create an event in "
                                       f"{hook.run}/spool; its routes stay until the next apply"]


def test_without_a_directory_for_its_flag_the_hook_kicks_the_worker_directly(tmp_path):
    hook = Hook(tmp_path)
    (hook.run / "openvpn-connect").rmdir()
    quiet(hook(script_type="client-disconnect", dev="tun0", ifconfig_pool_remote_ip="10.10.30.2"))
    assert len(hook.spooled()) == 1 and hook.wait_kicks(1) == ["kick"]  # sudo -n KICK, as root here


@pytest.mark.parametrize("script_type", ["", "up", "client-connect ", "learn-address"])
def test_an_unknown_script_type_is_logged_and_changes_nothing(tmp_path, script_type):
    hook = Hook(tmp_path)
    quiet(hook(str(hook.config), **{**CLIENT, "script_type": script_type}))
    assert hook.spooled() == [] and hook.config.read_text() == "" and hook.lines(hook.kicks) == []
    assert hook.lines(hook.logged) == [f"openvpn {script_type or 'hook'}: ignored: expected script_type "
                                       "client-connect or client-disconnect"]


def test_without_its_library_the_hook_does_nothing_and_lets_the_client_in(tmp_path):
    hook = Hook(tmp_path, lib=str(tmp_path / "missing.sh"))
    disconnect = {"script_type": "client-disconnect", "dev": "tun0", "ifconfig_pool_remote_ip": "10.10.30.2"}
    for variables in (CLIENT, disconnect):
        quiet(hook(str(hook.config), **variables))
    assert hook.spooled() == [] and hook.config.read_text() == "" and hook.lines(hook.logged) == []
