"""What every operation works with (the store, the runner, the caller, the warnings) and the
reads they share: a stored route as the kernel is told it, our tagged routes, who holds a slot."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import constants as C
from . import policy
from .iproute2 import Runner
from .kernel import Installed, parse_routes, slot_of
from .model import IPv4Address, KernelRoute, Route
from .routefile import problems
from .routefile import routes as routes_of
from .spool import run_dir_from_environment
from .store import Store, SystemFault
from .tables import is_main, table_id


@dataclass
class Context:
    store: Store
    runner: Runner
    force: bool = False
    caller: policy.Caller = field(default_factory=policy.Caller)
    lock_timeout: float = C.LOCK_TIMEOUT
    warnings: list[str] = field(default_factory=list)
    #: Where the worker's spool and OpenVPN's session records are (openvpn.py).
    run_dir: str = field(default_factory=lambda: run_dir_from_environment())

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
        table=None if is_main(table) else table,
    )


def read_tagged(runner: Runner, families=(4, 6), **filters) -> list[Installed]:
    found: list[Installed] = []
    for family in families:
        found += parse_routes(runner.read_routes(family, tagged=True, **filters), family, tagged=True)
    return found


def foreign_holder(runner: Runner, route: KernelRoute) -> str | None:
    """The route somebody else installed in this route's slot, described; None when free or ours."""
    family = route.dst.version
    for item in parse_routes(runner.read_routes(family, tagged=False, exact=route.dst), family):
        if slot_of(item.route) == slot_of(route) and item.protocol != str(C.RT_PROTO):
            via = f" via {item.route.gw}" if item.route.gw else ""
            return f"a proto {proto_name(item.protocol)} route{via} dev {item.route.dev}"
    return None


def holder_text(runner: Runner, route: KernelRoute) -> str:
    return foreign_holder(runner, route) or "a route not installed by l2tp-routectl"


def refusal(route: KernelRoute, holder: str) -> str:
    return (f"{route.dst} is already routed by {holder}, which l2tp-routectl did not install; "
            "left alone (use --force to replace it)")


PROTO_NAMES = {"2": "kernel", "3": "boot", "4": "static", "11": "zebra", "12": "bird", "16": "dhcp", "186": "bgp"}


def proto_name(number: str) -> str:
    return PROTO_NAMES.get(number, number)


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
