"""The kernel's state as `ip -json` reports it, turned into typed values once."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Tuple

from l2tproute.core.maintable import MAIN, is_main, normal_table
from l2tproute.core.model import (
    IPv4Address,
    IPv6Address,
    KernelRoute,
    Network,
    ipv4_address,
    ipv4_int,
    ipv4_network,
)

#: (destination, table id, metric): the slot the kernel holds one route in. An alias is evaluated
#: at import, unlike an annotation: typing.Tuple, as tuple[...] fails on Python 3.8.
Slot = Tuple[Network, str, int]

DEFAULT_METRIC = {4: 0, 6: 1024}
_BITS_RE = re.compile(r"(?:3[0-2]|[12][0-9]|[0-9])", re.ASCII)


def slot_of(route: KernelRoute) -> Slot:
    metric = route.metric if route.metric is not None else DEFAULT_METRIC[route.dst.version]
    return (route.dst, route.table or MAIN, metric)


@dataclass(frozen=True)
class Installed:
    """A route read from the kernel."""

    route: KernelRoute
    protocol: str  # numeric, as `ip -N` prints it; empty when filtered by protocol

    @property
    def slot(self) -> Slot:
        return slot_of(self.route)


def parse_network(text: str, family: int) -> Network | None:
    if text == "default":
        return ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")
    if family == 4:
        # The kernel prints canonical dotted quads: from integers, not ipaddress's text parser.
        addr_text, slash, bits_text = text.partition("/")
        address = ipv4_int(addr_text)
        if address is not None and (not slash or _BITS_RE.fullmatch(bits_text)):
            bits = int(bits_text) if slash else 32
            return ipv4_network(address & (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF, bits)
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None  # multicast/unreachable types and the like: never ours


def _gateway(text: str) -> IPv4Address:
    return ipv4_address(text) or ipaddress.IPv4Address(text)


def _gateway6(text: str) -> IPv6Address | None:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None  # `via inet 192.0.2.1` on an IPv6 route: never ours


def parse_routes(rows: list, family: int, tagged: bool = False) -> list[Installed]:
    """Routes from `ip -json -N route show`; iproute2 omits the protocol when it is `boot`
    (the default) and when the listing was filtered by protocol."""
    default_protocol = "157" if tagged else "3"
    found = []
    for row in rows:
        dst = parse_network(str(row.get("dst", "")), family)
        if dst is None or row.get("type") not in (None, "unicast"):
            continue
        gw = row.get("gateway")
        # An IPv4 route via an IPv6 next hop (RFC 5549) is never ours: no gateway, as before OpenVPN;
        # an IPv6 route of ours has a gateway only over OpenVPN (the client's IPv6 address).
        if not gw:
            gateway = None
        elif family == 4:
            gateway = _gateway(gw) if ":" not in gw else None
        else:
            gateway = _gateway6(gw)
        table = str(row.get("table", MAIN))
        route = KernelRoute(
            dst=dst,
            dev=row.get("dev", ""),
            gw=gateway,
            metric=row.get("metric", DEFAULT_METRIC[family]),
            table=normal_table(table),
        )
        found.append(Installed(route, str(row.get("protocol", default_protocol))))
    return found


@dataclass
class Links:
    """Which link each connected peer is on."""

    by_peer: dict[IPv4Address, str] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    #: Every link and its peer, also the second link of a peer (a reconnect racing the old session's end).
    peer_on: dict[str, IPv4Address] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # every link, with a peer or not

    def link_of(self, peer: IPv4Address) -> str | None:
        return self.by_peer.get(peer)


def parse_links(rows: list) -> Links:
    """A peer is connected on the link whose address has `peer` exactly equal to it."""
    links = Links()
    for row in rows:
        name = row.get("ifname")
        if not name:
            continue
        links.names.add(name)
        for info in row.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            local, remote = info.get("local"), info.get("address")
            if not remote or remote == local:
                continue
            peer = ipv4_address(remote)
            if peer is None:
                try:
                    peer = ipaddress.IPv4Address(remote)
                except ValueError:
                    continue
            links.peer_on[name] = peer
            if peer in links.by_peer and links.by_peer[peer] != name:
                first = links.by_peer[peer]
                links.duplicates.append(f"peer {peer} appears on both {first} and {name}; using {first}")
                continue
            links.by_peer[peer] = name
    return links


def server_networks(rows: list, links: Links, family: int = 4) -> list[Network]:
    """Networks on the server's own links (LAN, uplink: every link that is not a user's
    session), from the `proto kernel` routes in the main table of that family."""
    sessions = set(links.by_peer.values())
    nets = []
    for item in parse_routes(rows, family):
        if item.protocol == "2" and is_main(item.route.table) and item.route.dev not in sessions:
            nets.append(item.route.dst)
    return nets
