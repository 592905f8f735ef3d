"""`add`: a route into the peer's file and, when the peer is connected, into the kernel.

The kernel is changed before the file is put in place: a route the kernel refuses is
never stored, and a file the disk refuses never leaves the kernel changed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from . import policy
from .context import (
    Context,
    foreign_holder,
    holder_text,
    kernel_route,
    refusal,
)
from .iproute2 import IpError, is_taken_slot_error
from .kernel import Links, parse_links, parse_routes, server_networks, slot_of
from .model import Change, IPv4Address, KernelRoute, Refused, Route
from .routefile import Line, format_route, route_line
from .routefile import routes as routes_of
from .store import StoreError, SystemFault
from .tables import table_names


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
            holder = foreign_holder(ctx.runner, planned)
            if holder is not None:
                raise Refused(refusal(planned, holder))
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
            text = refusal(wanted, holder_text(ctx.runner, wanted))
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
