"""What every operation works with: the store, the runner, the caller, the transports that say
who is connected, the warnings; and the stored routes and live connections they all read."""

from __future__ import annotations

from dataclasses import dataclass, field

from l2tproute.core import constants as C
from l2tproute.core.carrier import Carrier, Hop, Transport, newest
from l2tproute.core.kernel import Links
from l2tproute.core.model import IPv4Address, Route
from l2tproute.core.routefile import problems
from l2tproute.core.routefile import routes as routes_of
from l2tproute.ops import policy
from l2tproute.system.iproute2 import Runner
from l2tproute.system.spool import run_dir_from_environment
from l2tproute.system.store import Store, SystemFault


@dataclass
class Context:
    store: Store
    runner: Runner
    force: bool = False
    caller: policy.Caller = field(default_factory=policy.Caller)
    lock_timeout: float = C.LOCK_TIMEOUT
    warnings: list[str] = field(default_factory=list)
    #: Where the worker's spool and the transports' records are.
    run_dir: str = field(default_factory=lambda: run_dir_from_environment())
    #: Who is connected, and how (core.carrier): the fronts choose them (l2tproute.transports.configured).
    transports: tuple[Transport, ...] = ()

    def warn(self, text: str) -> None:
        self.warnings.append(text)


@dataclass(frozen=True)
class Carried:
    """A live connection, with the transport that knows it (and its user's older connections)."""

    carrier: Carrier
    transport: Transport

    def is_older(self, hop: Hop) -> bool:
        return self.transport.is_older_of(hop, self.carrier)


@dataclass(frozen=True)
class Connections:
    """Who is connected: each user's link of its own (L2TP), and the client on a shared link that
    carries each user's routes there (OpenVPN: its newest), ordered by peer."""

    own: dict[IPv4Address, Carrier]
    shared: list[Carried]

    def shared_of(self, peer: IPv4Address) -> Carried | None:
        return next((c for c in self.shared if c.carrier.peer == peer), None)


def connections(ctx: Context, links: Links) -> Connections:
    """Every transport's live connections, given the kernel's links (read once by the caller)."""
    return _connections([Carried(c, t) for t in ctx.transports for c in t.carriers(links)])


def connections_of(ctx: Context, peer: IPv4Address, *, own_only_if_found: bool = False) -> Connections:
    """One user's connections, each transport asked about that user only. With
    `own_only_if_found`, the transports after one that found a link of the user's own are not
    asked (add routes over that link alone, and need not read OpenVPN's records for it)."""
    found: list[Carried] = []
    for transport in ctx.transports:
        carriers = transport.carriers_of(peer)
        found += [Carried(c, transport) for c in carriers]
        if own_only_if_found and any(not c.shared for c in carriers):
            break
    return _connections(found)


def _connections(found: list[Carried]) -> Connections:
    own: dict[IPv4Address, Carrier] = {}
    clients: dict[IPv4Address, list[Carried]] = {}
    for item in found:
        if item.carrier.shared:
            clients.setdefault(item.carrier.peer, []).append(item)
        else:
            own.setdefault(item.carrier.peer, item.carrier)
    shared = []
    for items in clients.values():
        chosen = newest([item.carrier for item in items])
        shared.append(next(item for item in items if item.carrier is chosen))
    return Connections(own, sorted(shared, key=lambda item: (item.carrier.peer, item.carrier.link)))


def live_hops(ctx: Context, link_names: set[str]) -> set[Hop]:
    """Next hops of live clients on shared links, from every transport: their routes are theirs."""
    return {hop for transport in ctx.transports for hop in transport.live_hops(link_names)}


def all_peers(ctx: Context) -> list[IPv4Address]:
    peers, warnings = ctx.store.peers()
    for text in warnings:
        ctx.warn(text)
    return peers


def stored_routes(ctx: Context, peer: IPv4Address) -> list[Route]:
    try:
        lines = ctx.store.read(peer) or []
    except SystemFault:  # the disk, not the file: skipping it would remove the peer's routes
        raise
    except RuntimeError as exc:
        ctx.warn(f"peer {peer}: {exc}; its routes are skipped")
        return []
    for text in problems(lines, ctx.store.path(peer)):
        ctx.warn(text)
    return routes_of(lines)
