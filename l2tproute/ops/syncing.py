"""One client's routes on a link it shares with other users (an OpenVPN tun): its user's lines
via its own address, first come wins against every other route, planned by reconcile.plan.

On a shared link the lines of one user are not the only routes there: other clients' live
routes, an L2TP session's or a foreign route may hold a slot first, and stay (`add`, which the
kernel refuses for a taken slot). Only two kinds of our routes are this client's to change: the
routes via its own addresses (removed when no line wants them) and the routes via an older
connection of the same user (taken over: the newest connection gets the user's routes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Callable

from l2tproute.core.carrier import Carrier, Hop, carried_route, kernel_route, not_carried_why
from l2tproute.core.kernel import Installed
from l2tproute.core.model import InputError, KernelRoute, Route
from l2tproute.core.reconcile import Want, plan
from l2tproute.core.tables import table_names
from l2tproute.system.iproute2 import IpError, Runner, is_gone_error, is_no_device_error, is_taken_slot_error
from l2tproute.system.kernel_reads import read_tagged, slot_holder


@dataclass(frozen=True)
class CarriedRoute:
    """One stored line of the client's user, as the kernel got it (or did not)."""

    route: Route
    kernel: KernelRoute
    detail: str = ""  # held: what holds the destination; failed: why


@dataclass(frozen=True)
class CarriedRemoval:
    """A route of ours via the client that no line wants, and why it could not be removed."""

    route: KernelRoute
    detail: str


@dataclass(frozen=True)
class NotCarried:
    """A line that does not go over the client, and why."""

    route: Route
    why: str


@dataclass
class CarrierSync:
    """What one client's routes became: the stored lines against our routes via it."""

    carrier: Carrier
    installed: list[CarriedRoute] = field(default_factory=list)
    #: Taken over from an older connection of the same user (OpenVPN gives the iroute to the newest).
    moved: list[CarriedRoute] = field(default_factory=list)
    unchanged: list[CarriedRoute] = field(default_factory=list)
    removed: list[KernelRoute] = field(default_factory=list)
    #: The slot is held by another route (L2TP first, another user, a foreign route): first come wins.
    held: list[CarriedRoute] = field(default_factory=list)
    failed: list[CarriedRoute] = field(default_factory=list)
    removal_failed: list[CarriedRemoval] = field(default_factory=list)
    not_carried: list[NotCarried] = field(default_factory=list)  # own dev, or IPv6 without IPv6


def tagged_on_link(runner: Runner, link: str, families=(4, 6)) -> list[Installed]:
    """Our routes on a shared link; none when it is gone (the server stopped and took them along)."""
    try:
        return read_tagged(runner, families=families, dev=link)
    except IpError as exc:
        if is_no_device_error(str(exc)):
            return []
        raise


def sync_carrier(runner: Runner, carrier: Carrier, routes: Sequence[Route], is_older: Callable[[Hop], bool],
                 on_link: list[Installed] | None = None) -> CarrierSync:
    """Make our routes via this client exactly its user's stored lines. `is_older` tells a next hop
    of an older connection of the same user. One read of our routes on the link (or `on_link`,
    read once for many clients), one batch; the caller holds the store lock."""
    result = CarrierSync(carrier)
    names = table_names() if any(r.table for r in routes) else None
    wants: list[Want] = []
    for route in routes:
        try:
            kernel = carried_route(route, carrier, names)
        except InputError as exc:  # a table name no longer defined: this line only
            result.failed.append(CarriedRoute(route, kernel_route(replace(route, table=None), carrier.link), str(exc)))
            continue
        if kernel is None:
            result.not_carried.append(NotCarried(route, not_carried_why(route)))
        else:
            wants.append(Want(carrier.peer, route, kernel))
    if on_link is None:
        families = sorted({w.kernel.dst.version for w in wants} | ({4, 6} if carrier.via6 else {4}))
        on_link = tagged_on_link(runner, carrier.link, families)
    hops = carrier.next_hops

    def hop(item: Installed) -> Hop:
        return (item.route.dev, item.route.gw)

    # Ours to change: via this client, or via an older connection of its user. Every other route
    # in a wanted slot is left out, so the plan adds there and the kernel refuses: it stays.
    mine = [item for item in on_link if hop(item) in hops or (item.route.gw is not None and is_older(hop(item)))]
    planned = plan(wants, mine, force=False, removable=lambda item: hop(item) in hops)
    failures = {f.change: f.message for f in runner.batch(planned.changes)}
    result.unchanged += [CarriedRoute(w.route, w.kernel) for w in planned.unchanged]
    for install in planned.installs:
        want = CarriedRoute(install.want.route, install.want.kernel)
        message = failures.get(install.change)
        if message is None:
            (result.moved if install.update else result.installed).append(want)
        elif install.change.verb == "add" and is_taken_slot_error(message):
            result.held.append(replace(want, detail=slot_holder(runner, want.kernel).text))
        else:
            result.failed.append(replace(want, detail=message))
    for removal in planned.removals:
        message = failures.get(removal.change)
        if message is None:
            result.removed.append(removal.change.route)
        elif not is_gone_error(message):
            result.removal_failed.append(CarriedRemoval(removal.change.route, message))
    return result
