"""`del`: a peer's lines for exactly one destination text (or all), and our kernel routes for them."""

from __future__ import annotations

from dataclasses import dataclass, field

from l2tproute.core.carrier import Carrier, carried_route, kernel_route
from l2tproute.core.kernel import slot_of
from l2tproute.core.model import Change, InputError, IPv4Address, KernelRoute, Network, Route, parse_destination
from l2tproute.core.reconcile import Want, adopts, old_tool_routes
from l2tproute.core.routefile import Line, format_route
from l2tproute.core.tables import table_names
from l2tproute.ops.context import Context, connections_of
from l2tproute.system.iproute2 import IpError, is_gone_error
from l2tproute.system.kernel_reads import peer_links, read_exact, read_slot_holders, read_tagged
from l2tproute.system.store import StoreError

ALL = "all"
#: Up to this many destinations, each is read alone (`exact`); more are read in one dump.
_FEW_DESTINATIONS = 8



@dataclass
class DelResult:
    peer: IPv4Address
    removed: list[str] = field(default_factory=list)
    kernel_removed: list[str] = field(default_factory=list)
    kernel_errors: list[str] = field(default_factory=list)
    had_file: bool = True


def delete(ctx: Context, peer: IPv4Address, dst: str | Network) -> DelResult:
    """Remove every line of the peer whose destination is exactly the text `dst` (or every
    route when dst is ALL), also lines today's rules refuse, each with a warning.

    A `dst` that is no valid destination is refused as a wrong argument unless a stored line
    has exactly that text: such a line is the old tool's, and the panel must be able to remove it.
    A network stands for its canonical text, the only one a valid line can have.
    """
    dst = str(dst)
    network = None if dst == ALL else _destination_of_stored_line(ctx, peer, dst)
    # Read before the lock: pppd, not the lock, decides when a link comes or goes.
    found = connections_of(ctx, peer)
    link = found.own[peer].link if peer in found.own else None
    shared = found.shared_of(peer)
    client = shared.carrier if shared is not None else None
    with ctx.store.locked(ctx.lock_timeout):
        lines = ctx.store.read(peer)
        result = DelResult(peer, had_file=lines is not None)
        if lines is None:
            return result

        def doomed(line: Line) -> bool:
            if dst == ALL:
                return line.route is not None or line.kind == "invalid"
            return line.destination == dst

        gone = [line for line in lines if doomed(line)]
        if not gone:
            return result
        kept = [line for line in lines if not doomed(line)]
        gone_routes = [line.route for line in gone if line.route is not None]
        result.removed = [line.raw.decode("ascii", "replace").rstrip("\r\n") for line in gone]
        unparsed = network if dst != ALL and len(gone_routes) < len(gone) else None
        if dst != ALL:
            path = ctx.store.path(peer)
            for number, line in enumerate(lines, 1):
                if line.route is None and line.destination == dst:
                    ctx.warn(f"{path} line {number} was not a valid route ({line.problem}); removed")
        with ctx.store.staged(peer, [] if dst == ALL else kept) as commit:
            result.kernel_removed, result.kernel_errors = _remove_from_kernel(ctx, peer, link, gone_routes, unparsed,
                                                                              client)
            commit()
        return result


def _destination_of_stored_line(ctx: Context, peer: IPv4Address, text: str) -> Network | None:
    """The network `text` names, or None when it is no valid destination but a stored line of
    the peer starts with exactly it; otherwise the InputError that says what is wrong with it.
    Read without the lock (files are replaced by rename), so a refused text creates nothing."""
    try:
        return parse_destination(text)
    except InputError:
        try:
            lines = ctx.store.read(peer) or []
        except StoreError:
            lines = []  # the text is refused as it would be without a file
        if not any(line.destination == text for line in lines):
            raise
    return None


def _remove_from_kernel(ctx: Context, peer: IPv4Address, link: str | None, gone: list[Route],
                        unparsed: Network | None = None, client: Carrier | None = None) -> tuple[list[str], list[str]]:
    """Delete the kernel routes of exactly these lines: our tag, their slot, this peer's link or gateway,
    or via the peer's client on a shared link (OpenVPN).
    `unparsed`: the destination of removed lines that were not valid routes; a tagged route to it on
    this peer's link or via this peer goes too, whatever its table or metric. A line's route that the
    old tool installed and apply has not taken over yet (reconcile.adopts) is taken over and deleted.
    Only the destinations concerned are read (`exact`), unless the lines are many (`del --dst all`)."""
    if not gone and unparsed is None:
        return [], []
    link = link or ""
    families = {r.family for r in gone} | ({unparsed.version} if unparsed is not None else set())
    destinations = {r.dst for r in gone} | ({unparsed} if unparsed is not None else set())
    if len(destinations) > _FEW_DESTINATIONS:
        tagged = read_tagged(ctx.runner, sorted(families))
    else:
        tagged = read_exact(ctx.runner, sorted(destinations, key=str), tagged=True)
    names = table_names() if any(r.table for r in gone) else None
    doomed: list[KernelRoute] = []
    unadopted: list[Want] = []
    adopted: list[KernelRoute] = []
    hops = client.next_hops if client is not None else set()
    if unparsed is not None:
        doomed += [item.route for item in tagged if item.route.dst == unparsed and (
            item.route.dev == link or item.route.gw == peer or (item.route.dev, item.route.gw) in hops)]
    for route in gone:
        try:
            expected = kernel_route(route, link, names)
            over_vpn = carried_route(route, client, names) if client is not None else None
        except InputError as exc:  # a table name that is no longer defined: the line still goes
            ctx.warn(f"{format_route(route)}: {exc}; no kernel route looked for")
            continue
        if over_vpn is not None:
            doomed += [item.route for item in tagged if item.slot == slot_of(over_vpn)
                       and (item.route.dev, item.route.gw) in hops and item.route not in doomed]
        found = False
        for item in tagged:
            if item.slot != slot_of(expected):
                continue
            if item.route.dev != expected.dev and (expected.gw is None or item.route.gw != expected.gw):
                continue  # same destination, but another user's route (added with --force)
            found = True
            if item.route not in doomed:
                doomed.append(item.route)
        if not found and link and expected.dst.version == 4:
            unadopted.append(Want(peer, route, expected))
    if unadopted:
        # Only this peer's link can carry its old routes (reconcile.old_tool_routes), so only
        # its destinations are read.
        untagged = read_slot_holders(ctx.runner, [want.kernel for want in unadopted], tagged=False)
        old = old_tool_routes([item for item in untagged if item.protocol == "3"], peer_links(peer, link))
        adopted = [want.kernel for want in unadopted if adopts(want, old.get(slot_of(want.kernel)))]
    # Only a route with our tag can be deleted: the old tool's is taken over first.
    steps = [[Change("del", r)] for r in doomed] + [[Change("replace", r), Change("del", r)] for r in adopted]
    removed, errors = [], []
    for changes in steps:
        route = changes[-1].route
        what = f"{route.dst} dev {route.dev}"
        try:
            for change in changes:
                ctx.runner.change(change)
            removed.append(what)
        except IpError as exc:
            if not is_gone_error(str(exc)):
                errors.append(f"{what}: {exc}")
    return removed, errors
