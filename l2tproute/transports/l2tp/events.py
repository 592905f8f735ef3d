"""pppd/L2TP's link events as pppd reports them: the hook's arguments or the dispatcher's PPP_* values.

pppd runs `/etc/ppp/ip-up IFACE TTY SPEED LOCAL PEER IPPARAM` with the environment
cleared; Debian's dispatcher exports the same values as PPP_IFACE ... PPP_IPPARAM and
runs every hook in ip-up.d with those arguments. The installed hooks are POSIX sh
(bin/l2tp-routes-event) that spool the event for the worker; `parse_event` is the same
reading in Python, held to the sh one by tests/netns/test_event_front.py.
"""

from __future__ import annotations

import os
import syslog
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

from l2tproute.core.model import InputError, IPv4Address, parse_device, parse_ipv4, parse_peer, show
from l2tproute.core.text import printable
from l2tproute.system.spool import DOWN, UP

#: Loose reverse-path filtering. The kernel uses max(conf/all, conf/IFACE), and 2 is
#: the maximum, so writing 2 on the link makes it loose whatever `all` says.
RP_FILTER_LOOSE = "2"


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
    return LinkEvent(direction, link, remote, local_addr, printable(tty), printable(ipparam))


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
