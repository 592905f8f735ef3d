"""pppd/L2TP as a transport: a user is connected when a point-to-point link has its address as peer.

Each session has a link of its own (pppN, `LOCAL peer PEER`), so its routes go out of that link
as the lines say; nothing on the link belongs to a session but what the lines want.
"""

from __future__ import annotations

from l2tproute.core.carrier import Carrier, Hop
from l2tproute.core.kernel import Links
from l2tproute.core.model import IPv4Address
from l2tproute.system.iproute2 import Runner
from l2tproute.system.kernel_reads import peer_link

NAME = "l2tp"


class L2tpTransport:
    name = NAME

    def __init__(self, runner: Runner):
        self.runner = runner

    def carriers(self, links: Links) -> list[Carrier]:
        return [Carrier(peer, link, NAME) for peer, link in links.by_peer.items()]

    def carriers_of(self, peer: IPv4Address) -> list[Carrier]:
        link = peer_link(self.runner, peer)
        return [Carrier(peer, link, NAME)] if link is not None else []

    def live_hops(self, link_names: set[str]) -> set[Hop]:
        return set()  # a link of its own: what it holds is decided by the lines alone

    def is_older_of(self, hop: Hop, carrier: Carrier) -> bool:
        return False

    def check(self, link_names: set[str]) -> list[str]:
        return []  # the kernel's links are the whole truth: nothing recorded to check
