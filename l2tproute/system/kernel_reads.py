"""Reads of the kernel's routes and links that several operations and transports share: our tagged
routes (all, or one link's), a peer's link by the kernel's own lookup, who holds a slot, described."""

from __future__ import annotations

from dataclasses import dataclass

from l2tproute.core import constants as C
from l2tproute.core.kernel import Installed, Links, parse_links, parse_routes, slot_of
from l2tproute.core.model import IPv4Address, KernelRoute
from l2tproute.system.iproute2 import IpError, RouteRead, Runner, is_no_device_error, is_no_route_error


def read_tagged(runner: Runner, families=(4, 6), dev: str | None = None) -> list[Installed]:
    found: list[Installed] = []
    for family, rows in zip(families, runner.read_route_sets([RouteRead(f, tagged=True, dev=dev) for f in families])):
        if dev is not None:
            for row in rows:  # `ip` leaves out what it was asked to filter by
                row.setdefault("dev", dev)
        found += parse_routes(rows, family, tagged=True)
    return found


def peer_link(runner: Runner, peer: IPv4Address) -> str | None:
    """The link the peer is connected on, found by the kernel's own lookup (so its cost does not
    grow with the number of sessions): the link `ip route get PEER` names, when that link has an
    address whose `peer` is exactly PEER (parse_links' rule); otherwise the peer is not connected."""
    try:
        rows = runner.route_get(peer)
    except IpError as exc:
        if is_no_route_error(str(exc)):
            return None
        raise
    dev = rows[0].get("dev") if rows and rows[0].get("type") in (None, "unicast") else None
    if not dev:
        return None
    try:
        link = parse_links(runner.read_addrs(dev)).link_of(peer)
    except IpError as exc:
        if is_no_device_error(str(exc)):
            return None  # gone between the two reads: the session ended
        raise
    return link if link == dev else None


def peer_links(peer: IPv4Address, link: str | None) -> Links:
    """The Links of a one-peer read: only this peer, on its link."""
    return Links(by_peer={peer: link}, peer_on={link: peer}) if link is not None else Links()


def read_tagged_on(runner: Runner, link: str, families=(4, 6)) -> list[Installed] | None:
    """Our tagged routes on one link; None when the link is gone meanwhile."""
    try:
        return read_tagged(runner, families, dev=link)
    except IpError as exc:
        if is_no_device_error(str(exc)):
            return None
        raise


def read_slot_holders(runner: Runner, routes: list[KernelRoute], *, tagged: bool) -> list[Installed]:
    """The routes (ours, or every route when not `tagged`) in these routes' destinations; what one
    peer's few lines need instead of a dump."""
    return read_exact(runner, [route.dst for route in routes], tagged=tagged)


def read_exact(runner: Runner, destinations, *, tagged: bool) -> list[Installed]:
    """The routes (ours, or every route) of these destinations: one `exact` read each, each once,
    all in one `ip` where it can."""
    reads = [RouteRead(dst.version, tagged=tagged, exact=dst) for dst in dict.fromkeys(destinations)]
    found: list[Installed] = []
    for read, rows in zip(reads, runner.read_route_sets(reads)):
        found += parse_routes(rows, read.family, tagged=tagged)
    return found


def addrs_of(runner: Runner, dev: str) -> list:
    """`ip -json addr show dev DEV`: that link's row, or none when it does not exist (gone meanwhile)."""
    try:
        return runner.read_addrs(dev)
    except IpError as exc:
        if is_no_device_error(str(exc)):
            return []
        raise


def _in_slot(runner: Runner, route: KernelRoute) -> list[Installed]:
    """Every route, ours or not, in this route's slot."""
    family, slot = route.dst.version, slot_of(route)
    return [item for item in parse_routes(runner.read_routes(family, tagged=False, exact=route.dst), family)
            if slot_of(item.route) == slot]


def _described(item: Installed) -> str:
    via = f" via {item.route.gw}" if item.route.gw else ""
    what = "our route" if item.protocol == str(C.RT_PROTO) else f"a proto {proto_name(item.protocol)} route"
    return f"{what}{via} dev {item.route.dev}"


def foreign_holder(runner: Runner, route: KernelRoute) -> str | None:
    """The route somebody else installed in this route's slot, described; None when free or ours."""
    for item in _in_slot(runner, route):
        if item.protocol != str(C.RT_PROTO):
            return _described(item)
    return None


@dataclass(frozen=True)
class Holder:
    text: str
    ours: bool  # one of our routes (a live OpenVPN session's, which no apply replaces): the first one stays


def slot_holder(runner: Runner, route: KernelRoute) -> Holder:
    """What holds this route's slot, ours or somebody else's, described."""
    held = _in_slot(runner, route)
    if not held:
        return Holder("a route not installed by l2tp-routectl", False)
    return Holder(_described(held[0]), held[0].protocol == str(C.RT_PROTO))


def holder_text(runner: Runner, route: KernelRoute) -> str:
    return foreign_holder(runner, route) or "a route not installed by l2tp-routectl"


def refusal(route: KernelRoute, holder: str) -> str:
    return (f"{route.dst} is already routed by {holder}, which l2tp-routectl did not install; "
            "left alone (use --force to replace it)")


PROTO_NAMES = {"2": "kernel", "3": "boot", "4": "static", "11": "zebra", "12": "bird", "16": "dhcp", "186": "bgp"}


def proto_name(number: str) -> str:
    return PROTO_NAMES.get(number, number)
