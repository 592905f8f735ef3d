"""`apply`: the kernel made to hold exactly the stored routes of connected peers, for
every peer, one peer, or the links pppd's hooks announced; one reconcile for all three."""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from l2tproute.core import constants as C
from l2tproute.core.carrier import Carrier, kernel_route
from l2tproute.core.kernel import Installed, Links, parse_links, parse_routes, slot_of
from l2tproute.core.model import Change, InputError, IPv4Address, KernelRoute, Route
from l2tproute.core.reconcile import Plan, Want, adopts, old_tool_routes, plan
from l2tproute.core.routefile import format_route
from l2tproute.core.tables import table_names
from l2tproute.ops.context import Carried, Context, all_peers, connections, connections_of, live_hops, stored_routes
from l2tproute.ops.syncing import CarriedRoute, sync_carrier, tagged_on_link
from l2tproute.system.iproute2 import Runner, is_gone_error, is_taken_slot_error
from l2tproute.system.kernel_reads import addrs_of, peer_links, read_slot_holders, read_tagged_on, slot_holder


@dataclass(frozen=True)
class Connection:
    peer: IPv4Address
    link: str
    shared: bool = False  # a client on a shared link (an OpenVPN tun): the routes go via its address
    transport: str = ""  # which VPN, for the reader (core.carrier.Carrier.transport)


@dataclass(frozen=True)
class RouteResult:
    """What became of one stored line in an apply."""

    peer: IPv4Address
    route: Route
    link: str
    detail: str = ""  # blocked: what holds the destination; failed: why
    shared: bool = False  # for the user's client on a shared link (via its address on `link`)
    transport: str = ""
    held_by_ours: bool = False  # blocked by a route of ours no apply replaces (a live OpenVPN session's)

    @property
    def line(self) -> str:
        """The route as its file says it; written only when shown (a steady apply keeps 10,000)."""
        return format_route(self.route)


@dataclass(frozen=True)
class RemovalResult:
    route: KernelRoute
    detail: str = ""  # why it could not be removed

    @property
    def text(self) -> str:
        return f"{self.route.dst} dev {self.route.dev}"


@dataclass(frozen=True)
class LinkChange:
    """A link that came up or went down with a peer, as pppd's hooks announced it."""

    up: bool
    link: str
    peer: IPv4Address


@dataclass(frozen=True)
class Skipped:
    """A link change the kernel no longer agrees with, so nothing was done for it."""

    change: LinkChange
    reason: str


@dataclass
class ApplyReport:
    scope: IPv4Address | None
    connected: list[Connection] = field(default_factory=list)
    offline: list[IPv4Address] = field(default_factory=list)
    installed: list[RouteResult] = field(default_factory=list)
    updated: list[RouteResult] = field(default_factory=list)
    #: The old tool's untagged routes for stored lines, now tagged as ours.
    adopted: list[RouteResult] = field(default_factory=list)
    unchanged: list[RouteResult] = field(default_factory=list)
    blocked: list[RouteResult] = field(default_factory=list)
    failed: list[RouteResult] = field(default_factory=list)
    removed: list[RemovalResult] = field(default_factory=list)
    removal_failed: list[RemovalResult] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    #: Downs of peers already back on another link: their routes via the peer are kept.
    kept: list[Skipped] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.removal_failed

    def of_link(self, link: str) -> ApplyReport:
        """The part of the report that happened on one link (a hook's event)."""
        def mine(items):
            return [item for item in items if item.link == link]

        def removed_here(items):
            return [item for item in items if item.route.dev == link]

        return ApplyReport(
            scope=self.scope, connected=mine(self.connected), installed=mine(self.installed),
            updated=mine(self.updated), adopted=mine(self.adopted), unchanged=mine(self.unchanged),
            blocked=mine(self.blocked), failed=mine(self.failed), removed=removed_here(self.removed),
            removal_failed=removed_here(self.removal_failed),
            skipped=[item for item in self.skipped if item.change.link == link],
            kept=[item for item in self.kept if item.change.link == link])


@contextmanager
def _no_cycle_collection():
    """apply builds tens of thousands of acyclic objects (lines, routes, addresses); the
    cycle collector's passes over them cost a fifth of a full apply and free nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class _KernelState:
    tagged: list[Installed]
    links: Links


def apply(ctx: Context, peer: IPv4Address | None = None) -> ApplyReport:
    """Make the kernel hold exactly the stored routes of connected peers (one peer, or all)."""
    if peer is not None:
        return _apply_peer(ctx, peer)
    report = ApplyReport(scope=None)
    with _no_cycle_collection(), ctx.store.locked(ctx.lock_timeout):
        # The kernel's state is read while the files are parsed: the `ip` dumps run
        # on the other core (a third of a steady-state apply at 10,000 routes).
        kernel = _Background(lambda: _dump_kernel_state(ctx.runner))
        peers = all_peers(ctx)
        stored = {p: stored_routes(ctx, p) for p in peers}
        state = _kernel_state(ctx, kernel.result(), check_transports=True)
        found = connections(ctx, state.links)
        targets = []
        for p in peers:
            carrier = found.own.get(p)
            if carrier is None:
                report.offline.append(p)
            else:
                targets.append(Connection(p, carrier.link))

        def removable(item: Installed) -> bool:
            return True  # every tagged route nobody wants

        _reconcile(ctx, report, state, targets, stored, removable)
        _sync_shared(ctx, report, found.shared, stored)
    return report


def _sync_shared(ctx: Context, report: ApplyReport, shared: list[Carried],
                 stored: dict[IPv4Address, list[Route]]) -> None:
    """The routes of users connected on a shared link (syncing.sync_carrier), into the report. A user
    on both VPNs keeps what the first one installed: the second's lines are blocked by the kernel."""
    own = {c.peer for c in report.connected}
    # Read once per link, not once per client: the timer syncs every client each minute.
    links = {item.carrier.link for item in shared}
    on_link = {link: tagged_on_link(ctx.runner, link) for link in links} if len(shared) > 1 else {}
    for item in shared:
        carrier = item.carrier
        if carrier.peer not in stored:
            continue
        if carrier.peer not in own:
            report.connected.append(Connection(carrier.peer, carrier.link, True, carrier.transport))
            if carrier.peer in report.offline:
                report.offline.remove(carrier.peer)

        synced = sync_carrier(ctx.runner, carrier, stored[carrier.peer], item.is_older, on_link.get(carrier.link))

        def result(item: CarriedRoute, detail: str = "", carrier: Carrier = carrier) -> RouteResult:
            return RouteResult(carrier.peer, item.route, carrier.link, detail, True, carrier.transport)

        report.installed += [result(i) for i in synced.installed]
        report.updated += [result(i) for i in synced.moved]
        report.unchanged += [result(i) for i in synced.unchanged]
        report.blocked += [result(i, i.detail) for i in synced.held]
        report.failed += [result(i, i.detail) for i in synced.failed]
        report.removed += [RemovalResult(route) for route in synced.removed]
        report.removal_failed += [RemovalResult(r.route, r.detail) for r in synced.removal_failed]


def _apply_peer(ctx: Context, peer: IPv4Address) -> ApplyReport:
    """`apply --peer`: only what concerns this peer is read, so its cost does not grow with the
    number of users: its file, its link (the kernel's lookup), our routes on that link, and the
    destinations of its lines that are not held there as wanted (`exact`: another link's route
    of ours in that slot is taken over, as a full apply would)."""
    report = ApplyReport(scope=peer)
    with ctx.store.locked(ctx.lock_timeout):
        stored = {peer: stored_routes(ctx, peer)}
        found = connections_of(ctx, peer)
        link = found.own[peer].link if peer in found.own else None
        shared = found.shared_of(peer)
        tagged = read_tagged_on(ctx.runner, link) if link is not None else None
        if tagged is None:  # no link of its own (or gone meanwhile): nothing of ours on another link is touched
            if shared is None:
                report.offline.append(peer)
            else:
                _sync_shared(ctx, report, [shared], stored)
            return report
        names = table_names() if any(r.table for r in stored[peer]) else None
        held = {(item.slot, item.route.dev, item.route.gw) for item in tagged}
        elsewhere = []
        for route in stored[peer]:
            try:
                wanted = kernel_route(route, link, names)
            except InputError:
                continue  # reported by the reconcile
            if (slot_of(wanted), wanted.dev, wanted.gw) not in held:
                elsewhere.append(wanted)
        on_link = set(tagged)
        tagged += [item for item in read_slot_holders(ctx.runner, elsewhere, tagged=True)
                   if item.route.dev != link]
        # A route's link exists (the kernel holds a route on it): the links asked about are the routes'.
        tagged = _without_live_routes(ctx, tagged, {item.route.dev for item in tagged})
        state = _KernelState(tagged, peer_links(peer, link))

        def removable(item: Installed) -> bool:
            return item in on_link

        _reconcile(ctx, report, state, [Connection(peer, link)], stored, removable,
                   old_reader=_old_routes_of_slots)
        if shared is not None:
            _sync_shared(ctx, report, [shared], stored)
    return report


def apply_links(ctx: Context, changes: list[LinkChange]) -> ApplyReport:
    """What pppd's hooks ask, for many links at once: the routes of each link that came up,
    none of ours on each link that went down; one kernel read and one batch for all.

    `changes` holds at most one change per link, the last one announced. An up whose
    link is gone or now carries another peer is skipped (that peer's own event follows);
    a down never touches a link that already carries another peer (a reused name).
    """
    report = ApplyReport(scope=None)
    # A few links that came up are read link by link, as `apply --peer` reads its one link: a
    # dump of every tagged route and link was most of an ip-up's time on a busy server.
    alone = len(changes) <= LINKS_READ_ALONE and all(change.up for change in changes)
    with _no_cycle_collection(), ctx.store.locked(ctx.lock_timeout):
        state = _links_alone(ctx, changes) if alone else _kernel_state(ctx, _dump_kernel_state(ctx.runner))
        on_link = state.links.peer_on
        targets: list[Connection] = []
        released_links: set[str] = set()
        gone_peers: set[IPv4Address] = set()
        for change in changes:
            now = on_link.get(change.link)
            if change.up:
                if now == change.peer:
                    targets.append(Connection(change.peer, change.link))
                else:
                    held = f"now carries peer {now}" if now is not None else "no longer carries that peer"
                    report.skipped.append(Skipped(change, f"{change.link} {held}"))
                continue
            if now is not None and now != change.peer:
                report.skipped.append(Skipped(change, f"{change.link} already carries peer {now}; its routes stay"))
            else:
                released_links.add(change.link)
            elsewhere = sorted(link for link, p in on_link.items() if p == change.peer and link != change.link)
            if elsewhere:
                report.kept.append(Skipped(change, f"peer {change.peer} is connected again on {', '.join(elsewhere)}; "
                                                   f"its routes via {change.peer} on other links are kept"))
            else:
                gone_peers.add(change.peer)
        stored = {t.peer: stored_routes(ctx, t.peer) for t in targets}
        up_links = {t.link for t in targets}
        old_reader = None
        if alone:
            state, slots = _with_slot_holders(ctx, state, targets, stored)

            def old_reader(ctx: Context, adds: list[KernelRoute]) -> list[Installed]:
                return [item for item in slots if item.route.dst in {add.dst for add in adds}]

        def removable(item: Installed) -> bool:
            dev = item.route.dev
            # Routes via a peer that left, on a link of their own (a line with `dev`), go with it.
            return dev in up_links or dev in released_links or (item.route.gw in gone_peers and dev not in on_link)

        _reconcile(ctx, report, state, targets, stored, removable, old_reader=old_reader)
        leaving = [Connection(c.peer, c.link) for c in changes
                   if not c.up and c.link in released_links and on_link.get(c.link) == c.peer]
        if leaving:
            _remove_old_tool_routes(ctx, report, state.links, leaving)
        # A user who left L2TP but is still on a shared link (OpenVPN): the L2TP link held its lines
        # first, now they go via its client there (after the reconcile's batch took the L2TP routes out).
        if gone_peers:
            back = [item for item in connections(ctx, state.links).shared if item.carrier.peer in gone_peers]
            if back:
                _sync_shared(ctx, report, back, {i.carrier.peer: stored_routes(ctx, i.carrier.peer) for i in back})
    return report


def _remove_old_tool_routes(ctx: Context, report: ApplyReport, links: Links, leaving: list[Connection]) -> None:
    """Links that went down but still carry their peer (pppd's persist or demand keeps them) may
    hold the old tool's routes of that peer's lines, when no apply took them over since the
    upgrade: exactly those adoption would take (reconcile.old_tool_routes, adopts) go, as ours
    would. Only the `proto boot` routes of table main are read, and the route files only when
    such a route is on one of these links, so a steady state pays one small read per pass."""
    down = {c.link for c in leaving}
    candidates = old_tool_routes(_old_routes_of_table(ctx, []), links)
    old = {slot: item for slot, item in candidates.items() if item.route.dev in down}
    if not old:
        return
    doomed: list[KernelRoute] = []
    for connection in leaving:
        stored = stored_routes(ctx, connection.peer)
        names = table_names() if any(r.table for r in stored) else None
        for route in stored:
            try:
                want = Want(connection.peer, route, kernel_route(route, connection.link, names))
            except InputError:
                continue
            if adopts(want, old.get(slot_of(want.kernel))) and want.kernel not in doomed:
                doomed.append(want.kernel)
    # Only a route with our tag can be deleted: the old tool's is taken over first (as del does).
    failures = {failure.change: failure.message
                for failure in ctx.runner.batch([c for r in doomed for c in (Change("replace", r), Change("del", r))])}
    for route in doomed:
        message = failures.get(Change("replace", route)) or failures.get(Change("del", route))
        if message is None:
            report.removed.append(RemovalResult(route))
        elif not is_gone_error(message):
            report.removal_failed.append(RemovalResult(route, message))


#: At most this many ups are read link by link (each: its addresses, our routes on it, and each
#: destination its lines want that it does not hold, alone); a burst of more costs less as one dump.
LINKS_READ_ALONE = 4


def _links_alone(ctx: Context, changes: list[LinkChange]) -> _KernelState:
    """The kernel's state as apply_links needs it for a few links that came up: their peers, and
    our routes on each that still carries its announced peer (the others are skipped unread)."""
    rows = [row for change in changes for row in addrs_of(ctx.runner, change.link)]
    links = parse_links(rows)
    tagged: list[Installed] = []
    for change in changes:
        if links.peer_on.get(change.link) == change.peer:
            tagged += read_tagged_on(ctx.runner, change.link) or []
    return _KernelState(tagged, links)


def _with_slot_holders(ctx: Context, state: _KernelState, targets: list[Connection],
                       stored: dict[IPv4Address, list[Route]]) -> tuple[_KernelState, list[Installed]]:
    """`_links_alone`'s state, plus our routes elsewhere in every slot a target's lines want and
    its link does not hold as wanted (`exact`, as `apply --peer` reads them), so reconcile.plan
    meets every route of ours that bears on these links, as after a dump of them all; then the
    live clients' routes among them set aside, as `_kernel_state` does. Each such destination
    is read once, every protocol: the routes there are also what the old tool's adoption looks
    at (the slot holders, second), so no destination is read twice."""
    names = table_names() if any(r.table for t in targets for r in stored[t.peer]) else None
    held = {(item.slot, item.route.dev, item.route.gw) for item in state.tagged}
    read = {target.link for target in targets}
    elsewhere = []
    for target in targets:
        for route in stored[target.peer]:
            try:
                wanted = kernel_route(route, target.link, names)
            except InputError:
                continue  # reported by the reconcile
            if (slot_of(wanted), wanted.dev, wanted.gw) not in held:
                elsewhere.append(wanted)
    slots = read_slot_holders(ctx.runner, elsewhere, tagged=False)
    ours = str(C.RT_PROTO)
    tagged = state.tagged + [item for item in slots if item.protocol == ours and item.route.dev not in read]
    # A route's link exists (the kernel holds a route on it): the links asked about are the routes'.
    tagged = _without_live_routes(ctx, tagged, {item.route.dev for item in tagged})
    return _KernelState(tagged, state.links), slots


def _kernel_state(ctx: Context, dumps, check_transports: bool = False) -> _KernelState:
    tagged_rows, link_rows = dumps
    links = parse_links(link_rows)
    for text in links.duplicates:
        ctx.warn(text)
    if check_transports:  # the whole-server apply: before the live connections' routes are set aside
        for transport in ctx.transports:
            for text in transport.check(links.names):
                ctx.warn(text)
    tagged = [item for family, rows in tagged_rows for item in parse_routes(rows, family, tagged=True)]
    tagged = _without_live_routes(ctx, tagged, links.names)
    return _KernelState(tagged, links)


def _without_live_routes(ctx: Context, tagged: list[Installed], links: set[str]) -> list[Installed]:
    """A live client's routes on a shared link are that connection's: never removed or replaced by
    an apply; a stored line wanting the same slot is refused by the kernel, first come wins."""
    live = live_hops(ctx, links)
    return [item for item in tagged if (item.route.dev, item.route.gw) not in live] if live else tagged


def _reconcile(ctx: Context, report: ApplyReport, state: _KernelState, targets: list[Connection],
               stored: dict[IPv4Address, list[Route]], removable, old_reader=None) -> None:
    """The one reconcile behind every apply: wanted routes of `targets` against our tagged routes."""
    names = table_names() if any(r.table for t in targets for r in stored[t.peer]) else None
    wants = []
    for target in targets:
        report.connected.append(target)
        for route in stored[target.peer]:
            try:
                wants.append(Want(target.peer, route, kernel_route(route, target.link, names)))
            except InputError as exc:  # one bad line must not stop every other peer's routes
                report.failed.append(RouteResult(target.peer, route, target.link, str(exc)))
    result = _plan_adopting(ctx, wants, state, removable, old_reader or _old_routes_of_table)
    for want in result.shadowed:
        ctx.warn(f"peer {want.peer}: {format_route(want.route)} is also wanted by another line or peer; "
                 "the kernel holds one route per destination, the first one wins")
    for want in result.unchanged:
        report.unchanged.append(RouteResult(want.peer, want.route, want.kernel.dev))
    _execute(ctx, result, report)


def _plan_adopting(ctx: Context, wants: list[Want], state: _KernelState, removable, old_reader) -> Plan:
    """reconcile.plan, with the old tool's routes for these wants taken over (see reconcile).
    Those routes are read only when something is to be installed, so a steady state costs no
    extra read; only IPv4, as the old tool routed nothing else."""
    result = plan(wants, state.tagged, force=ctx.force, removable=removable)
    adds = [i.change.route for i in result.installs if i.change.verb == "add" and i.change.route.dst.version == 4]
    if ctx.force or not adds:
        return result
    old = old_tool_routes(old_reader(ctx, adds), state.links)
    return plan(wants, state.tagged, force=ctx.force, removable=removable, old=old) if old else result


def _old_routes_of_table(ctx: Context, adds: list[KernelRoute]) -> list[Installed]:
    """The kernel sends only `proto boot` routes of table main, so a busy table costs little."""
    return parse_routes(ctx.runner.read_routes(4, tagged=False, main_boot=True), 4)


def _old_routes_of_slots(ctx: Context, adds: list[KernelRoute]) -> list[Installed]:
    """One peer's few destinations, each read alone."""
    return read_slot_holders(ctx.runner, adds, tagged=False)


def _dump_kernel_state(runner: Runner) -> tuple[list[tuple[int, list]], list]:
    """The rows of our tagged routes and of the links, as `ip -json` prints them. Only the
    dumps: their parsing is Python work that would contend with the caller's for the GIL."""
    # Tagged routes first, links second: a hook that brings a link up in between
    # then only makes us re-add its routes, never delete them.
    tagged = [(family, runner.read_routes(family, tagged=True)) for family in (4, 6)]
    return tagged, runner.read_links()


class _Background:
    """A call run in a thread; result() waits for it and returns its value or raises its error."""

    def __init__(self, call):
        self._call = call
        self._value = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to the caller, raised there
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _execute(ctx: Context, result: Plan, report: ApplyReport) -> None:
    # Changes are frozen values and a plan holds each slot once, so a failure finds its change by value.
    failures = {failure.change: failure.message for failure in ctx.runner.batch(result.changes)}
    for install in result.installs:
        want = install.want
        outcome = RouteResult(want.peer, want.route, want.kernel.dev)
        # Hashing a change hashes its networks in Python code: only done when something failed.
        message = failures.get(install.change) if failures else None
        if message is None:
            done = report.adopted if install.adopt else report.updated if install.update else report.installed
            done.append(outcome)
        elif install.change.verb == "add" and is_taken_slot_error(message):
            holder = slot_holder(ctx.runner, install.change.route)
            report.blocked.append(replace(outcome, detail=holder.text, held_by_ours=holder.ours))
        else:
            report.failed.append(replace(outcome, detail=message))
    for removal in result.removals:
        message = failures.get(removal.change) if failures else None
        if message is None:
            report.removed.append(RemovalResult(removal.change.route))
        elif not is_gone_error(message):  # already gone: fine
            report.removal_failed.append(RemovalResult(removal.change.route, message))
