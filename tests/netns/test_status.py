"""`status`: every state a route can be in, the exit status monitoring relies on, and no side effects."""

from __future__ import annotations

import json

import pytest

from l2tproute.core import constants as C

#: Reads the kernel: also against the built iproute2 4.15.0 and 5.5.0 (tests/support/iproute2s.py).
pytestmark = pytest.mark.iproute2_versions

PEER = "10.255.10.2"
OTHER = "10.255.10.3"
OFFLINE = "10.255.10.9"


def status(routectl, netns, *args):
    result = routectl("status", "--json", *args, ns=netns)
    assert result.stderr == "" or "warning" in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def states(doc) -> dict:
    """{(peer, route line): state} over every peer, plus extras under peer None."""
    found = {(p["peer"], r["route"]): r["state"] for p in doc["peers"] for r in p["routes"]}
    found.update({(None, r["route"]): r["state"] for r in doc["extra"]})
    return found


def test_everything_installed_is_ok_and_exit_0(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    assert routectl("add", "--peer", PEER, "--dst", "192.168.20.0/24", ns=netns).returncode == 0
    assert routectl("add", "--peer", OFFLINE, "--dst", "192.168.90.0/24", ns=netns).returncode == 0
    code, doc = status(routectl, netns)
    assert code == 0 and doc["ok"] is True and doc["drift"] is False
    assert states(doc) == {(PEER, "192.168.20.0/24 via 10.255.10.2"): "installed",
                           (OFFLINE, "192.168.90.0/24 via 10.255.10.9"): "wanted"}
    peers = {p["peer"]: (p["connected"], p["link"]) for p in doc["peers"]}
    assert peers == {PEER: (True, "ppp0"), OFFLINE: (False, None)}
    text = routectl("status", ns=netns)
    assert text.returncode == 0
    summary = "OK: 2 peers (1 connected); 1 installed, 1 wanted, 0 missing, 0 blocked, 0 extra"
    assert text.stdout.splitlines()[0] == summary
    assert "Peer 10.255.10.9: not connected" in text.stdout and "Peer 10.255.10.2: connected on ppp0" in text.stdout


def test_missing_blocked_and_extra_are_drift_with_exit_1(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    (store_dir / f"{PEER}.routes").write_bytes(
        b"192.168.20.0/24 via 10.255.10.2\n"  # installed
        b"192.168.21.0/24 via 10.255.10.2\n"  # missing: removed from the kernel below
        b"192.168.22.0/24 via 10.255.10.2\n"  # blocked: a proto static route holds it
        b"192.168.23.0/24 via 10.255.10.2\n")  # blocked: a blackhole holds it
    netns.ip("route", "add", "192.168.22.0/24", "via", PEER, "dev", "ppp0", "proto", "static")
    netns.ip("route", "add", "blackhole", "192.168.23.0/24")
    assert routectl("apply", ns=netns).returncode == 0
    netns.ip("route", "del", "192.168.21.0/24", "proto", str(C.RT_PROTO))
    netns.ip("route", "add", "10.99.0.0/16", "dev", "ppp0", "proto", str(C.RT_PROTO))  # extra, on ppp0
    netns.ip("route", "add", "10.98.0.0/16", "dev", "lo", "proto", str(C.RT_PROTO))  # extra, nobody's link
    code, doc = status(routectl, netns)
    assert code == 1 and doc["ok"] is False and doc["drift"] is True
    assert states(doc) == {
        (PEER, "192.168.20.0/24 via 10.255.10.2"): "installed",
        (PEER, "192.168.21.0/24 via 10.255.10.2"): "missing",
        (PEER, "192.168.22.0/24 via 10.255.10.2"): "blocked",
        (PEER, "192.168.23.0/24 via 10.255.10.2"): "blocked",
        (PEER, "10.99.0.0/16 dev ppp0"): "extra",
        (None, "10.98.0.0/16 dev lo"): "extra",
    }
    assert doc["summary"] == {"installed": 1, "wanted": 0, "missing": 1, "blocked": 2, "extra": 2}
    details = {r["route"]: r["detail"] for p in doc["peers"] for r in p["routes"]}
    assert "proto static route via 10.255.10.2 dev ppp0" in details["192.168.22.0/24 via 10.255.10.2"]
    assert "blackhole" in details["192.168.23.0/24 via 10.255.10.2"]
    text = routectl("status", ns=netns)
    assert text.returncode == 1 and text.stdout.startswith("DRIFT: 1 peer (1 connected); 1 installed, 0 wanted, "
                                                           "1 missing, 2 blocked, 2 extra\n")


def test_status_changes_nothing(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    (store_dir / f"{PEER}.routes").write_bytes(b"# kept\r\n192.168.21.0/24 via 10.255.10.2\n")
    netns.ip("route", "add", "10.99.0.0/16", "dev", "ppp0", "proto", str(C.RT_PROTO))
    before = netns.snapshot(), sorted(p.name for p in store_dir.iterdir())
    data = (store_dir / f"{PEER}.routes").read_bytes()
    code, doc = status(routectl, netns)
    assert code == 1 and doc["summary"]["missing"] == 1 and doc["summary"]["extra"] == 1
    assert (netns.snapshot(), sorted(p.name for p in store_dir.iterdir())) == before
    assert (store_dir / f"{PEER}.routes").read_bytes() == data


def test_peer_scope_reports_only_that_peer_and_its_link(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    netns.add_ppp("ppp1", OTHER)
    assert routectl("add", "--peer", PEER, "--dst", "192.168.20.0/24", ns=netns).returncode == 0
    (store_dir / f"{OTHER}.routes").write_bytes(b"192.168.30.0/24 via 10.255.10.3\n")  # missing, other peer
    netns.ip("route", "add", "10.97.0.0/16", "dev", "ppp1", "proto", str(C.RT_PROTO))  # extra on the other link
    code, doc = status(routectl, netns, "--peer", PEER)
    assert code == 0 and doc["peer"] == PEER
    assert states(doc) == {(PEER, "192.168.20.0/24 via 10.255.10.2"): "installed"}
    code, doc = status(routectl, netns, "--peer", OTHER)
    assert code == 1
    assert states(doc) == {(OTHER, "192.168.30.0/24 via 10.255.10.3"): "missing",
                           (OTHER, "10.97.0.0/16 dev ppp1"): "extra"}


def test_peer_without_routes_is_reported_and_not_drift(routectl, store_dir, netns):
    code, doc = status(routectl, netns, "--peer", PEER)
    assert code == 0 and doc["peers"] == [{"peer": PEER, "connected": False, "link": None, "routes": [],
                                          "invalid_lines": [], "openvpn": []}]
    text = routectl("status", "--peer", PEER, ns=netns)
    assert text.stdout.splitlines()[1] == "Peer 10.255.10.2: not connected; no routes stored"


def test_route_installed_differently_is_missing(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    netns.add_ppp("ppp1", OTHER)
    (store_dir / f"{PEER}.routes").write_bytes(b"192.168.20.0/24 via 10.255.10.2\n")
    netns.ip("route", "add", "192.168.20.0/24", "dev", "ppp1", "proto", str(C.RT_PROTO))
    code, doc = status(routectl, netns)
    route = doc["peers"][0]["routes"][0]
    assert code == 1 and route["state"] == "missing" and "192.168.20.0/24 dev ppp1" in route["detail"]
    assert routectl("apply", ns=netns).returncode == 0
    assert status(routectl, netns)[0] == 0


def test_second_line_for_the_same_destination_is_blocked(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    netns.add_ppp("ppp1", OTHER)
    (store_dir / f"{PEER}.routes").write_bytes(b"192.168.20.0/24 via 10.255.10.2\n")
    (store_dir / f"{OTHER}.routes").write_bytes(b"192.168.20.0/24 via 10.255.10.3\n")
    assert routectl("apply", ns=netns).returncode == 0
    code, doc = status(routectl, netns)
    assert code == 1
    assert states(doc) == {(PEER, "192.168.20.0/24 via 10.255.10.2"): "installed",
                           (OTHER, "192.168.20.0/24 via 10.255.10.3"): "blocked"}
    assert "peer 10.255.10.2" in doc["peers"][1]["routes"][0]["detail"]


def test_routes_in_other_tables_and_metrics_are_compared_in_their_slot(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    for extra in (["--metric", "50"], ["--table", "100"], ["--metric", "7", "--table", "101"]):
        assert routectl("add", "--peer", PEER, "--dst", "192.168.20.0/24", *extra, ns=netns).returncode == 0
    assert routectl("add", "--peer", PEER, "--dst", "2001:db8:100::/48", "--metric", "5", ns=netns).returncode == 0
    code, doc = status(routectl, netns)
    assert code == 0 and doc["summary"]["installed"] == 4
    netns.ip("route", "del", "192.168.20.0/24", "table", "101", "metric", "7")
    code, doc = status(routectl, netns)
    assert code == 1
    assert states(doc)[(PEER, "192.168.20.0/24 via 10.255.10.2 metric 7 table 101")] == "missing"
    assert doc["summary"] == {"installed": 3, "wanted": 0, "missing": 1, "blocked": 0, "extra": 0}
