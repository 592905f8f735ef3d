"""IPv6 lines of a user connected over OpenVPN with `server-ipv6`: add, del and apply --peer
put them via the client's IPv6 pool address on the tun, as the full apply does
(tests/system/test_openvpn_connect.py with a real server; here the session record alone, as
the worker leaves it, on a tun in a scratch namespace)."""

from __future__ import annotations

import ipaddress
import os

import pytest
from test_ipv6 import enable_ipv6

from l2tproute.core import constants as C
from l2tproute.core.model import parse_peer
from l2tproute.transports.openvpn.sessions import Session, SessionRecords

PEER = "10.255.10.1"
CLIENT4, CLIENT6 = "10.10.30.2", "fd00:10:30::1000"
NET4, NET6, NET6B = "10.1.0.0/24", "2001:db8:5::/48", "2001:db8:6::/64"


@pytest.fixture
def vpn(netns):
    enable_ipv6(netns)
    netns.add_lan("tun0", "10.10.30.1/24")
    netns.ip("-6", "addr", "add", "fd00:10:30::1/64", "dev", "tun0", "nodad")
    # The record as the worker leaves it, in the directory of the tun's namespace.
    records = SessionRecords(os.environ[C.RUN_DIR_ENV], netns=netns.name)
    records.write(Session("tun0", parse_peer(CLIENT4), parse_peer(PEER), ipaddress.IPv6Address(CLIENT6)))
    return netns


def ours6(ns) -> set:
    return {(r["dst"], r.get("gateway"), r["dev"]) for r in ns.tagged(6)}


def test_add_del_and_apply_peer_put_ipv6_lines_via_the_clients_ipv6_address(routectl, store_dir, vpn):
    for dst in (NET4, NET6, NET6B):
        done = routectl("add", "--peer", PEER, "--dst", dst, ns=vpn)
        assert done.returncode == 0, done
    assert ours6(vpn) == {(NET6, CLIENT6, "tun0"), (NET6B, CLIENT6, "tun0")}
    assert vpn.tagged_set() == {(NET4, CLIENT4, "tun0", "main")}
    assert (store_dir / f"{PEER}.routes").read_text() == f"{NET4} via {PEER}\n{NET6} via {PEER}\n{NET6B} via {PEER}\n"

    done = routectl("del", "--peer", PEER, "--dst", NET6, ns=vpn)
    assert done.returncode == 0, done
    assert ours6(vpn) == {(NET6B, CLIENT6, "tun0")}

    vpn.ip("-6", "route", "del", NET6B, "proto", str(C.RT_PROTO))  # lost, as by a reconnect race
    done = routectl("apply", "--peer", PEER, ns=vpn)
    assert done.returncode == 0, done
    assert ours6(vpn) == {(NET6B, CLIENT6, "tun0")}
    assert vpn.tagged_set() == {(NET4, CLIENT4, "tun0", "main")}

    done = routectl("del", "--peer", PEER, "--dst", "all", ns=vpn)
    assert done.returncode == 0, done
    assert ours6(vpn) == set() and vpn.tagged_set() == set()


def test_without_an_ipv6_address_in_the_session_the_ipv6_lines_wait(routectl, store_dir, vpn):
    records = SessionRecords(os.environ[C.RUN_DIR_ENV], netns=vpn.name)
    records.write(Session("tun0", parse_peer(CLIENT4), parse_peer(PEER)))
    done = routectl("add", "--peer", PEER, "--dst", NET6, ns=vpn)
    assert done.returncode == 0, done
    assert ours6(vpn) == set()
    assert (store_dir / f"{PEER}.routes").read_text() == f"{NET6} via {PEER}\n"
