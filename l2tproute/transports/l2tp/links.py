"""The pppd hook glue: link events in, the library's apply for those links, syslog out.

pppd runs `/etc/ppp/ip-up IFACE TTY SPEED LOCAL PEER IPPARAM` with the environment
cleared; Debian's dispatcher exports the same values as PPP_IFACE ... PPP_IPPARAM and
runs every hook in ip-up.d with those arguments. The installed hooks are POSIX sh
(bin/l2tp-routes-event) that spool the event for the worker (worker.py); `parse_event`
is the same reading in Python, held to the sh one by tests/netns/test_event_front.py.

Up: loosen rp_filter on that link, then make the link hold exactly that peer's stored
routes: applying.apply_links, the same reconcile and the same report as `apply --peer`.
Down: none of our routes on that link, nor via that peer elsewhere (unless the peer is
already back on another link). Everything done or refused goes to syslog (ident
`l2tp-routectl`, so `journalctl -t l2tp-routectl` shows it); nothing is printed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import syslog
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

from l2tproute import transports
from l2tproute.core import constants as C
from l2tproute.core.errors import describe
from l2tproute.core.model import InputError, IPv4Address, parse_device, parse_ipv4, parse_peer, show
from l2tproute.fronts import render
from l2tproute.ops import applying
from l2tproute.ops.applying import LinkChange
from l2tproute.ops.context import Context
from l2tproute.system.iproute2 import IpRoute2, Runner
from l2tproute.system.store import Store
from l2tproute.system.syslogger import Syslog

UP = "up"
DOWN = "down"

#: One `ip` read may take this long in a hook, one batch this long; the in-process hook
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
        return f"ip-{self.direction} {self.iface} peer {self.peer}"


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
        log(syslog.LOG_WARNING, _one_line(text))
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
            log(syslog.LOG_WARNING, _one_line(text))
        ctx.warnings.clear()
        if report.connected and (report.installed or report.updated or report.blocked or report.failed):
            prefix = f"after openvpn: {report.connected[0].link} peer {peer}: "
            _log_lines(lambda priority, text, prefix=prefix: log(priority, prefix + text), render.link_up_lines(report))


def _log_lines(say, lines: list[render.LogLine]) -> None:
    for line in lines:
        say(syslog.LOG_WARNING if line.trouble else syslog.LOG_INFO, line.text)


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _sayer(event, log: Log) -> Callable[[int, str], None]:
    prefix = f"ip-{event.direction} {event.iface} peer {event.peer}: "
    return lambda priority, message: log(priority, prefix + _one_line(message))


def syslog_log(ident: str = C.SYSLOG_IDENT) -> Log:
    """Log to syslog (journald reads it): `journalctl -t l2tp-routectl`.

    Not the `syslog` module: glibc's syslog(3) blocks for good when the daemon stops
    reading /dev/log, and the worker with it (see syslogger.py).
    """
    return Syslog(ident)


def quiet_log() -> Log:
    """syslog, or nowhere when even that cannot be opened: a hook never fails for its log."""
    try:
        return syslog_log()
    except Exception:
        return lambda priority, message: None


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
                log(syslog.LOG_ERR, f"{_one_line(what)}: ignored: {_one_line(exc)}")
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
