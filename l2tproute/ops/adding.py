"""`add`: a route into the peer's file and, when the peer is connected, into the kernel.

The kernel is changed before the file is put in place: a route the kernel refuses is
never stored, and a file the disk refuses never leaves the kernel changed."""

from __future__ import annotations

from dataclasses import dataclass

from l2tproute.core.carrier import Carrier, carried_route, kernel_route, not_carried_why
from l2tproute.core.kernel import parse_links, parse_routes, slot_of
from l2tproute.core.model import Change, IPv4Address, KernelRoute, Network, Refused, Route
from l2tproute.core.routefile import Line, format_route, route_line
from l2tproute.core.tables import table_names
from l2tproute.ops import policy
from l2tproute.ops.context import Context, connections_of
from l2tproute.system import dstindex
from l2tproute.system.iproute2 import IpError, is_taken_slot_error
from l2tproute.system.kernel_reads import addrs_of, foreign_holder, holder_text, refusal


@dataclass
class AddResult:
    status: str  # "added", "updated", "exists"
    peer: IPv4Address
    line: str
    link: str | None = None
    kernel_error: str | None = None
    #: The user's client on a shared link (OpenVPN), when it has no link of its own: the route goes via it.
    shared: Carrier | None = None
    #: Why the line does not go over that client (its own dev, or IPv6 on a tunnel without IPv6).
    not_carried: str | None = None

    @property
    def installed(self) -> bool:
        return (self.link is not None or (self.shared is not None and self.not_carried is None)) \
            and not self.kernel_error


def _check_destination_allowed(ctx: Context, route: Route) -> None:
    if ctx.force:
        return
    if route.dst.prefixlen == 0:
        raise Refused(f"refusing to route {route.dst} (every address) to one user: it would cut the server off; "
                      "use a narrower network, or --force if you really mean it")
    for net in _server_networks_inside(ctx, route.dst):
        raise Refused(f"refusing {route.dst}: it covers {net}, a network on a link of this server; "
                      "sending it to a user would cut the server off (use --force to add it anyway)")


def _server_networks_inside(ctx: Context, dst: Network) -> list[Network]:
    """kernel.server_networks, read for one destination: the `proto kernel` routes of table main
    that are `dst` or inside it (`root`), on links that carry no peer. An IPv4 host route of that
    kind only comes from a peer address (`addr add LOCAL peer PEER`), so it is a session's; the
    links of the others are read one by one, or all at once when there are many."""
    family = dst.version
    rows = ctx.runner.read_routes(family, tagged=False, root=dst, main_kernel=True)
    candidates = [row for row in rows if not (family == 4 and "/" not in str(row.get("dst", "")))]
    devs = sorted({str(row.get("dev", "")) for row in candidates})
    if not devs:
        return []
    if len(devs) > _FEW_LINKS:
        link_rows = ctx.runner.read_links()
    else:
        link_rows = [row for dev in devs if dev for row in addrs_of(ctx.runner, dev)]
    sessions = set(parse_links(link_rows).by_peer.values())
    # The filter by protocol leaves the protocol out of the rows: every one is `proto kernel`.
    return [item.route.dst for item in parse_routes(candidates, family) if item.route.dev not in sessions]


_FEW_LINKS = 8


def _authorize(ctx: Context, peer: IPv4Address, route: Route, holdings: dstindex.Holdings) -> None:
    """The panel's limits (policy.py), checked against the kernel and the store as they are now."""
    if not ctx.caller.panel:
        return
    link_rows = ctx.runner.read_links()
    links = parse_links(link_rows)
    route_rows = {family: ctx.runner.read_routes(family, tagged=False) for family in (4, 6)}
    held = [policy.Taken(net, f"routed to peer {other}")
            for other, net in holdings.networks_elsewhere(peer, ctx.warn, route.dst)]
    server = policy.server_state(link_rows, route_rows, links, peer, held, policy.read_resolvers())
    policy.authorize(ctx.caller, policy.Request(force=ctx.force, table=route.table, route=route), server)


def add(ctx: Context, peer: IPv4Address, route: Route) -> AddResult:
    found = connections_of(ctx, peer, own_only_if_found=True)
    link = found.own[peer].link if peer in found.own else None
    shared = found.shared_of(peer)
    client = shared.carrier if shared is not None and link is None else None
    if not ctx.caller.panel:  # the panel's limits include these, without a way past them
        _check_destination_allowed(ctx, route)
    names = table_names() if route.table else None
    ahead = dstindex.read_ahead(ctx.store) if (ctx.caller.panel or not ctx.force) else None
    with ctx.store.locked(ctx.lock_timeout):
        # Confirmed under the lock: another peer's destination cannot appear between the check and the write.
        holdings = dstindex.confirm(ctx.store, ahead) if ahead is not None else None
        if holdings is not None:
            _authorize(ctx, peer, route, holdings)
        lines = ctx.store.read(peer) or []
        new_line = route_line(route)
        text = format_route(route)
        existing = next((i for i, line in enumerate(lines)
                         if line.route is not None and line.route.same_target(route)), None)
        if existing is not None and lines[existing].route == route:
            status = "exists"
        else:
            status = "updated" if existing is not None else "added"
            owner = None if ctx.force else holdings.owner_elsewhere(peer, route, ctx.warn)
            if owner is not None:
                raise Refused(f"{route.dst} is already routed to peer {owner}; the kernel can send it to one user "
                              f"only (delete it there first, or use --force)")
        result = AddResult(status, peer, text, link, shared=client)
        target = _target(route, found.own.get(peer) or client, names, result)
        if status == "exists":
            if target is not None:
                result.kernel_error = _install_one(ctx, target, refuse=False)
            dstindex.save(ctx.store, holdings)
            return result
        if target is None and not ctx.force:
            # Offline: the kernel cannot refuse yet, so look for a foreign holder ourselves.
            planned = kernel_route(route, route.dev or "-", names)
            holder = foreign_holder(ctx.runner, planned)
            if holder is not None:
                raise Refused(refusal(planned, holder))
        with ctx.store.staged(peer, _with_line(lines, existing, new_line)) as commit:
            if target is not None:
                result.kernel_error = _install_one(ctx, target, refuse=True)
            commit()
        dstindex.save(ctx.store, holdings)
        return result


def _target(route: Route, carrier: Carrier | None, names, result: AddResult) -> KernelRoute | None:
    """The kernel route to put in now: over the user's link of its own, or via its client on a shared one."""
    if carrier is None:
        return None
    target = carried_route(route, carrier, names)
    if target is None:
        result.not_carried = not_carried_why(route)
    return target


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
    """Install one route of ours; a slot held by a foreign route is refused (or an error).
    The kernel is asked first (`add`, or `replace` with --force): only a taken slot needs a read,
    to tell our own route (kept, or moved to this link) from somebody else's."""
    family = wanted.dst.version
    verb = "replace" if ctx.force else "add"
    try:
        ctx.runner.change(Change(verb, wanted))
        return None
    except IpError as exc:
        message = str(exc)
        if not is_taken_slot_error(message):
            return _kernel_refused(wanted, message, refuse)
    mine = [i for i in parse_routes(ctx.runner.read_routes(family, tagged=True, exact=wanted.dst), family, tagged=True)
            if i.slot == slot_of(wanted)]
    if not mine:
        text = refusal(wanted, holder_text(ctx.runner, wanted))
        if refuse:
            raise Refused(text) from None
        return text
    if (mine[0].route.dev, mine[0].route.gw) == (wanted.dev, wanted.gw):
        return None
    try:
        ctx.runner.change(Change("replace", wanted))
    except IpError as exc:
        return _kernel_refused(wanted, str(exc), refuse)
    return None


def _kernel_refused(wanted: KernelRoute, message: str, refuse: bool) -> str:
    if refuse:
        via = f" via {wanted.gw}" if wanted.gw is not None else ""
        raise IpError(f"the kernel refused {wanted.dst}{via} dev {wanted.dev}: {message}{_hint(message, wanted)}; "
                      "nothing was changed") from None
    return message


def _hint(message: str, route: KernelRoute) -> str:
    if "IPv6 is disabled" in message:
        # A link created while net.ipv6.conf.default.disable_ipv6=1 refuses every IPv6 route.
        return f" (enable IPv6 on {route.dev}: sysctl -w net.ipv6.conf.{route.dev}.disable_ipv6=0)"
    return ""
