"""IPv6 destinations: stored like any line, installed as device routes on the peer's link.

A peer is still an IPv4 address (it names the file and is what pppd reports); an
IPv6 destination of that peer goes onto the peer's link as `ip -6 route ... dev
LINK proto 157`, with no gateway, and the panel's IPv4-only parsing of `list` keeps
seeing exactly the IPv4 routes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import syslog
from pathlib import Path

import pytest
from conftest import in_namespace, require, routectl_path

from l2tproute.core import constants as C
from l2tproute.fronts import link_events as hook
from l2tproute.system.iproute2 import IpRoute2
from l2tproute.system.store import Store

PEER, OTHER = "10.255.10.2", "10.255.10.3"
NET6, NET6B = "2001:db8:100::/48", "2001:db8:200::/64"
FILE = f"{PEER}.routes"


def enable_ipv6(netns) -> None:
    """Links made after this get IPv6 (a host may default new namespaces to disabled)."""
    for key in ("all", "default"):
        subprocess.run(["ip", "netns", "exec", netns.name, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=0"],
                       check=True)


@pytest.fixture
def online(netns):
    enable_ipv6(netns)
    netns.add_ppp("ppp0", PEER)
    netns.add_ppp("ppp1", OTHER)
    return netns


def tagged6(netns) -> set:
    """Our IPv6 routes as (dst, gateway, dev, metric)."""
    return {(r["dst"], r.get("gateway"), r["dev"], r.get("metric")) for r in netns.tagged(6)}


def test_add_installs_a_device_route_on_the_peers_link_and_writes_the_usual_line(routectl, store_dir, online):
    result = routectl("add", "--peer", PEER, "--dst", NET6, ns=online)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Added route: {NET6} via {PEER}\nInstalled on ppp0.\n"
    assert (store_dir / FILE).read_bytes() == f"{NET6} via {PEER}\n".encode()
    assert tagged6(online) == {(NET6, None, "ppp0", 1024)}
    assert online.tagged(4) == []
    again = routectl("add", "--peer", PEER, "--dst", NET6, ns=online)
    assert again.returncode == 0 and again.stdout.startswith(f"Route already exists: {NET6} via {PEER}\n")
    assert (store_dir / FILE).read_bytes() == f"{NET6} via {PEER}\n".encode()


def test_list_status_and_del_of_an_ipv6_destination(routectl, store_dir, online):
    assert routectl("add", "--peer", PEER, "--dst", "192.168.20.0/24", ns=online).returncode == 0
    assert routectl("add", "--peer", PEER, "--dst", NET6, ns=online).returncode == 0
    listed = routectl("list", "--peer", PEER)
    assert listed.returncode == 0 and listed.stderr == ""
    assert listed.stdout == f"Routes for peer {PEER}:\n192.168.20.0/24 via {PEER}\n{NET6} via {PEER}\n"
    status = routectl("status", "--json", ns=online)
    assert status.returncode == 0, status.stdout
    states = {r["route"]: r["state"] for p in json.loads(status.stdout)["peers"] for r in p["routes"]}
    assert states == {f"192.168.20.0/24 via {PEER}": "installed", f"{NET6} via {PEER}": "installed"}
    online.ip("-6", "route", "del", NET6, "proto", str(C.RT_PROTO))
    drift = routectl("status", "--json", ns=online)
    assert drift.returncode == 1
    assert {r["route"]: r["state"] for p in json.loads(drift.stdout)["peers"] for r in p["routes"]}[
        f"{NET6} via {PEER}"] == "missing"
    assert routectl("apply", "--peer", PEER, ns=online).returncode == 0
    assert tagged6(online) == {(NET6, None, "ppp0", 1024)}
    deleted = routectl("del", "--peer", PEER, "--dst", NET6, ns=online)
    assert deleted.returncode == 0 and deleted.stdout == f"Deleted route: {NET6} via {PEER}\n"
    assert tagged6(online) == set()
    assert (store_dir / FILE).read_bytes() == f"192.168.20.0/24 via {PEER}\n".encode()
    assert {r["dst"] for r in online.tagged(4)} == {"192.168.20.0/24"}


def test_metric_on_an_ipv6_destination(routectl, store_dir, online):
    result = routectl("add", "--peer", PEER, "--dst", NET6B, "--metric", "50", ns=online)
    assert result.returncode == 0, result.stderr
    assert (store_dir / FILE).read_bytes() == f"{NET6B} via {PEER} metric 50\n".encode()
    assert tagged6(online) == {(NET6B, None, "ppp0", 50)}
    assert routectl("del", "--peer", PEER, "--dst", NET6B, ns=online).returncode == 0
    assert tagged6(online) == set() and not (store_dir / FILE).exists()


def test_apply_all_installs_reconciles_and_then_changes_nothing(routectl, store_dir, online):
    (store_dir / FILE).write_bytes(f"{NET6} via {PEER}\n{NET6B} via {PEER} metric 50\n".encode())
    (store_dir / f"{OTHER}.routes").write_bytes(b"2001:db8:300::/48 via 10.255.10.3\n")
    # Tagged but no longer wanted by any file: reconcile removes it. Untagged: never touched.
    online.ip("-6", "route", "add", "2001:db8:999::/48", "dev", "ppp0", "proto", str(C.RT_PROTO))
    online.ip("-6", "route", "add", "2001:db8:777::/48", "dev", "ppp0", "proto", "static")
    first = routectl("apply", ns=online)
    assert first.returncode == 0, first.stderr
    assert "Removed stale route: 2001:db8:999::/48 dev ppp0" in first.stdout
    assert tagged6(online) == {(NET6, None, "ppp0", 1024), (NET6B, None, "ppp0", 50),
                               ("2001:db8:300::/48", None, "ppp1", 1024)}
    assert any(r["dst"] == "2001:db8:777::/48" and r.get("protocol") == "4" for r in online.routes(6))  # 4: static
    before = online.snapshot()
    second = routectl("apply", ns=online)
    assert second.returncode == 0
    assert "0 installed, 0 updated, 0 removed, 3 unchanged" in second.stdout
    assert online.snapshot() == before
    # A line removed by hand: the next apply takes its route out of the kernel.
    (store_dir / FILE).write_bytes(f"{NET6} via {PEER}\n".encode())
    third = routectl("apply", ns=online)
    assert third.returncode == 0 and f"Removed stale route: {NET6B} dev ppp0" in third.stdout
    assert tagged6(online) == {(NET6, None, "ppp0", 1024), ("2001:db8:300::/48", None, "ppp1", 1024)}


def test_offline_peer_gets_its_ipv6_routes_from_ip_up_and_loses_them_on_ip_down(routectl, store_dir, netns):
    enable_ipv6(netns)
    netns.add_ppp("ppp1", OTHER)
    netns.ip("-6", "route", "add", "2001:db8:300::/48", "dev", "ppp1", "proto", str(C.RT_PROTO))
    stored = routectl("add", "--peer", PEER, "--dst", NET6, ns=netns)
    assert stored.returncode == 0 and "is not connected" in stored.stdout
    assert tagged6(netns) == {("2001:db8:300::/48", None, "ppp1", 1024)}
    netns.add_ppp("ppp4", PEER)
    log = run_hook("up", netns, store_dir, "ppp4", PEER)
    assert not [m for p, m in log if p <= syslog.LOG_ERR], log
    assert tagged6(netns) == {(NET6, None, "ppp4", 1024), ("2001:db8:300::/48", None, "ppp1", 1024)}
    log = run_hook("down", netns, store_dir, "ppp4", PEER)
    assert any(f"Removed route: {NET6} dev ppp4" in m for _, m in log), log
    assert tagged6(netns) == {("2001:db8:300::/48", None, "ppp1", 1024)}  # the other user's stays


def run_hook(direction: str, netns, store_dir: Path, iface: str, peer: str) -> list[tuple[int, str]]:
    records: list[tuple[int, str]] = []
    code = hook.main(direction, ["l2tp-routes", iface, "/dev/pts/3", "0", "10.254.0.1", peer, ""], {},
                     log=lambda priority, message: records.append((priority, message)),
                     store=Store(str(store_dir)), runner=IpRoute2(netns.name), proc_sys="/nonexistent")
    assert code == 0
    return records


@pytest.mark.parametrize("args, expect", [
    (["--dst", NET6, "--gw", "10.255.10.9"], "--gw is for IPv4 destinations"),
    (["--dst", "2001:db8:100::1/48"], "did you mean 2001:db8:100::/48?"),
    (["--dst", "2001:DB8:100::/48"], "canonical form: 2001:db8:100::/48"),
    (["--dst", "2001:db8:100::/129"], "0-128"),
    (["--dst", "2001:db8:100::"], "did you mean 2001:db8:100::/128?"),
    (["--dst", "::/0"], "every address"),
])
def test_wrong_ipv6_input_is_one_line_exit_2_and_changes_nothing(routectl, store_dir, online, args, expect):
    before = online.snapshot()
    result = routectl("add", "--peer", PEER, *args, ns=online)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("l2tp-routectl: error: ") and len(result.stderr.splitlines()) == 1
    assert expect in result.stderr
    assert online.snapshot() == before and list(store_dir.iterdir()) == []


@pytest.mark.parametrize("dst", ["2001:db8:1::/64", "2001:db8::/32"])
def test_an_ipv6_destination_covering_a_server_network_is_refused(routectl, store_dir, online, dst):
    online.ip("tuntap", "add", "dev", "eth1", "mode", "tun")
    online.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "eth1", "nodad")
    online.ip("link", "set", "eth1", "up")
    before = online.snapshot()
    result = routectl("add", "--peer", PEER, "--dst", dst, ns=online)
    assert result.returncode == 2 and result.stdout == ""
    assert f"refusing {dst}: it covers 2001:db8:1::/64, a network on a link of this server" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert online.snapshot() == before and list(store_dir.glob("*.routes")) == []
    forced = routectl("add", "--peer", PEER, "--dst", dst, "--force", ns=online)
    assert forced.returncode == 0 and (dst, None, "ppp0", 1024) in tagged6(online)


def test_a_link_with_ipv6_disabled_refuses_the_route_and_nothing_is_stored(routectl, store_dir, online):
    subprocess.run(["ip", "netns", "exec", online.name, "sysctl", "-qw", "net.ipv6.conf.ppp0.disable_ipv6=1"],
                   check=True)
    result = routectl("add", "--peer", PEER, "--dst", NET6, ns=online)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "IPv6 is disabled" in result.stderr
    assert f"the kernel refused {NET6} dev ppp0:" in result.stderr
    assert "sysctl -w net.ipv6.conf.ppp0.disable_ipv6=0" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(store_dir.glob("*.routes")) == [] and online.tagged(6) == []


# -- the panel --------------------------------------------------------------

# The contract's panel rules, in the panel's language: run the command with every
# argument single-quoted and stderr mixed in; for `list --peer` keep the lines that,
# trimmed, start with digits.digits.digits.digits/digits, minus lines containing
# `Routes for peer` or `Peer:`; for `list` show the text as it is.
PANEL_PHP = r"""<?php
function routectl($cmd, $args) {
    $quoted = array_map(function ($a) { return "'" . str_replace("'", "'\\''", $a) . "'"; }, $args);
    return shell_exec($cmd . ' ' . implode(' ', $quoted) . ' 2>&1');
}
function panel_routes($output) {
    $routes = array();
    foreach (explode("\n", $output) as $line) {
        $line = trim($line);
        if (strpos($line, 'Routes for peer') !== false || strpos($line, 'Peer:') !== false) continue;
        if (preg_match('/^\d+\.\d+\.\d+\.\d+\/\d+/', $line)) $routes[] = $line;
    }
    return $routes;
}
$cmd = $argv[1];
$peer = $argv[2];
echo json_encode(array(
    'peer_routes' => panel_routes(routectl($cmd, array('list', '--peer', $peer))),
    'all_text' => routectl($cmd, array('list')),
)), "\n";
"""


def test_the_panels_ipv4_parsing_keeps_working_with_ipv6_lines_present(routectl, store_dir, online, tmp_path):
    require(shutil.which("php") is not None, "php-cli (php)")
    for dst in ("192.168.20.0/24", NET6, "10.20.0.0/16", NET6B):
        assert routectl("add", "--peer", PEER, "--dst", dst, ns=online).returncode == 0
    assert routectl("add", "--peer", OTHER, "--dst", "2001:db8:300::/48", ns=online).returncode == 0
    script = tmp_path / "panel.php"
    script.write_text(PANEL_PHP)
    out = subprocess.run(in_namespace(["php", str(script), routectl_path(), PEER]), capture_output=True, text=True,
                         check=True)
    seen = json.loads(out.stdout)
    assert seen["peer_routes"] == [f"192.168.20.0/24 via {PEER}", f"10.20.0.0/16 via {PEER}"]
    assert seen["all_text"] == (f"All routes:\nPeer: {PEER}\n192.168.20.0/24 via {PEER}\n{NET6} via {PEER}\n"
                                f"10.20.0.0/16 via {PEER}\n{NET6B} via {PEER}\n\n"
                                f"Peer: {OTHER}\n2001:db8:300::/48 via {OTHER}\n\n")
