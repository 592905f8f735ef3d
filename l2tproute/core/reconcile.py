"""Wanted routes versus installed routes: the difference, and nothing else.

One exception to "only our tag is ours": the old bash tool installed its routes with a plain
`ip route add DST via GW dev pppN` (`proto boot`, table main). A route exactly like that, on
the link of the peer whose stored line says exactly that destination and gateway, is the old
tool's; it is taken over (replaced with our tag). Anything else without our tag stays foreign.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Callable

from l2tproute.core.kernel import Installed, Links, Slot, slot_of
from l2tproute.core.maintable import is_main
from l2tproute.core.model import Change, IPv4Address, KernelRoute, Route

#: What `ip route add` without `proto` sets: the protocol of every route the old tool installed.
OLD_TOOL_PROTOCOL = "3"  # boot


@dataclass(frozen=True)
class Want:
    peer: IPv4Address
    route: Route
    kernel: KernelRoute


@dataclass(frozen=True)
class Install:
    """A change that puts a wanted route in: new (`add`), rewriting one of ours (`replace`,
    update), or taking over the old tool's (`replace`, adopt)."""

    change: Change
    want: Want
    update: bool = False
    adopt: bool = False


@dataclass(frozen=True)
class Removal:
    """A change that deletes a route of ours nobody wants any more."""

    change: Change
    installed: Installed


@dataclass
class Plan:
    installs: list[Install] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    unchanged: list[Want] = field(default_factory=list)
    shadowed: list[Want] = field(default_factory=list)  # a second want for a slot already wanted

    @property
    def changes(self) -> list[Change]:
        """Installs first: a route moving between two of our slots is never missing in between."""
        return [item.change for item in self.installs] + [item.change for item in self.removals]


@dataclass(frozen=True)
class OldRoute:
    """An untagged route that may be the old tool's: `proto boot`, table main, via a gateway,
    on the link of a connected peer."""

    peer: IPv4Address
    route: KernelRoute


def old_tool_routes(untagged: Iterable[Installed], links: Links) -> dict[Slot, OldRoute]:
    """The candidates among routes read without our tag, by slot."""
    peer_on = {link: peer for peer, link in links.by_peer.items()}
    found: dict[Slot, OldRoute] = {}
    for item in untagged:
        route = item.route
        if item.protocol != OLD_TOOL_PROTOCOL or not is_main(route.table) or route.gw is None:
            continue
        peer = peer_on.get(route.dev)
        if peer is not None:
            found.setdefault(item.slot, OldRoute(peer, route))
    return found


def adopts(want: Want, old: OldRoute | None) -> bool:
    """True when `old` (found in the slot `want` needs) is exactly the old tool's route for this
    line: the same peer's link, the same gateway, table main. A route to the same destination on
    another link, via another gateway, with another protocol or in another table is not."""
    return (old is not None and old.peer == want.peer and want.kernel.table is None
            and (old.route.dev, old.route.gw) == (want.kernel.dev, want.kernel.gw))


def plan(wants: list[Want], tagged: list[Installed], *, force: bool,
         removable: Callable[[Installed], bool], old: Mapping[Slot, OldRoute] | None = None) -> Plan:
    """Install what is missing or different, remove tagged routes nobody wants.

    `add` (not `replace`) is used for a slot we do not hold, so the kernel itself
    refuses to overwrite a route somebody else installed; `--force` replaces it, and
    so does the adoption of an old tool's route (`old`: see old_tool_routes and adopts).
    """
    result = Plan()
    old = old or {}
    # Each slot computed once: hashing a slot hashes its network in Python code.
    tagged_slots = [(item.slot, item) for item in tagged]
    ours: dict[Slot, Installed] = {}
    for slot, item in tagged_slots:
        ours.setdefault(slot, item)
    wanted: dict[Slot, Want] = {}
    for want in wants:
        slot = slot_of(want.kernel)
        if wanted.setdefault(slot, want) is not want:
            result.shadowed.append(want)
            continue
        current: Installed | None = ours.get(slot)
        if current is None:
            if adopts(want, old.get(slot)):
                result.installs.append(Install(Change("replace", want.kernel), want, adopt=True))
            else:
                result.installs.append(Install(Change("replace" if force else "add", want.kernel), want))
        elif (current.route.dev, current.route.gw) == (want.kernel.dev, want.kernel.gw):
            result.unchanged.append(want)
        else:
            result.installs.append(Install(Change("replace", want.kernel), want, update=True))
    for slot, item in tagged_slots:
        if slot not in wanted and removable(item):
            result.removals.append(Removal(Change("del", item.route), item))
    return result
