"""Where a connected user's routes go, whatever the VPN: the one rule for a stored line's kernel route.

A user reaches the server over a transport (pppd/L2TP, OpenVPN). Each live connection is a
Carrier: the link the routes go out of and, for a client that shares its link with others (an
OpenVPN tun), the client's own addresses, which become every line's next hop. The operations see
only carriers; which transport made one is a label for the reader. A transport is anything that
answers the questions of `Transport`; the fronts choose which ones a command uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, Tuple, Union  # noqa: UP035 (Python 3.8 cannot subscript tuple at run time)

from l2tproute.core.kernel import Links
from l2tproute.core.maintable import is_main
from l2tproute.core.model import IPv4Address, IPv6Address, KernelRoute, Route
from l2tproute.core.tables import table_id

#: A route's (link, next hop): what tells one VPN client's routes from another's on a shared link.
Hop = Tuple[str, Union[IPv4Address, IPv6Address]]  # noqa: UP006


@dataclass(frozen=True)
class Carrier:
    """One live connection of a user: `peer` is the user's address in chap-secrets."""

    peer: IPv4Address
    link: str
    transport: str  # "l2tp" or "openvpn": for the reader and the log, never for a decision
    #: A client on a shared link: its VPN addresses, the next hop of its user's lines.
    via4: IPv4Address | None = None
    via6: IPv6Address | None = None
    #: When the connection began, where the transport knows it: of two, the newer carries the routes.
    since: float = field(default=0.0, compare=False)

    @property
    def shared(self) -> bool:
        """True for a client on a link it shares with other users (its lines go via its address)."""
        return self.via4 is not None

    @property
    def next_hops(self) -> set[Hop]:
        """(link, address) of every route that goes to this client; none for a link of its own."""
        return {(self.link, via) for via in (self.via4, self.via6) if via is not None}


def kernel_route(route: Route, link: str, names: dict[str, str] | None = None) -> KernelRoute:
    """How a stored route goes out of a link of the peer's own: IPv4 via its gateway, IPv6 as a
    device route. InputError for a table name that is not defined."""
    table = table_id(route.table, names)
    return KernelRoute(
        dst=route.dst,
        dev=route.dev or link,
        gw=route.gw if route.family == 4 else None,
        metric=route.metric,
        table=None if is_main(table) else table,
    )


def carried_route(route: Route, carrier: Carrier, names: dict[str, str] | None = None) -> KernelRoute | None:
    """The kernel route of a stored line over this carrier; None when the line does not go over it
    (see not_carried_why). A shared link's client gets every line via its own address: a line with
    its own dev names another link, and an IPv6 line needs the client's IPv6 address."""
    if not carrier.shared:
        return kernel_route(route, carrier.link, names)
    if route.dev is not None:
        return None
    via = carrier.via4 if route.family == 4 else carrier.via6
    if via is None:
        return None
    return replace(kernel_route(route, carrier.link, names), gw=via)


#: How each transport is named to the admin.
TRANSPORT_LABELS = {"l2tp": "L2TP", "openvpn": "OpenVPN"}


def transport_label(name: str) -> str:
    return TRANSPORT_LABELS.get(name, name)


def newest(carriers: list[Carrier]) -> Carrier:
    """Of one user's connections, the one that carries its routes: the newest."""
    return max(carriers, key=lambda c: (c.since, str(c.via4), c.link))


def not_carried_why(route: Route) -> str:
    """Why carried_route gave nothing for this line over a shared link."""
    return f"has its own dev {route.dev}" if route.dev is not None else "is IPv6 and the tunnel has no IPv6"


class Transport(Protocol):
    """What the operations ask of a VPN: who is connected where, and which routes are a live
    connection's own. An implementation reads its own state (links, session records) only."""

    name: str

    def carriers(self, links: Links) -> list[Carrier]:
        """Every live connection over this transport, given the kernel's links (read once by the caller)."""

    def carriers_of(self, peer: IPv4Address) -> list[Carrier]:
        """This user's live connections, read for this user only (the cost does not grow with the
        number of users)."""

    def live_hops(self, link_names: set[str]) -> set[Hop]:
        """Next hops whose routes belong to a live connection: no apply removes or replaces them."""

    def is_older_of(self, hop: Hop, carrier: Carrier) -> bool:
        """True when `hop` is an older connection of the same user as `carrier`: its routes move."""

    def check(self, link_names: set[str]) -> list[str]:
        """The timer's look at the transport's records against the server itself; warnings to show."""
