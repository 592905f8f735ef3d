"""BGP export with the shipped configurations: real daemons in two namespaces.

The L2TP server namespace runs contrib/bird/bird.conf (only the include path and
the log line are changed) with contrib/bird/l2tproute.conf, or FRR's zebra and
bgpd with contrib/frr/frr.conf as it is; the upstream router namespace runs a
plain BIRD BGP speaker that writes what it learns into its kernel table. A veth
pair joins them with the addresses the example configurations use. What the
upstream's kernel holds (`proto bird`) is exactly what the server announced.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from conftest import REPO, Netns, require

from l2tproute.core import constants as C
from l2tproute.fronts import link_events as hook
from l2tproute.system.iproute2 import IpRoute2
from l2tproute.system.store import Store

BIRD_DIR = REPO / "contrib" / "bird"
FRR_CONF = REPO / "contrib" / "frr" / "frr.conf"
FRR_BIN = Path("/usr/lib/frr")
PEER = "10.255.10.2"
SERVER4, UPSTREAM4 = "192.0.2.1", "192.0.2.2"
SERVER6, UPSTREAM6 = "2001:db8:ffff::1", "2001:db8:ffff::2"
#: Seconds a BGP change may take to reach the upstream's kernel before the test fails. It
#: takes about one, a vanished link up to BIRD's 10 s device scan; the bound only ends a wait
#: for what never comes (every wait returns as soon as its condition holds), so it is
#: generous for a loaded CI machine. L2TP_TEST_BGP_SETTLE sets it.
SETTLE = float(os.environ.get("L2TP_TEST_BGP_SETTLE", "120"))
_counter = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def bird_installed():
    """Every test here runs BIRD (run-tests.sh installs bird2): missing fails, never skips."""
    require(shutil.which("bird") is not None and shutil.which("birdc") is not None, "bird2 (bird, birdc)")


@pytest.fixture
def frr_installed():
    require(all((FRR_BIN / d).exists() for d in ("zebra", "bgpd")) and shutil.which("vtysh") is not None,
            f"FRR ({FRR_BIN}/zebra, {FRR_BIN}/bgpd, vtysh)")

UPSTREAM_CONF = """
log "{log}" all;
router id 192.0.2.2;
protocol device {{ scan time 10; }}
protocol kernel {{ ipv4 {{ import none; export all; }}; }}
protocol kernel {{ ipv6 {{ import none; export all; }}; }}
protocol bgp server4 {{
    local 192.0.2.2 as 65000; neighbor 192.0.2.1 as 65010;
    connect delay time 1; connect retry time 1;
    ipv4 {{ import all; export none; }};
}}
protocol bgp server6 {{
    local 2001:db8:ffff::2 as 65000; neighbor 2001:db8:ffff::1 as 65010;
    connect delay time 1; connect retry time 1;
    ipv6 {{ import all; export none; }};
}}
"""


def server_conf(log: Path) -> str:
    """The shipped example, pointed at this checkout's l2tproute.conf and a log file."""
    text = (BIRD_DIR / "bird.conf").read_text()
    assert 'include "/etc/bird/l2tproute.conf";' in text and "log syslog all;" in text
    text = text.replace('include "/etc/bird/l2tproute.conf";', f'include "{BIRD_DIR / "l2tproute.conf"}";')
    return text.replace("log syslog all;", f'log "{log}" all;')


class Bird:
    """One bird daemon in the foreground inside a namespace, with its own control socket."""

    def __init__(self, ns: str, directory: Path, name: str, conf: str):
        self.ns = ns
        self.conf = directory / f"{name}.conf"
        self.sock = directory / f"{name}.ctl"
        self.log = directory / f"{name}.log"
        self.conf.write_text(conf)
        parsed = subprocess.run(["bird", "-p", "-c", str(self.conf)], capture_output=True, text=True)
        assert parsed.returncode == 0, f"{name}: {parsed.stderr}"
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "bird", "-f", "-c", str(self.conf),
                                      "-s", str(self.sock), "-P", str(directory / f"{name}.pid")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def birdc(self, *args: str) -> str:
        return subprocess.run(["birdc", "-s", str(self.sock), *args], capture_output=True, text=True,
                              timeout=10).stdout

    def stop(self) -> None:
        _stop(self.proc)


def wait_for(what: str, check: Callable[[], bool], explain: Callable[[], str]) -> None:
    """Poll until `check()` holds; fail after SETTLE seconds with `explain()`."""
    deadline = time.monotonic() + SETTLE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not seen within {SETTLE:g} s: {explain()}")
        time.sleep(0.2)


class Frr:
    """FRR's zebra and bgpd in the foreground inside a namespace, configured by vtysh from a file."""

    def __init__(self, ns: str, directory: Path, conf: Path):
        self.directory = directory
        directory.parent.chmod(0o711)  # the daemons drop to user frr: it must reach its directory
        shutil.chown(directory, "frr", "frr")
        common = ["-u", "frr", "-g", "frr", "-P", "0", "--vty_socket", str(directory),
                  "-z", str(directory / "zserv.api")]
        self.procs = []
        for daemon in ("zebra", "bgpd"):
            empty = directory / f"{daemon}.conf"
            empty.write_text("")
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, str(FRR_BIN / daemon), *common, "-f", str(empty),
                 "-i", str(directory / f"{daemon}.pid"), "--log", f"file:{directory / daemon}.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            proc = self.procs[-1]
            wait_for(f"{daemon}'s vty socket", (directory / f"{daemon}.vty").exists,
                     lambda proc=proc, daemon=daemon: (f"exit status {proc.poll()}; "
                                                       f"log: {_tail(directory / (daemon + '.log'))}"))
        applied = subprocess.run(["vtysh", "--vty_socket", str(directory), "-f", str(conf)],
                                 capture_output=True, text=True, timeout=30)
        assert applied.returncode == 0, applied.stdout + applied.stderr

    def vtysh(self, command: str) -> str:
        return subprocess.run(["vtysh", "--vty_socket", str(self.directory), "-c", command],
                              capture_output=True, text=True, timeout=10).stdout

    def stop(self) -> None:
        for proc in self.procs:
            _stop(proc)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-1500:] if path.exists() else "(none)"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Pair:
    def __init__(self, server: Netns, upstream: Netns, upstream_bird: Bird, describe: Callable[[], str]):
        self.server, self.upstream, self.upstream_bird, self.describe = server, upstream, upstream_bird, describe

    def announced(self) -> set:
        """What the upstream learned by BGP: its `proto bird` routes, (dst, gateway)."""
        found = set()
        for family in (4, 6):
            for row in self.upstream.routes(family, "proto", "bird"):
                found.add((row["dst"], row.get("gateway")))
        return found

    def explain(self) -> str:
        log = self.upstream_bird.log
        return (f"upstream kernel has {sorted(self.announced())}; server: {self.describe()[-1500:]}; "
                f"upstream log: {log.read_text()[-1500:] if log.exists() else ''}")


@contextlib.contextmanager
def routers(server: Netns, start_server: Callable[[Path], object]) -> Iterator[Pair]:
    """The server namespace joined to a fresh upstream namespace, both BGP sessions up."""
    _enable_ipv6(server.name)
    upstream = Netns(f"l2u-{os.getpid()}-{next(_counter)}")
    subprocess.run(["ip", "netns", "add", upstream.name], check=True)
    directory = Path(tempfile.mkdtemp(prefix="l2tbgp-"))  # short: a unix socket path has 107 bytes
    daemons: list = []
    try:
        _enable_ipv6(upstream.name)
        upstream.ip("link", "set", "lo", "up")
        server.ip("link", "add", "up0", "type", "veth", "peer", "name", "dn0", "netns", upstream.name)
        for ns, dev, v4, v6 in ((server, "up0", SERVER4, SERVER6), (upstream, "dn0", UPSTREAM4, UPSTREAM6)):
            ns.ip("addr", "add", f"{v4}/30", "dev", dev)
            ns.ip("-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            ns.ip("link", "set", dev, "up")
        server.add_ppp("ppp0", PEER)
        (directory / "server").mkdir()
        daemons.append(start_server(directory / "server"))
        bird = Bird(upstream.name, directory, "upstream", UPSTREAM_CONF.format(log=directory / "upstream.log"))
        daemons.append(bird)
        wait_for("the upstream bird's control socket", bird.sock.exists,
                 lambda: bird.proc.stderr.read1().decode() if bird.proc.poll() is not None else "still starting")
        wait_for("both BGP sessions established", lambda: bird.birdc("show", "protocols").count("Established") == 2,
                 lambda: bird.birdc("show", "protocols"))
        describe = getattr(daemons[0], "describe", lambda: "")
        yield Pair(server, upstream, bird, describe)
    finally:
        for daemon in daemons:
            daemon.stop()
        subprocess.run(["ip", "netns", "del", upstream.name], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pair(netns, store_dir):
    """The server runs the shipped BIRD configuration."""
    def start(directory: Path) -> Bird:
        bird = Bird(netns.name, directory, "server", server_conf(directory / "server.log"))
        bird.describe = lambda: bird.birdc("show", "route", "all")
        return bird

    with routers(netns, start) as result:
        yield result


@pytest.fixture
def frr_pair(frr_installed, netns, store_dir):
    """The server runs FRR with the shipped frr.conf, unchanged."""
    def start(directory: Path) -> Frr:
        frr = Frr(netns.name, directory, FRR_CONF)
        frr.describe = lambda: frr.vtysh("show bgp ipv4 unicast") + frr.vtysh("show bgp ipv6 unicast")
        return frr

    with routers(netns, start) as result:
        yield result


def _enable_ipv6(ns: str) -> None:
    for key in ("all", "default"):
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=0"], check=True)


def untagged_routes(server: Netns) -> None:
    """Routes a server has that are not l2tp-routectl's: none of them may ever be announced."""
    server.add_lan("eth1", "172.16.5.1/24")  # a connected network
    server.ip("route", "add", "192.168.77.0/24", "via", PEER, "dev", "ppp0", "proto", "static")
    server.ip("route", "add", "192.168.78.0/24", "via", PEER, "dev", "ppp0")  # proto boot
    server.ip("route", "add", "198.51.100.0/24", "via", "172.16.5.9", "dev", "eth1", "proto", "dhcp")
    server.ip("-6", "route", "add", "2001:db8:777::/48", "dev", "ppp0", "proto", "static")


def down_hook(pair: Pair, store_dir: Path) -> list[tuple[int, str]]:
    records: list[tuple[int, str]] = []
    hook.main("down", ["l2tp-routes", "ppp0", "/dev/pts/3", "0", "10.254.0.1", PEER, ""], {},
              log=lambda priority, message: records.append((priority, message)),
              store=Store(str(store_dir)), runner=IpRoute2(pair.server.name), proc_sys="/nonexistent")
    return records


def test_add_is_announced_del_and_ip_down_withdraw_and_untagged_routes_never_leave(pair, routectl, store_dir):
    server = pair.server
    untagged_routes(server)
    for dst in ("192.168.20.0/24", "10.20.0.0/16", "2001:db8:100::/48"):
        result = routectl("add", "--peer", PEER, "--dst", dst, ns=server)
        assert result.returncode == 0 and "Installed on ppp0." in result.stdout, result.stderr
    expected = {("192.168.20.0/24", SERVER4), ("10.20.0.0/16", SERVER4), ("2001:db8:100::/48", SERVER6)}
    wait_for("the three added routes at the upstream", lambda: expected <= pair.announced(), pair.explain)
    # An untagged route added while the session is up is not announced either.
    server.ip("route", "add", "192.168.79.0/24", "via", PEER, "dev", "ppp0", "proto", "static")
    assert routectl("add", "--peer", PEER, "--dst", "192.168.21.0/24", ns=server).returncode == 0
    expected.add(("192.168.21.0/24", SERVER4))
    wait_for("the fourth added route at the upstream", lambda: expected <= pair.announced(), pair.explain)
    assert pair.announced() == expected  # and nothing else: no static, boot, dhcp or connected route

    assert routectl("del", "--peer", PEER, "--dst", "192.168.20.0/24", ns=server).returncode == 0
    expected.discard(("192.168.20.0/24", SERVER4))
    wait_for("the withdrawal after del", lambda: pair.announced() == expected, pair.explain)

    log = down_hook(pair, store_dir)
    assert any("Released ppp0 of peer 10.255.10.2: 3 removed, 0 failed." in message for _, message in log), log
    wait_for("the withdrawal after ip-down", lambda: pair.announced() == set(), pair.explain)
    # The untagged routes are still in the server's kernel: the filter, not their absence, kept them home.
    assert {r["dst"] for r in server.routes(4)} >= {"192.168.77.0/24", "192.168.78.0/24", "192.168.79.0/24",
                                                     "198.51.100.0/24", "172.16.5.0/24"}


def test_apply_is_announced_and_bird_never_writes_the_servers_kernel(pair, routectl, store_dir):
    server = pair.server
    (store_dir / f"{PEER}.routes").write_bytes(b"192.168.30.0/24 via 10.255.10.2\n2001:db8:300::/48 via 10.255.10.2\n")
    before = snapshot(server)
    assert routectl("apply", ns=server).returncode == 0
    expected = {("192.168.30.0/24", SERVER4), ("2001:db8:300::/48", SERVER6)}
    wait_for("the applied routes at the upstream", lambda: pair.announced() == expected, pair.explain)
    new = [json.loads(row) for row in snapshot(server) - before]
    # Only our two routes are new: BIRD added nothing to the server's kernel (`export none`).
    assert sorted((r["dst"], r.get("protocol")) for r in new) == [("192.168.30.0/24", str(C.RT_PROTO)),
                                                                   ("2001:db8:300::/48", str(C.RT_PROTO))]


def snapshot(ns: Netns) -> set:
    return {json.dumps(r, sort_keys=True) for family in (4, 6) for r in ns.routes(family)}


def test_frr_config_is_valid_for_vtysh(frr_installed):
    checked = subprocess.run(["vtysh", "-C", "-f", str(FRR_CONF)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_frr_announces_users_routes_and_withdraws_them_and_keeps_other_space_home(frr_pair, routectl, store_dir):
    """FRR sees every route it did not install as `kernel` (no protocol number), so frr.conf
    bounds the export by the users' address space; what lies outside it stays home."""
    server = frr_pair.server
    server.add_lan("eth1", "172.16.5.1/24")
    server.ip("route", "add", "default", "via", "172.16.5.9", "dev", "eth1")
    server.ip("route", "add", "198.51.100.0/24", "via", "172.16.5.9", "dev", "eth1", "proto", "dhcp")
    server.ip("-6", "route", "add", "2001:db8:777::/48", "dev", "ppp0", "proto", "static")
    for dst in ("192.168.20.0/24", "10.20.0.0/16", "2001:db8:100::/48"):
        result = routectl("add", "--peer", PEER, "--dst", dst, ns=server)
        assert result.returncode == 0 and "Installed on ppp0." in result.stdout, result.stderr
    expected = {("192.168.20.0/24", SERVER4), ("10.20.0.0/16", SERVER4), ("2001:db8:100::/48", SERVER6)}
    wait_for("the added routes at the upstream", lambda: expected <= frr_pair.announced(), frr_pair.explain)
    assert frr_pair.announced() == expected
    assert routectl("del", "--peer", PEER, "--dst", "192.168.20.0/24", ns=server).returncode == 0
    expected.discard(("192.168.20.0/24", SERVER4))
    wait_for("the withdrawal after del", lambda: frr_pair.announced() == expected, frr_pair.explain)
    down_hook(frr_pair, store_dir)
    wait_for("the withdrawal after ip-down", lambda: frr_pair.announced() == set(), frr_pair.explain)


def test_a_link_that_vanishes_without_ip_down_is_withdrawn_by_the_next_scan(pair, routectl, store_dir):
    """A session that ends without ip-down (pppd killed): the kernel drops the link's routes
    on its own, and the upstream must lose them all the same."""
    for dst in ("192.168.20.0/24", "2001:db8:100::/48"):
        assert routectl("add", "--peer", PEER, "--dst", dst, ns=pair.server).returncode == 0
    expected = {("192.168.20.0/24", SERVER4), ("2001:db8:100::/48", SERVER6)}
    wait_for("the added routes at the upstream", lambda: pair.announced() == expected, pair.explain)
    pair.server.del_link("ppp0")
    wait_for("the withdrawal after the link vanished", lambda: pair.announced() == set(), pair.explain)
