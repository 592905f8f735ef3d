"""BGP export with the shipped BIRD 2 configuration: two real `bird` daemons, two namespaces.

The L2TP server namespace runs contrib/bird/bird.conf (only the include path and
the log line are changed) with contrib/bird/l2tproute.conf; the upstream router
namespace runs a plain BGP speaker that writes what it learns into its kernel
table. A veth pair joins them with the addresses the example configuration uses.
What the upstream's kernel holds (`proto bird`) is exactly what the server announced.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import pytest

from l2tproute import constants as C, hook
from l2tproute.iproute2 import IpRoute2
from l2tproute.store import Store

from conftest import REPO, Netns

pytestmark = pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is not installed (apt-get install bird2)")

BIRD_DIR = REPO / "contrib" / "bird"
PEER = "10.255.10.2"
SERVER4, UPSTREAM4 = "192.0.2.1", "192.0.2.2"
SERVER6, UPSTREAM6 = "2001:db8:ffff::1", "2001:db8:ffff::2"
#: Seconds a BGP change may take to reach the upstream's kernel (it takes about one).
SETTLE = 30.0
_counter = itertools.count()

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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def wait_for(what: str, check: Callable[[], bool], explain: Callable[[], str]) -> None:
    """Poll until `check()` holds; fail after SETTLE seconds with `explain()`."""
    deadline = time.monotonic() + SETTLE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not seen within {SETTLE:g} s: {explain()}")
        time.sleep(0.2)


class Pair:
    def __init__(self, server: Netns, upstream: Netns, birds: List[Bird]):
        self.server, self.upstream, self.birds = server, upstream, birds

    def announced(self) -> set:
        """What the upstream learned by BGP: its `proto bird` routes, (dst, gateway)."""
        found = set()
        for family in (4, 6):
            for row in self.upstream.routes(family, "proto", "bird"):
                found.add((row["dst"], row.get("gateway")))
        return found

    def explain(self) -> str:
        server, upstream = self.birds
        return (f"upstream kernel has {sorted(self.announced())}; server bird: "
                f"{server.birdc('show', 'route', 'all').strip()[-1500:]}; upstream log: "
                f"{upstream.log.read_text()[-1500:] if upstream.log.exists() else ''}")


@pytest.fixture
def pair(netns, store_dir):
    _enable_ipv6(netns.name)
    upstream = Netns(f"l2u-{os.getpid()}-{next(_counter)}")
    subprocess.run(["ip", "netns", "add", upstream.name], check=True)
    directory = Path(tempfile.mkdtemp(prefix="l2tbgp-"))  # short: a unix socket path has 107 bytes
    birds: List[Bird] = []
    try:
        _enable_ipv6(upstream.name)
        upstream.ip("link", "set", "lo", "up")
        netns.ip("link", "add", "up0", "type", "veth", "peer", "name", "dn0", "netns", upstream.name)
        for ns, dev, v4, v6 in ((netns, "up0", SERVER4, SERVER6), (upstream, "dn0", UPSTREAM4, UPSTREAM6)):
            ns.ip("addr", "add", f"{v4}/30", "dev", dev)
            ns.ip("-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            ns.ip("link", "set", dev, "up")
        netns.add_ppp("ppp0", PEER)
        birds.append(Bird(netns.name, directory, "server", server_conf(directory / "server.log")))
        birds.append(Bird(upstream.name, directory, "upstream", UPSTREAM_CONF.format(log=directory / "upstream.log")))
        result = Pair(netns, upstream, birds)
        for bird in birds:
            wait_for("bird's control socket", bird.sock.exists,
                     lambda: bird.proc.stderr.read1().decode() if bird.proc.poll() is not None else "still starting")
        server = birds[0]
        wait_for("both BGP sessions established",
                 lambda: server.birdc("show", "protocols").count("Established") == 2,
                 lambda: server.birdc("show", "protocols"))
        yield result
    finally:
        for bird in birds:
            bird.stop()
        subprocess.run(["ip", "netns", "del", upstream.name], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


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


def down_hook(pair: Pair, store_dir: Path) -> List[Tuple[int, str]]:
    records: List[Tuple[int, str]] = []
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
    assert any("3 routes removed, 0 failed" in message for _, message in log), log
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
