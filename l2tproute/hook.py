"""The pppd hook glue: `/etc/ppp/ip-up.d/l2tp-routes` and `/etc/ppp/ip-down.d/l2tp-routes`.

pppd runs `/etc/ppp/ip-up IFACE TTY SPEED LOCAL PEER IPPARAM` with the environment
cleared; Debian's dispatcher exports the same values as PPP_IFACE ... PPP_IPPARAM and
runs every hook in ip-up.d with those arguments. What the hook gets is parsed once,
here, into one `LinkEvent`; nothing below reads the environment.

Up: loosen rp_filter on that link, then install exactly that peer's stored routes
on exactly that link (the link is known: no discovery) with one `ip -batch`.
Down: delete exactly the routes with our tag on that link, or via that peer.

A hook must never spoil or delay the user's session: it takes no store lock (files
are replaced by rename, so a read sees a whole file), gives up after a deadline,
prints nothing, always returns 0, and says everything it did or failed to do to
syslog (ident `l2tp-routectl`, so `journalctl -t l2tp-routectl` shows it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import syslog
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

from . import constants as C
from .engine import _holder_text, kernel_route
from .iproute2 import Change, Failure, IpError, IpRoute2, KernelRoute, Runner, is_taken_slot_error
from .kernel import Installed, parse_routes, slot_of
from .model import InputError, IPv4Address, parse_device, parse_ipv4, parse_peer, show
from .reconcile import Want, plan
from .routefile import format_route, problems
from .routefile import routes as routes_of
from .store import Store
from .syslogger import Syslog
from .tables import table_names

UP = "up"
DOWN = "down"

#: One `ip` read may take this long in a hook, one batch this long; the whole hook
#: gives up after constants.HOOK_DEADLINE seconds whatever happens.
HOOK_IP_TIMEOUT = 5.0
HOOK_BATCH_TIMEOUT = 10.0

#: Loose reverse-path filtering. The kernel uses max(conf/all, conf/IFACE), and 2 is
#: the maximum, so writing 2 on the link makes it loose whatever `all` says.
RP_FILTER_LOOSE = "2"

#: log(priority, message): syslog's signature. Tests pass a list's recorder.
Log = Callable[[int, str], None]


class HookDeadline(BaseException):
    """The hook ran out of time (a BaseException, so no library code swallows it)."""


@dataclass(frozen=True)
class LinkEvent:
    """What pppd told the hook, parsed."""

    direction: str  # UP or DOWN
    iface: str
    peer: IPv4Address
    local: IPv4Address | None = None
    tty: str = ""
    ipparam: str = ""

    def __str__(self) -> str:
        return f"{self.direction} {self.iface} peer {self.peer}"


def parse_event(direction: str, args: Sequence[str], environ: Mapping[str, str]) -> LinkEvent:
    """From pppd's arguments ($1 link ... $5 peer) or, without them, the dispatcher's PPP_*.

    `args` excludes the program name. Raises InputError naming the wrong value.
    """
    if direction not in (UP, DOWN):
        raise InputError(f"unknown hook direction {show(direction)}; expected up or down")
    if len(args) >= 5 and args[0] and args[4]:
        iface, tty, local, peer = args[0], args[1], args[3], args[4]
        ipparam = args[5] if len(args) > 5 else ""
        source = "arguments"
    else:
        iface, peer = environ.get("PPP_IFACE", ""), environ.get("PPP_REMOTE", "")
        tty, local, ipparam = environ.get("PPP_TTY", ""), environ.get("PPP_LOCAL", ""), environ.get("PPP_IPPARAM", "")
        source = "PPP_IFACE/PPP_REMOTE"
        if not iface or not peer:
            raise InputError(f"no link and peer: expected pppd's arguments IFACE TTY SPEED LOCAL PEER [IPPARAM] "
                             f"or PPP_IFACE and PPP_REMOTE (got {len(args)} arguments)")
    try:
        link = parse_device(iface)
        remote = parse_peer(peer)
    except InputError as exc:
        raise InputError(f"{exc} (from {source})") from None
    try:
        local_addr: IPv4Address | None = parse_ipv4(local, "local address") if local else None
    except InputError:
        local_addr = None  # only informative: never a reason to skip the routes
    return LinkEvent(direction, link, remote, local_addr, _printable(tty), _printable(ipparam))


def _printable(text: str, limit: int = 64) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


# -- up ---------------------------------------------------------------------

def link_up(event: LinkEvent, store: Store, runner: Runner, log: Log, proc_sys: str = "/proc/sys") -> None:
    say = _sayer(event, log)
    loosen_rp_filter(event.iface, say, proc_sys)
    try:
        lines = store.read(event.peer)
    except RuntimeError as exc:
        say(syslog.LOG_ERR, f"cannot read the peer's routes: {exc}; nothing installed")
        return
    if lines is None:
        say(syslog.LOG_INFO, f"no routes stored ({store.path(event.peer)} does not exist); nothing to install")
        return
    for text in problems(lines, store.path(event.peer)):
        say(syslog.LOG_WARNING, text)
    stored = routes_of(lines)
    names = _table_names(stored, say)
    wants = []
    for route in stored:
        try:
            wants.append(Want(event.peer, route, kernel_route(route, event.iface, names)))
        except InputError as exc:
            say(syslog.LOG_WARNING, f"{format_route(route)}: {exc}; skipped")
    try:
        on_link = _tagged(runner, dev=event.iface)
    except IpError as exc:
        say(syslog.LOG_ERR, f"cannot read the routes of {event.iface}: {_one_line(exc)}; nothing installed")
        return
    result = plan(wants, on_link, force=False, removable=lambda item: True)
    for want in result.shadowed:
        say(syslog.LOG_WARNING, f"{format_route(want.route)}: another line of this peer already routes "
                                f"{want.route.dst}; the first one wins")
    counts = {"installed": 0, "updated": 0, "removed": 0, "blocked": 0, "failed": 0}
    retry: list[Want] = []
    failures = _by_change(runner.batch(result.changes))
    for change, reason in zip(result.changes, result.reasons):
        failure = failures.get(id(change))
        if isinstance(reason, Want):
            if failure is None:
                _count_install(say, counts, change, reason)
            elif change.verb == "add" and is_taken_slot_error(failure.message):
                holder = _tagged_holder(runner, change.route)
                if holder is not None:
                    retry.append(reason)  # our own route (another link or gateway): take it over
                else:
                    counts["blocked"] += 1
                    say(syslog.LOG_WARNING, f"not installed: {format_route(reason.route)}: {reason.route.dst} is "
                                            f"held by {_holder_text(runner, change.route)}, which l2tp-routectl "
                                            "did not install; left alone")
            else:
                counts["failed"] += 1
                say(syslog.LOG_ERR, f"failed: {format_route(reason.route)}: {_one_line(failure.message)}")
        else:
            _count_removal(say, counts, change, failure, "stale ")
    if retry:
        changes = [Change("replace", want.kernel) for want in retry]
        failures = _by_change(runner.batch(changes))
        for change, want in zip(changes, retry):
            failure = failures.get(id(change))
            if failure is None:
                _count_install(say, counts, change, want)
            else:
                counts["failed"] += 1
                say(syslog.LOG_ERR, f"failed: {format_route(want.route)}: {_one_line(failure.message)}")
    say(syslog.LOG_INFO, f"{len(stored)} stored routes: {counts['installed']} installed, {counts['updated']} updated, "
                         f"{len(result.unchanged)} unchanged, {counts['removed']} removed, "
                         f"{counts['blocked']} blocked, {counts['failed']} failed")


def loosen_rp_filter(iface: str, say: Callable[[int, str], None], proc_sys: str = "/proc/sys") -> None:
    """rp_filter=2 on the link: the sysctl.d glob only reaches links present at boot."""
    path = os.path.join(proc_sys, "net", "ipv4", "conf", iface, "rp_filter")
    try:
        with open(path, "r+", encoding="ascii") as handle:
            if handle.read().strip() == RP_FILTER_LOOSE:
                return
            handle.seek(0)
            handle.write(RP_FILTER_LOOSE + "\n")
    except OSError as exc:
        say(syslog.LOG_WARNING, f"cannot set {path} to {RP_FILTER_LOOSE} (loose): {exc.strerror or exc}")
        return
    say(syslog.LOG_INFO, f"rp_filter set to {RP_FILTER_LOOSE} (loose) on {iface}")


def _table_names(stored, say) -> dict[str, str] | None:
    if not any(route.table for route in stored):
        return None
    return table_names()


def _tagged_holder(runner: Runner, route: KernelRoute) -> Installed | None:
    family = route.dst.version
    for item in parse_routes(runner.read_routes(family, tagged=True, exact=route.dst), family):
        if item.slot == slot_of(route):
            return item
    return None


def _count_install(say, counts, change: Change, want: Want) -> None:
    key = "updated" if change.verb == "replace" else "installed"
    counts[key] += 1
    say(syslog.LOG_INFO, f"{key}: {format_route(want.route)} (ip route {change.verb} "
                         f"{want.kernel.dst}{_via(want.kernel)} dev {want.kernel.dev})")


# -- down -------------------------------------------------------------------

def link_down(event: LinkEvent, runner: Runner, log: Log) -> None:
    say = _sayer(event, log)
    try:
        tagged = _tagged(runner)
    except IpError as exc:
        say(syslog.LOG_ERR, f"cannot read the routing table: {_one_line(exc)}; nothing removed")
        return
    on_link = [item for item in tagged if item.route.dev == event.iface]
    via_peer = [item for item in tagged if item.route.dev != event.iface and item.route.gw == event.peer]
    if via_peer:
        # The user may already be back on a new link (a reconnect races the old session's
        # ip-down): then the routes via its address are the new session's; keep them.
        try:
            others = sorted(links_with_peer(runner.read_links(), event.peer) - {event.iface})
        except IpError as exc:
            say(syslog.LOG_WARNING, f"cannot read the links: {_one_line(exc)}; routes via {event.peer} on other "
                                    "links are kept")
            others = ["(unknown)"]
        if others:
            say(syslog.LOG_INFO, f"peer {event.peer} is connected again on {', '.join(others)}; its routes via "
                                 f"{event.peer} on other links are kept")
            via_peer = []
    doomed = on_link + via_peer
    counts = {"removed": 0, "failed": 0}
    changes = [Change("del", item.route) for item in doomed]
    failures = _by_change(runner.batch(changes))
    for change in changes:
        _count_removal(say, counts, change, failures.get(id(change)), "")
    say(syslog.LOG_INFO, f"{counts['removed']} routes removed, {counts['failed']} failed")


def links_with_peer(rows: list, peer: IPv4Address) -> set:
    """Every link whose address has exactly `peer` as its peer (`ip -json addr show` rows)."""
    found = set()
    for row in rows:
        for info in row.get("addr_info", []):
            if info.get("family") == "inet" and info.get("address") == str(peer) and info.get("local") != str(peer):
                found.add(str(row.get("ifname", "")))
    return found


def _count_removal(say, counts, change: Change, failure: Failure | None, what: str) -> None:
    route = change.route
    text = f"{route.dst}{_via(route)} dev {route.dev}"
    if failure is None:
        counts["removed"] += 1
        say(syslog.LOG_INFO, f"removed {what}route {text}")
    elif "No such process" in failure.message:
        say(syslog.LOG_INFO, f"route {text} was already gone")
    else:
        counts["failed"] += 1
        say(syslog.LOG_ERR, f"failed to remove {what}route {text}: {_one_line(failure.message)}")


# -- shared -----------------------------------------------------------------

def _tagged(runner: Runner, dev: str | None = None) -> list[Installed]:
    found: list[Installed] = []
    for family in (4, 6):
        rows = runner.read_routes(family, tagged=True, dev=dev)
        if dev is not None:
            # `ip route show dev X` leaves the device out of every row it prints.
            rows = [dict(row, dev=row.get("dev") or dev) for row in rows]
        found += parse_routes(rows, family)
    return found


def _by_change(failures: list[Failure]) -> dict[int, Failure]:
    return {id(failure.change): failure for failure in failures}


def _via(route: KernelRoute) -> str:
    return f" via {route.gw}" if route.gw is not None else ""


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _sayer(event: LinkEvent, log: Log) -> Callable[[int, str], None]:
    prefix = f"ip-{event.direction} {event.iface} peer {event.peer}: "
    return lambda priority, message: log(priority, prefix + _one_line(message))


def syslog_log(ident: str = C.SYSLOG_IDENT) -> Log:
    """Log to syslog (journald reads it): `journalctl -t l2tp-routectl`.

    Not the `syslog` module: glibc's syslog(3) blocks for good when the daemon stops
    reading /dev/log, and the hook with it (see syslogger.py).
    """
    return Syslog(ident)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise HookDeadline in the main thread after `seconds` (no deadline elsewhere)."""

    def expire(signum, frame):
        raise HookDeadline()

    try:
        previous = signal.signal(signal.SIGALRM, expire)
    except ValueError:  # not the main thread: the caller keeps its own limits
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def main(direction: str, argv: Sequence[str], environ: Mapping[str, str], *, log: Log | None = None,
         store: Store | None = None, runner: Runner | None = None,
         deadline: float = C.HOOK_DEADLINE, proc_sys: str = "/proc/sys") -> int:
    """Run one hook. Always returns 0: pppd must never see a failure; syslog does."""
    if log is None:
        try:
            log = syslog_log()
        except Exception:
            log = lambda priority, message: None  # noqa: E731 - nowhere to say it; still never fail
    what = f"ip-{direction}"
    try:
        with _deadline(deadline):
            try:
                event = parse_event(direction, list(argv[1:]), environ)
            except InputError as exc:
                log(syslog.LOG_ERR, f"{_one_line(what)}: ignored: {_one_line(exc)}")
                return 0
            what = f"ip-{event.direction} {event.iface} peer {event.peer}"
            if store is None:
                store = Store.from_environment()
            if runner is None:
                runner = IpRoute2(timeout=HOOK_IP_TIMEOUT, batch_timeout=HOOK_BATCH_TIMEOUT)
            if event.direction == UP:
                link_up(event, store, runner, log, proc_sys)
            else:
                link_down(event, runner, log)
    except HookDeadline:
        log(syslog.LOG_ERR, f"{what}: gave up after {deadline:g} s (ip did not answer in time); "
                            f"run `l2tp-routectl apply` to finish, the timer does it within a minute")
    except BaseException as exc:  # noqa: B902 - a hook must not fail pppd, whatever happened
        log(syslog.LOG_ERR, f"{what}: internal error ({type(exc).__name__}): {_one_line(exc)}; please report this")
    return 0
