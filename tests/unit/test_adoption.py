"""reconcile's rule for the old tool's routes, alone (no kernel): exactly `proto boot`, table main,
the destination, gateway and link of a line stored for the peer on that link is adopted with
`replace`; each look-alike is planned as a plain `add`, which the kernel refuses (blocked)."""

from __future__ import annotations

import pytest

from l2tproute.core.kernel import Installed, Links
from l2tproute.core.model import KernelRoute, make_route, parse_destination, parse_gateway, parse_peer
from l2tproute.core.reconcile import Want, adopts, old_tool_routes, plan

P, Q = parse_peer("10.255.10.1"), parse_peer("10.255.10.2")
LINKS = Links(by_peer={P: "ppp0", Q: "ppp1"})
DST = parse_destination("10.1.0.0/16")


def want(peer=P, gw=P, dev="ppp0") -> Want:
    route = make_route(peer, DST, gw)
    return Want(peer, route, KernelRoute(dst=DST, dev=dev, gw=gw))


def kernel(gw=P, dev="ppp0", protocol="3", table="main", metric=0) -> Installed:
    return Installed(KernelRoute(dst=DST, dev=dev, gw=gw, metric=metric, table=table), protocol)


def planned(found: Installed, wanted: Want):
    result = plan([wanted], [], force=False, removable=lambda item: True,
                  old=old_tool_routes([found], LINKS))
    return [c.verb for c in result.changes], [i for i, item in enumerate(result.installs) if item.adopt]


def test_the_old_tools_own_route_for_a_stored_line_is_replaced_and_counted_as_adopted():
    assert planned(kernel(), want()) == (["replace"], [0])
    assert adopts(want(), old_tool_routes([kernel()], LINKS)[kernel().slot])


@pytest.mark.parametrize("found, wanted", [
    (kernel(dev="ppp1", gw=Q), want()),  # the same destination on another link
    (kernel(protocol="4"), want()),  # proto static on the same link
    (kernel(protocol="12"), want()),  # proto bird
    (kernel(gw=parse_gateway("10.255.10.9")), want()),  # another gateway
    (kernel(table="100"), want()),  # another table (another slot: ours is added beside it)
    (kernel(metric=5), want()),  # another metric: another slot too
    (kernel(dev="ppp1", gw=Q), want(gw=Q, dev="ppp1")),  # a line of P that points at the link of Q
    (kernel(dev="lan0", gw=parse_gateway("192.168.50.9")), want()),  # not on a peer's link
], ids=["other link", "static", "bird", "other gateway", "other table", "other metric", "link of another peer",
        "not a peer link"])
def test_a_look_alike_is_never_adopted(found, wanted):
    assert planned(found, wanted) == (["add"], [])


def test_without_candidates_or_with_force_nothing_is_adopted():
    assert not any(item.adopt for item in plan([want()], [], force=False, removable=lambda item: True).installs)
    forced = plan([want()], [], force=True, removable=lambda item: True, old=old_tool_routes([kernel()], LINKS))
    assert [c.verb for c in forced.changes] == ["replace"]
