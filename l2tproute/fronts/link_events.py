"""pppd's link events handled: the library's apply for those links, its report to syslog.

Up: loosen rp_filter on that link, then make the link hold exactly that peer's stored
routes: applying.apply_links, the same reconcile and the same report as `apply --peer`.
Down: none of our routes on that link, nor via that peer elsewhere (unless the peer is
already back on another link). Everything done or refused goes to syslog (ident
`l2tp-routectl`, so `journalctl -t l2tp-routectl` shows it); nothing is printed.
The worker drains the spool through `handle`; `main` is the same for one event in this
process, at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import syslog
from collections.abc import Iterator, Mapping, Sequence
from typing import Callable

from l2tproute import transports
from l2tproute.core import constants as C
from l2tproute.core.errors import describe
from l2tproute.core.model import InputError
from l2tproute.core.text import one_line
from l2tproute.fronts import render
from l2tproute.ops import applying
from l2tproute.ops.applying import LinkChange
from l2tproute.ops.context import Context
from l2tproute.system.iproute2 import IpRoute2, Runner
from l2tproute.system.spool import UP
from l2tproute.system.store import Store
from l2tproute.system.syslogger import Log, quiet_log
from l2tproute.transports.l2tp.events import loosen_rp_filter, parse_event

#: One `ip` read may take this long in a hook, one batch this long; the in-process hook
#: gives up after constants.HOOK_DEADLINE seconds whatever happens.
HOOK_IP_TIMEOUT = 5.0
HOOK_BATCH_TIMEOUT = 10.0


class HookDeadline(BaseException):
    """The hook ran out of time (a BaseException, so no library code swallows it)."""


def handle(events: Sequence, ctx: Context, log: Log, proc_sys: str = "/proc/sys") -> None:
    """Handle link events (anything with direction, iface and peer), each link's in the order
    pppd ran them: only the last one of a link counts, one kernel read and one batch for all."""
    last: dict[str, object] = {}
    for event in events:
        earlier = last.get(event.iface)
        if earlier is not None:
            _sayer(earlier, log)(syslog.LOG_INFO, f"superseded by a later ip-{event.direction} of {event.iface}")
        last[event.iface] = event
    final = list(last.values())
    for event in final:
        if event.direction == UP:
            loosen_rp_filter(event.iface, _sayer(event, log), proc_sys)
    changes = [LinkChange(event.direction == UP, event.iface, event.peer) for event in final]
    report = applying.apply_links(ctx, changes)
    for text in ctx.warnings:
        log(syslog.LOG_WARNING, one_line(text))
    ctx.warnings.clear()
    skipped = {item.change.link: item.reason for item in report.skipped}
    for event in final:
        say = _sayer(event, log)
        if event.iface in skipped:
            say(syslog.LOG_INFO, f"nothing done: {skipped[event.iface]}")
        mine = report.of_link(event.iface)
        for item in mine.kept:
            say(syslog.LOG_INFO, item.reason)
        if event.direction == UP:
            if event.iface in skipped:
                continue
            if not (mine.installed or mine.updated or mine.unchanged or mine.blocked or mine.failed) \
                    and not os.path.exists(ctx.store.path(event.peer)):
                say(syslog.LOG_INFO, f"no routes stored ({ctx.store.path(event.peer)} does not exist); "
                                     "nothing to install")
            _log_lines(say, render.link_up_lines(mine))
            continue
        elsewhere = [r for r in report.removed if r.route.dev != event.iface and r.route.gw == event.peer]
        mine.removed += elsewhere
        mine.installed += [r for r in report.installed if r.shared and r.peer == event.peer]
        _log_lines(say, render.link_down_lines(event.iface, event.peer, mine))


def after_openvpn(peers: Sequence, ctx: Context, log: Log) -> None:
    """Users whose OpenVPN session ended: the lines their L2TP link could not have while that
    session held them go onto it now (apply --peer), not at the timer's next apply."""
    for peer in peers:
        report = applying.apply(ctx, peer)
        for text in ctx.warnings:
            log(syslog.LOG_WARNING, one_line(text))
        ctx.warnings.clear()
        if report.connected and (report.installed or report.updated or report.blocked or report.failed):
            prefix = f"after openvpn: {report.connected[0].link} peer {peer}: "
            _log_lines(lambda priority, text, prefix=prefix: log(priority, prefix + text), render.link_up_lines(report))


def _log_lines(say, lines: list[render.LogLine]) -> None:
    for line in lines:
        say(syslog.LOG_WARNING if line.trouble else syslog.LOG_INFO, line.text)


def _sayer(event, log: Log) -> Callable[[int, str], None]:
    prefix = f"ip-{event.direction} {event.iface} peer {event.peer}: "
    return lambda priority, message: log(priority, prefix + one_line(message))


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
    """Handle one hook call in this process, at once. Always returns 0: pppd must never
    see a failure; syslog does. (The installed hooks spool instead: bin/l2tp-routes-event.)"""
    if log is None:
        log = quiet_log()
    what = f"ip-{direction}"
    try:
        with _deadline(deadline):
            try:
                event = parse_event(direction, list(argv[1:]), environ)
            except InputError as exc:
                log(syslog.LOG_ERR, f"{one_line(what)}: ignored: {one_line(exc)}")
                return 0
            what = str(event)
            if store is None:
                store = Store.from_environment()
            if runner is None:
                runner = IpRoute2(timeout=HOOK_IP_TIMEOUT, batch_timeout=HOOK_BATCH_TIMEOUT)
            handle([event], transports.context(store, runner), log, proc_sys)
    except HookDeadline:
        log(syslog.LOG_ERR, f"{what}: gave up after {deadline:g} s (ip did not answer in time); "
                            f"run l2tp-routectl apply to finish, the timer does it within a minute")
    except BaseException as exc:  # noqa: B902 - a hook must not fail pppd, whatever happened
        log(syslog.LOG_ERR, f"{what}: {describe(exc)}")
    return 0
