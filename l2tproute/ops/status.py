"""`status`: each peer's stored routes against what the kernel holds.

Reads what `apply` reads (the store, our tagged routes, the links) and compares the
same way (reconcile.plan), without changing anything. A route is:

- wanted:    stored, but its peer is not connected, so the kernel should not hold it;
- installed: the kernel holds it as `apply` would install it;
- missing:   its peer is connected and the kernel does not hold it (or holds it differently);
- blocked:   a route we did not install (or an earlier line for the same slot) holds its slot;
- extra:     a route with our tag that no stored line wants any more (`apply` removes it).

A peer with no link of its own but a client on a shared link (OpenVPN: a recorded session on a
tun that exists) is compared with the routes that client gets (via its VPN address on the tun);
the routes of live clients are never extra.

Missing, blocked and extra are drift. Lines of a file that today's rules refuse (the old
tool stored them) are never installed; each peer that has some gets one line saying which
and what to do (not drift: nothing apply could fix).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from l2tproute.core import constants as C
from l2tproute.core.carrier import Carrier, carried_route, kernel_route, not_carried_why, transport_label
from l2tproute.core.kernel import (
    DEFAULT_METRIC,
    Installed,
    Links,
    Slot,
    parse_links,
    parse_network,
    parse_routes,
    slot_of,
)
from l2tproute.core.maintable import MAIN, is_main, normal_table
from l2tproute.core.model import InputError, IPv4Address, KernelRoute, Route
from l2tproute.core.reconcile import OldRoute, Plan, Want, adopts, old_tool_routes, plan
from l2tproute.core.routefile import InvalidLine, Line, format_route, invalid_lines, problems
from l2tproute.core.routefile import routes as routes_of
from l2tproute.core.tables import table_names
from l2tproute.ops.context import Context, all_peers, live_hops
from l2tproute.system.kernel_reads import (
    peer_links,
    proto_name,
    read_slot_holders,
    read_tagged,
    read_tagged_on,
)

WANTED = "wanted"
INSTALLED = "installed"
MISSING = "missing"
BLOCKED = "blocked"
EXTRA = "extra"
STATES = (INSTALLED, WANTED, MISSING, BLOCKED, EXTRA)
DRIFT = (MISSING, BLOCKED, EXTRA)


@dataclass(frozen=True)
class RouteStatus:
    state: str
    route: str  # the line as the route file says it; for an extra route, the kernel route
    detail: str | None = None


@dataclass
class PeerStatus:
    peer: IPv4Address
    link: str | None
    routes: list[RouteStatus] = field(default_factory=list)
    #: Lines of the peer's file that today's rules refuse.
    invalid: list[InvalidLine] = field(default_factory=list)
    #: The user's live clients on shared links (OpenVPN), oldest first; found by the peer address.
    shared: list[Carrier] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        return self.link is not None or bool(self.shared)


@dataclass
class StatusReport:
    scope: IPv4Address | None
    peers: list[PeerStatus] = field(default_factory=list)
    #: Extra routes on no reported peer's link.
    extra: list[RouteStatus] = field(default_factory=list)

    def all_routes(self) -> list[RouteStatus]:
        return [r for p in self.peers for r in p.routes] + self.extra

    def counts(self) -> dict[str, int]:
        found = {state: 0 for state in STATES}
        for item in self.all_routes():
            found[item.state] += 1
        return found

    @property
    def drift(self) -> bool:
        return any(item.state in DRIFT for item in self.all_routes())


def status(ctx: Context, peer: IPv4Address | None = None) -> StatusReport:
    """Compare without changing anything; takes no lock (route files are replaced atomically).
    The wanted routes are planned against the kernel by reconcile.plan, as apply plans them: what
    the plan leaves unchanged is installed, what it would install is missing or blocked (by whom
    the slot is held decides), what it would remove is extra, what it shadows is blocked."""
    report = StatusReport(scope=peer)
    peers = [peer] if peer is not None else all_peers(ctx)
    files = {p: _read_file(ctx, p) for p in peers}
    stored = {p: routes_of(lines) for p, lines in files.items()}
    names = table_names() if any(r.table for rs in stored.values() for r in rs) else None
    if peer is None:
        tagged = read_tagged(ctx.runner)
        links = parse_links(ctx.runner.read_links())
        for text in links.duplicates:
            ctx.warn(text)
        connections = [c for t in ctx.transports for c in t.carriers(links)]
        live = live_hops(ctx, links.names)
        foreign = _Foreign(ctx, links)
    else:
        connections = [c for t in ctx.transports for c in t.carriers_of(peer)]
        tagged, links = _peer_state(ctx, peer, connections, stored[peer], names)
        live = live_hops(ctx, {item.route.dev for item in tagged})
        foreign = _Foreign(ctx, links, by_slot=True)

    by_peer: dict[IPv4Address, list[Carrier]] = {}
    for connection in connections:
        by_peer.setdefault(connection.peer, []).append(connection)
    entries = [_peer_rows(p, files[p], stored[p], by_peer.get(p, []), names) for p in peers]
    report.peers = [entry for entry, _ in entries]
    wants = [row for _, rows in entries for row in rows if isinstance(row, Want)]

    owned = {e.link for e in report.peers if e.link is not None}

    def removable(item: Installed) -> bool:
        # `apply --peer` leaves other links alone, so does `status --peer`; a live client's are its own.
        return (item.route.dev, item.route.gw) not in live and (peer is None or item.route.dev in owned)

    planned = plan(wants, tagged, force=False, removable=removable)
    states = _want_states(planned, tagged, foreign)
    for entry, rows in entries:
        entry.routes = [states[id(row)] if isinstance(row, Want) else row for row in rows]
    link_owner = {e.link: e for e in report.peers if e.link is not None}
    for removal in planned.removals:
        item = removal.installed
        extra = RouteStatus(EXTRA, describe(item.route), "tagged by us but wanted by no stored line; apply removes it")
        owner = link_owner.get(item.route.dev)
        (owner.routes if owner is not None else report.extra).append(extra)
    return report


def _peer_rows(peer: IPv4Address, lines: list[Line], routes: list[Route], connections: list[Carrier],
               names) -> tuple[PeerStatus, list]:
    """The peer's entry, and a row per stored route: its state where it needs no plan (offline, a
    bad table, not carried over a shared link), else the Want the plan decides. `connections`
    are this peer's."""
    own = next((c for c in connections if not c.shared), None)
    # Oldest first: the last of a peer is the newest, the one carrying its routes.
    shared = sorted((c for c in connections if c.shared), key=lambda c: (c.since, c.link, c.via4))
    entry = PeerStatus(peer, own.link if own else None, invalid=invalid_lines(lines), shared=shared)
    carrier = own or (shared[-1] if shared else None)
    rows: list = []
    for route in routes:
        line = format_route(route)
        if carrier is None:
            rows.append(RouteStatus(WANTED, line, "installed when the peer connects"))
            continue
        try:
            kernel = carried_route(route, carrier, names)
        except InputError as exc:
            rows.append(RouteStatus(MISSING, line, str(exc)))
            continue
        if kernel is None:
            why = f"not routed over {transport_label(carrier.transport)}: it {not_carried_why(route)}"
            rows.append(RouteStatus(WANTED, line, why))
        else:
            rows.append(Want(peer, route, kernel))
    return entry, rows


def _want_states(planned: Plan, tagged: list[Installed], foreign: _Foreign) -> dict[int, RouteStatus]:
    """Each wanted route's state, by the want's identity, from what the plan does with it."""
    states: dict[int, RouteStatus] = {}
    for want in planned.unchanged:
        states[id(want)] = RouteStatus(INSTALLED, format_route(want.route))
    first: dict[Slot, Want] = {}
    for install in planned.installs:
        first[slot_of(install.want.kernel)] = install.want
    for want in planned.unchanged:
        first[slot_of(want.kernel)] = want
    for want in planned.shadowed:
        claimed = first[slot_of(want.kernel)].peer
        owner = "an earlier line" if claimed == want.peer else f"peer {claimed}"
        states[id(want)] = RouteStatus(BLOCKED, format_route(want.route),
                                       f"{owner} wants the same destination; the first wins")
    ours: dict[Slot, Installed] = {}
    for item in tagged:
        ours.setdefault(item.slot, item)
    for install in planned.installs:
        want, line = install.want, format_route(install.want.route)
        if install.update:
            current = ours[slot_of(want.kernel)].route
            detail = f"the kernel has it as {describe(current)}; apply replaces it"
            states[id(want)] = RouteStatus(MISSING, line, detail)
            continue
        holder = foreign.holder(want.kernel)
        if holder is not None and foreign.is_old_tool_route(want):
            states[id(want)] = RouteStatus(MISSING, line, f"held by {holder}, installed by the old tool; "
                                                          "apply takes it over")
        elif holder is not None:
            states[id(want)] = RouteStatus(BLOCKED, line, f"held by {holder}, which l2tp-routectl did not install; "
                                                          "apply --force replaces it")
        else:
            states[id(want)] = RouteStatus(MISSING, line, "not in the kernel; apply installs it")
    return states


def _peer_state(ctx: Context, peer: IPv4Address, connections: list[Carrier], routes: list[Route], names):
    """What `status --peer` compares with, read for this peer only (as `apply --peer` reads it): our
    routes on its own link, and our routes in the slots of its lines that are not held there as
    wanted (`exact`)."""
    link = next((c.link for c in connections if not c.shared), None)
    tagged = (read_tagged_on(ctx.runner, link) if link is not None else None) or []
    held = {(item.slot, item.route.dev, item.route.gw) for item in tagged}
    elsewhere = []
    for route in routes:
        try:
            wanted = kernel_route(route, link or "-", names)
        except InputError:
            continue  # reported with the route
        if link is None or (slot_of(wanted), wanted.dev, wanted.gw) not in held:
            elsewhere.append(wanted)
    tagged += [item for item in read_slot_holders(ctx.runner, elsewhere, tagged=True) if item.route.dev != link]
    return tagged, peer_links(peer, link)


def _read_file(ctx: Context, peer: IPv4Address) -> list[Line]:
    """The peer's lines; a warning for each line that is used but not written as the tool
    writes it (the lines that are not used are reported once per peer, in the report)."""
    try:
        lines = ctx.store.read(peer) or []
    except RuntimeError as exc:
        ctx.warn(f"peer {peer}: {exc}; its routes are skipped")
        return []
    for text in problems(lines, ctx.store.path(peer), invalid=False):
        ctx.warn(text)
    return lines


def _compare(line: str, wanted: Want, mine: list[Installed], foreign: _Foreign) -> RouteStatus:
    want = wanted.kernel
    if any((i.route.dev, i.route.gw) == (want.dev, want.gw) for i in mine):
        return RouteStatus(INSTALLED, line)
    if mine:
        return RouteStatus(MISSING, line, f"the kernel has it as {describe(mine[0].route)}; apply replaces it")
    holder = foreign.holder(want)
    if holder is not None and foreign.is_old_tool_route(wanted):
        return RouteStatus(MISSING, line, f"held by {holder}, installed by the old tool; apply takes it over")
    if holder is not None:
        return RouteStatus(BLOCKED, line, f"held by {holder}, which l2tp-routectl did not install; "
                                          "apply --force replaces it")
    return RouteStatus(MISSING, line, "not in the kernel; apply installs it")


class _Foreign:
    """Routes without our tag, read only when a wanted route is not installed: once per family,
    or (`by_slot`, for one peer's few lines) only the wanted route's destination."""

    def __init__(self, ctx: Context, links: Links, by_slot: bool = False):
        self._ctx = ctx
        self._links = links
        self._by_slot = by_slot
        self._rows: dict[tuple, list] = {}
        self._slots: dict[tuple, dict[Slot, str]] = {}
        self._old: dict[tuple, dict[Slot, OldRoute]] = {}

    def _key(self, want: KernelRoute) -> tuple:
        return (want.dst.version, want.dst if self._by_slot else None)

    def _read(self, key: tuple) -> list:
        if key not in self._rows:
            family, exact = key
            self._rows[key] = self._ctx.runner.read_routes(family, tagged=False, exact=exact)
        return self._rows[key]

    def holder(self, want: KernelRoute) -> str | None:
        key = self._key(want)
        if key not in self._slots:
            self._slots[key] = _foreign_slots(self._read(key), key[0])
        return self._slots[key].get(slot_of(want))

    def is_old_tool_route(self, want: Want) -> bool:
        """Whether apply takes the route in this slot over (reconcile.adopts decides)."""
        if want.kernel.dst.version != 4:
            return False
        key = self._key(want.kernel)
        if key not in self._old:
            self._old[key] = old_tool_routes(parse_routes(self._read(key), 4), self._links)
        return adopts(want, self._old[key].get(slot_of(want.kernel)))


#: Route types as `ip -N` prints them (rtnetlink.h RTN_*); unicast is left out or "1".
_ROUTE_TYPES = {"1": "unicast", "2": "local", "3": "broadcast", "4": "anycast", "5": "multicast",
                "6": "blackhole", "7": "unreachable", "8": "prohibit", "9": "throw", "10": "nat"}


def _foreign_slots(rows: list, family: int) -> dict[Slot, str]:
    """Every untagged route's slot, whatever its type (a blackhole holds a slot too)."""
    slots: dict[Slot, str] = {}
    for row in rows:
        protocol = str(row.get("protocol", ""))
        dst = parse_network(str(row.get("dst", "")), family)
        if dst is None or protocol == str(C.RT_PROTO):
            continue
        table = str(row.get("table", MAIN))
        slot = (dst, normal_table(table), row.get("metric", DEFAULT_METRIC[family]))
        raw_type = str(row.get("type", "1"))
        kind = _ROUTE_TYPES.get(raw_type, raw_type)
        via = f" via {row['gateway']}" if row.get("gateway") else ""
        dev = f" dev {row['dev']}" if row.get("dev") else ""
        what = "route" if kind == "unicast" else f"{kind} route"
        # `ip` leaves out the protocol when it is boot (what a plain `ip route add` sets).
        slots.setdefault(slot, f"a proto {proto_name(protocol or '3')} {what}{via}{dev}")
    return slots


def describe(route: KernelRoute) -> str:
    """A kernel route in `ip route` words, for the reader."""
    words = [str(route.dst)]
    if route.gw is not None:
        words += ["via", str(route.gw)]
    words += ["dev", route.dev]
    if route.metric is not None and route.metric != DEFAULT_METRIC[route.dst.version]:
        words += ["metric", str(route.metric)]
    if not is_main(route.table):
        words += ["table", str(route.table)]
    return " ".join(words)


__all__ = ["BLOCKED", "DRIFT", "EXTRA", "INSTALLED", "MISSING", "STATES", "WANTED", "PeerStatus", "RouteStatus",
           "StatusReport", "describe", "status"]

