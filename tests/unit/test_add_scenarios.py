"""`add` against the in-memory kernel: where a route goes, and every refusal."""

from __future__ import annotations

from support import scenarios as s
from support.scenarios import PEER1, PEER2, World

from l2tproute.core import constants as C


def test_add_installs_on_the_peers_link_with_our_tag(tmp_path):
    w = World.in_memory(tmp_path)
    s.add_installs_on_the_peers_link(w)
    add = w.steps["add"].value
    assert (add.status, add.link, add.kernel_error) == ("added", "ppp0", None)
    assert w.file(PEER1) == b"10.1.0.0/24 via 10.255.10.1\n"
    assert w.tagged() == {("10.1.0.0/24", PEER1, "ppp0", "main")}
    row = next(r for r in w.kernel.routes(4) if r["dst"] == "10.1.0.0/24")
    assert row["protocol"] == str(C.RT_PROTO) and "metric" not in row  # table main, metric 0, our tag
    assert w.steps["add6"].value.link == "ppp1"
    assert w.tagged(6) == {("2001:db8:1::/48", None, "ppp1", "main")}  # IPv6 goes as a device route
    assert w.file(PEER2) == b"2001:db8:1::/48 via 10.255.10.2\n"


def test_repeat_add_changes_nothing(tmp_path):
    w = World.in_memory(tmp_path)
    s.repeat_add_changes_nothing(w)
    assert w.steps["first"].value.status == "added"
    assert w.steps["again"].ok and w.steps["again"].value.status == "exists"
    assert w.steps["after_again"] == w.steps["after_first"]
    assert w.file(PEER1) == b"10.1.0.0/24 via 10.255.10.1\n"


def test_foreign_route_is_refused_unless_force(tmp_path):
    w = World.in_memory(tmp_path)
    s.foreign_route_refused_unless_force(w)
    assert w.steps["static"].error.startswith("Refused: 10.9.0.0/24 is already routed by a proto static route "
                                              "via 192.168.50.7 dev eth1")
    assert "proto boot route via 10.255.10.1 dev ppp0" in w.steps["boot"].error
    assert "proto static route" in w.steps["offline"].error  # no link to try: the holder is looked up
    assert w.steps["after_refusals"] == w.steps["before"]
    assert w.steps["forced"].value.status == "added"
    assert w.files() == {f"{PEER1}.routes": b"10.9.0.0/24 via 10.255.10.1\n"}
    assert w.tagged() == {("10.9.0.0/24", PEER1, "ppp0", "main")}
    boot = [r for r in w.kernel.routes(4) if r["dst"] == "10.8.0.0/24"]
    assert boot == [{"dst": "10.8.0.0/24", "gateway": PEER1, "dev": "ppp0", "flags": ["linkdown"]}]


def test_two_peers_cannot_have_the_same_destination(tmp_path):
    w = World.in_memory(tmp_path)
    s.two_peers_same_destination_refused(w)
    assert w.steps["first"].ok
    for step in ("second", "second_offline_owner"):
        assert w.steps[step].error.startswith("Refused: 10.1.0.0/24 is already routed to peer 10.255.10.1")
    assert list(w.files()) == [f"{PEER1}.routes"]
    assert w.tagged() == {("10.1.0.0/24", PEER1, "ppp0", "main")}


def test_a_route_the_kernel_refuses_is_not_stored(tmp_path):
    w = World.in_memory(tmp_path)
    s.unreachable_gateway_and_missing_device_refused(w)
    assert w.steps["bad_gateway"].error == ("IpError: the kernel refused 10.5.0.0/24 via 10.9.9.9 dev ppp0: "
                                            "Error: Nexthop has invalid gateway.; nothing was changed")
    assert "Cannot find device" in w.steps["missing_device"].error
    assert w.files() == {} and w.tagged() == set()
