"""The operations behind the commands: add, delete, list, apply.

Each returns a result object; printing is the CLI's job. Every edit of the
store and every reconcile runs under the store lock. An edit first stages the new
file (where a full, read-only or unwritable disk says no), then changes the kernel,
then puts the file in place: a route the kernel refuses is never stored, and a file
the disk refuses never leaves the kernel changed.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from . import constants as C
from . import policy
from .iproute2 import IpError, Runner, is_gone_error, is_taken_slot_error
from .kernel import Installed, Links, parse_links, parse_routes, server_networks, slot_of
from .model import Change, InputError, IPv4Address, KernelRoute, Network, Refused, Route, parse_destination
from .reconcile import Plan, Want, adopts, old_tool_routes, plan
from .routefile import Line, format_route, problems, route_line
from .routefile import routes as routes_of
from .store import Store, StoreError, SystemFault
from .tables import table_id, table_names

ALL = "all"


@dataclass
class Context:
    store: Store
    runner: Runner
    force: bool = False
    caller: policy.Caller = field(default_factory=policy.Caller)
    lock_timeout: float = C.LOCK_TIMEOUT
    warnings: list[str] = field(default_factory=list)

    def warn(self, text: str) -> None:
        self.warnings.append(text)


def kernel_route(route: Route, link: str, names: dict[str, str] | None = None) -> KernelRoute:
    """How a stored route goes to the kernel: IPv4 via its gateway, IPv6 as a device route."""
    table = table_id(route.table, names)
    return KernelRoute(
        dst=route.dst,
        dev=route.dev or link,
        gw=route.gw if route.family == 4 else None,
        metric=route.metric,
        table=None if table == "main" else table,
    )


def read_tagged(runner: Runner, families=(4, 6), **filters) -> list[Installed]:
    found: list[Installed] = []
    for family in families:
        found += parse_routes(runner.read_routes(family, tagged=True, **filters), family, tagged=True)
    return found


def _foreign_holder(runner: Runner, route: KernelRoute) -> str | None:
    """The route somebody else installed in this route's slot, described; None when free or ours."""
    family = route.dst.version
    for item in parse_routes(runner.read_routes(family, tagged=False, exact=route.dst), family):
        if slot_of(item.route) == slot_of(route) and item.protocol != str(C.RT_PROTO):
            via = f" via {item.route.gw}" if item.route.gw else ""
            return f"a proto {proto_name(item.protocol)} route{via} dev {item.route.dev}"
    return None


def holder_text(runner: Runner, route: KernelRoute) -> str:
    return _foreign_holder(runner, route) or "a route not installed by l2tp-routectl"


def _refusal(route: KernelRoute, holder: str) -> str:
    return (f"{route.dst} is already routed by {holder}, which l2tp-routectl did not install; "
            "left alone (use --force to replace it)")


PROTO_NAMES = {"2": "kernel", "3": "boot", "4": "static", "11": "zebra", "12": "bird", "16": "dhcp", "186": "bgp"}


def proto_name(number: str) -> str:
    return PROTO_NAMES.get(number, number)


# -- add --------------------------------------------------------------------

@dataclass
class AddResult:
    status: str  # "added", "updated", "exists"
    peer: IPv4Address
    line: str
    link: str | None = None
    kernel_error: str | None = None


def _check_destination_allowed(ctx: Context, route: Route, links: Links) -> None:
    if ctx.force:
        return
    if route.dst.prefixlen == 0:
        raise Refused(f"refusing to route {route.dst} (every address) to one user: it would cut the server off; "
                      "use a narrower network, or --force if you really mean it")
    rows = ctx.runner.read_routes(route.family, tagged=False)
    for net in server_networks(rows, links, route.family):
        if route.dst == net or route.dst.supernet_of(net):
            raise Refused(f"refusing {route.dst}: it covers {net}, a network on a link of this server; "
                          "sending it to a user would cut the server off (use --force to add it anyway)")


def _other_peers_routes(ctx: Context, peer: IPv4Address, dst) -> Iterator[tuple[IPv4Address, list[Route]]]:
    """Every other peer and its stored routes; a broken file is skipped with a warning."""
    peers, _ = ctx.store.peers()
    for other in peers:
        if other == peer:
            continue
        try:
            lines = ctx.store.read(other) or []
        except SystemFault:  # the disk, not the file: nothing can be checked
            raise
        except StoreError as exc:  # another peer's broken file must not block every add
            ctx.warn(f"{exc}; not checked for {dst}")
            continue
        yield other, routes_of(lines)


def _owner_elsewhere(ctx: Context, peer: IPv4Address, route: Route) -> IPv4Address | None:
    for other, routes in _other_peers_routes(ctx, peer, route.dst):
        if any(r.same_target(route) for r in routes):
            return other
    return None


def _authorize(ctx: Context, peer: IPv4Address, route: Route, link_rows: list, links: Links) -> None:
    """The panel's limits (policy.py), checked against the kernel and the store as they are now."""
    if not ctx.caller.panel:
        return
    route_rows = {family: ctx.runner.read_routes(family, tagged=False) for family in (4, 6)}
    held = [policy.Taken(r.dst, f"routed to peer {other}")
            for other, routes in _other_peers_routes(ctx, peer, route.dst) for r in routes]
    server = policy.server_state(link_rows, route_rows, links, peer, held, policy.read_resolvers())
    policy.authorize(ctx.caller, policy.Request(force=ctx.force, table=route.table, route=route), server)


def add(ctx: Context, peer: IPv4Address, route: Route) -> AddResult:
    link_rows = ctx.runner.read_links()
    links = parse_links(link_rows)
    if not ctx.caller.panel:  # the panel's limits include these, without a way past them
        _check_destination_allowed(ctx, route, links)
    names = table_names() if route.table else None
    with ctx.store.locked(ctx.lock_timeout):
        # Under the lock: another peer's destination cannot appear between the check and the write.
        _authorize(ctx, peer, route, link_rows, links)
        lines = ctx.store.read(peer) or []
        new_line = route_line(route)
        text = format_route(route)
        existing = next((i for i, line in enumerate(lines)
                         if line.route is not None and line.route.same_target(route)), None)
        if existing is not None and lines[existing].route == route:
            status = "exists"
        else:
            status = "updated" if existing is not None else "added"
            owner = None if ctx.force else _owner_elsewhere(ctx, peer, route)
            if owner is not None:
                raise Refused(f"{route.dst} is already routed to peer {owner}; the kernel can send it to one user "
                              f"only (delete it there first, or use --force)")
        link = links.link_of(peer)
        result = AddResult(status, peer, text, link)
        if status == "exists":
            if link is not None:
                result.kernel_error = _install_one(ctx, kernel_route(route, link, names), refuse=False)
            return result
        if link is None and not ctx.force:
            # Offline: the kernel cannot refuse yet, so look for a foreign holder ourselves.
            planned = kernel_route(route, route.dev or "-", names)
            holder = _foreign_holder(ctx.runner, planned)
            if holder is not None:
                raise Refused(_refusal(planned, holder))
        with ctx.store.staged(peer, _with_line(lines, existing, new_line)) as commit:
            if link is not None:
                result.kernel_error = _install_one(ctx, kernel_route(route, link, names), refuse=True)
            commit()
        return result


def _with_line(lines: list[Line], existing: int | None, new_line: Line) -> list[Line]:
    """The file's lines with `new_line` in place of line `existing`, or added at the end."""
    if existing is not None:
        return lines[:existing] + [new_line] + lines[existing + 1:]
    if lines and not lines[-1].raw.endswith(b"\n"):
        # The old tool's `echo >>` would have glued the new route onto that line.
        last = lines[-1]
        lines = lines[:-1] + [Line(last.raw + b"\n", last.kind, last.route, last.problem)]
    return lines + [new_line]


def _install_one(ctx: Context, wanted: KernelRoute, *, refuse: bool) -> str | None:
    """Install one route of ours; a slot held by a foreign route is refused (or an error)."""
    family = wanted.dst.version
    mine = [i for i in parse_routes(ctx.runner.read_routes(family, tagged=True, exact=wanted.dst), family, tagged=True)
            if i.slot == slot_of(wanted)]
    if mine and (mine[0].route.dev, mine[0].route.gw) == (wanted.dev, wanted.gw):
        return None
    verb = "replace" if (mine or ctx.force) else "add"
    try:
        ctx.runner.change(Change(verb, wanted))
    except IpError as exc:
        message = str(exc)
        if is_taken_slot_error(message):
            text = _refusal(wanted, holder_text(ctx.runner, wanted))
            if refuse:
                raise Refused(text) from None
            return text
        if refuse:
            via = f" via {wanted.gw}" if wanted.gw is not None else ""
            raise IpError(f"the kernel refused {wanted.dst}{via} dev {wanted.dev}: {message}{_hint(message, wanted)}; "
                          "nothing was changed") from None
        return message
    return None


def _hint(message: str, route: KernelRoute) -> str:
    if "IPv6 is disabled" in message:
        # A link created while net.ipv6.conf.default.disable_ipv6=1 refuses every IPv6 route.
        return f" (enable IPv6 on {route.dev}: sysctl -w net.ipv6.conf.{route.dev}.disable_ipv6=0)"
    return ""


# -- del --------------------------------------------------------------------

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
            result.kernel_removed, result.kernel_errors = _remove_from_kernel(ctx, peer, gone_routes, unparsed)
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


def _remove_from_kernel(ctx: Context, peer: IPv4Address, gone: list[Route],
                        unparsed: Network | None = None) -> tuple[list[str], list[str]]:
    """Delete the kernel routes of exactly these lines: our tag, their slot, this peer's link or gateway.
    `unparsed`: the destination of removed lines that were not valid routes; a tagged route to it on
    this peer's link or via this peer goes too, whatever its table or metric. A line's route that the
    old tool installed and apply has not taken over yet (reconcile.adopts) is taken over and deleted."""
    if not gone and unparsed is None:
        return [], []
    links = parse_links(ctx.runner.read_links())
    link = links.link_of(peer) or ""
    families = {r.family for r in gone} | ({unparsed.version} if unparsed is not None else set())
    tagged = read_tagged(ctx.runner, sorted(families))
    names = table_names() if any(r.table for r in gone) else None
    doomed: list[KernelRoute] = []
    unadopted: list[Want] = []
    adopted: list[KernelRoute] = []
    if unparsed is not None:
        doomed += [item.route for item in tagged
                   if item.route.dst == unparsed and (item.route.dev == link or item.route.gw == peer)]
    for route in gone:
        try:
            expected = kernel_route(route, link, names)
        except InputError as exc:  # a table name that is no longer defined: the line still goes
            ctx.warn(f"{format_route(route)}: {exc}; no kernel route looked for")
            continue
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
        old = old_tool_routes(parse_routes(ctx.runner.read_routes(4, tagged=False, main_boot=True), 4), links)
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


# -- apply ------------------------------------------------------------------

@dataclass(frozen=True)
class Connection:
    peer: IPv4Address
    link: str


@dataclass(frozen=True)
class RouteResult:
    """What became of one stored line in an apply."""

    peer: IPv4Address
    line: str  # as the route file says it
    link: str
    detail: str = ""  # blocked: what holds the destination; failed: why


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
    report = ApplyReport(scope=peer)
    with _no_cycle_collection(), ctx.store.locked(ctx.lock_timeout):
        # The kernel's state is read while the files are parsed: the `ip` dumps run
        # on the other core (a third of a steady-state apply at 10,000 routes).
        kernel = _Background(lambda: _dump_kernel_state(ctx.runner))
        peers = [peer] if peer is not None else all_peers(ctx)
        stored = {p: stored_routes(ctx, p) for p in peers}
        state = _kernel_state(ctx, kernel.result())
        targets = []
        for p in peers:
            link = state.links.link_of(p)
            if link is None:
                report.offline.append(p)
            else:
                targets.append(Connection(p, link))
        if peer is None:
            def removable(item: Installed) -> bool:
                return True  # every tagged route nobody wants
        else:
            link = state.links.link_of(peer)

            def removable(item: Installed) -> bool:
                return link is not None and item.route.dev == link
        _reconcile(ctx, report, state, targets, stored, removable)
    return report


def apply_links(ctx: Context, changes: list[LinkChange]) -> ApplyReport:
    """What pppd's hooks ask, for many links at once: the routes of each link that came up,
    none of ours on each link that went down; one kernel read and one batch for all.

    `changes` holds at most one change per link, the last one announced. An up whose
    link is gone or now carries another peer is skipped (that peer's own event follows);
    a down never touches a link that already carries another peer (a reused name).
    """
    report = ApplyReport(scope=None)
    with _no_cycle_collection(), ctx.store.locked(ctx.lock_timeout):
        state = _kernel_state(ctx, _dump_kernel_state(ctx.runner))
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

        def removable(item: Installed) -> bool:
            dev = item.route.dev
            # Routes via a peer that left, on a link of their own (a line with `dev`), go with it.
            return dev in up_links or dev in released_links or (item.route.gw in gone_peers and dev not in on_link)

        _reconcile(ctx, report, state, targets, stored, removable)
    return report


def _kernel_state(ctx: Context, dumps) -> _KernelState:
    tagged_rows, link_rows = dumps
    links = parse_links(link_rows)
    for text in links.duplicates:
        ctx.warn(text)
    return _KernelState([item for family, rows in tagged_rows for item in parse_routes(rows, family, tagged=True)],
                        links)


def _reconcile(ctx: Context, report: ApplyReport, state: _KernelState, targets: list[Connection],
               stored: dict[IPv4Address, list[Route]], removable) -> None:
    """The one reconcile behind every apply: wanted routes of `targets` against our tagged routes."""
    names = table_names() if any(r.table for t in targets for r in stored[t.peer]) else None
    wants = []
    for target in targets:
        report.connected.append(target)
        for route in stored[target.peer]:
            try:
                wants.append(Want(target.peer, route, kernel_route(route, target.link, names)))
            except InputError as exc:  # one bad line must not stop every other peer's routes
                report.failed.append(RouteResult(target.peer, format_route(route), target.link, str(exc)))
    result = _plan_adopting(ctx, wants, state, removable)
    for want in result.shadowed:
        ctx.warn(f"peer {want.peer}: {format_route(want.route)} is also wanted by another line or peer; "
                 "the kernel holds one route per destination, the first one wins")
    for want in result.unchanged:
        report.unchanged.append(RouteResult(want.peer, format_route(want.route), want.kernel.dev))
    _execute(ctx, result, report)


def _plan_adopting(ctx: Context, wants: list[Want], state: _KernelState, removable) -> Plan:
    """reconcile.plan, with the old tool's routes for these wants taken over (see reconcile).
    Those routes are read only when something is to be installed, so a steady state costs no
    extra dump, and the kernel sends only `proto boot` routes of table main, so a busy table
    costs little; only IPv4, as the old tool routed nothing else."""
    result = plan(wants, state.tagged, force=ctx.force, removable=removable)
    if ctx.force or not any(i.change.verb == "add" and i.change.route.dst.version == 4 for i in result.installs):
        return result
    old = old_tool_routes(parse_routes(ctx.runner.read_routes(4, tagged=False, main_boot=True), 4), state.links)
    return plan(wants, state.tagged, force=ctx.force, removable=removable, old=old) if old else result


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


def _execute(ctx: Context, result: Plan, report: ApplyReport) -> None:
    # Changes are frozen values and a plan holds each slot once, so a failure finds its change by value.
    failures = {failure.change: failure.message for failure in ctx.runner.batch(result.changes)}
    for install in result.installs:
        want = install.want
        outcome = RouteResult(want.peer, format_route(want.route), want.kernel.dev)
        message = failures.get(install.change)
        if message is None:
            done = report.adopted if install.adopt else report.updated if install.update else report.installed
            done.append(outcome)
        elif install.change.verb == "add" and is_taken_slot_error(message):
            report.blocked.append(replace(outcome, detail=holder_text(ctx.runner, install.change.route)))
        else:
            report.failed.append(replace(outcome, detail=message))
    for removal in result.removals:
        message = failures.get(removal.change)
        if message is None:
            report.removed.append(RemovalResult(removal.change.route))
        elif not is_gone_error(message):  # already gone: fine
            report.removal_failed.append(RemovalResult(removal.change.route, message))
