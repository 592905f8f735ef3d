"""The hook spool: pppd's link events, waiting for the worker.

pppd waits for its hooks, and a Python start per hook is what made a reconnect storm
cost minutes and a gigabyte. So the hooks are a few lines of POSIX sh
(bin/l2tp-routes-event) that only record the event and make sure a worker runs; one
worker (worker.py) then handles every pending event with one kernel read and one batch.

An event is an empty file whose name is the whole event, `NETNS,IFACE,SEQ,DIRECTION,PEER`,
created with O_EXCL, so a reader never sees half of one. NETNS is the network namespace the
hook ran in (netns.py: `DEV-INO` of its nsfs file); the worker runs the event there, or
refuses it when it cannot enter that namespace, never in another. SEQ counts the events
of one link name in one namespace (the file seq/NETNS,IFACE): pppd runs a link's ip-down
only after its ip-up returned, so within a link the numbers are in the order pppd ran the
hooks. The name is only trusted after the same validation as pppd's arguments
(transports.l2tp.events.parse_event). A name without NETNS (a hook of the version before) is refused: the
timer's apply installs its routes.

OpenVPN's hook (bin/l2tp-routes-openvpn, running as nobody:www-data) spools a second kind:
`NETNS,TUN,SEQ,vpn-up,VPN_ADDRESS,PEER[,VPN_ADDRESS6]` (the client's IPv6 pool address when
the server has `server-ipv6`) and `NETNS,TUN,SEQ,vpn-down,VPN_ADDRESS`, SEQ being the time in
nanoseconds (the hook cannot write root's seq files). The spool is writable by the hook's
group, so the worker trusts these names no further than openvpn.py checks them against
the kernel and its own session records.

The grammar is written once per language: here (event_name, parse_name, parse_vpn_name) and
in lib/l2tproute.sh (l2t_event_name); tests/unit/test_spool_grammar.py holds them together.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field

from l2tproute.core import constants as C
from l2tproute.core.model import InputError, IPv4Address, IPv6Address, parse_device, parse_peer, parse_vpn_address6
from l2tproute.system.netns import NetnsId, parse_id
from l2tproute.system.settings import setting

SPOOL = "spool"
SEQ = "seq"
WORKER_LOCK = "worker.lock"
#: Names the worker that holds WORKER_LOCK, by PID and start time (lib/l2tproute.sh,
#: l2t_worker_running): a hook that finds it alive needs no flock.
WORKER_RUNNING = "worker.running"
UP = "up"
DOWN = "down"

VPN_UP = "vpn-up"
VPN_DOWN = "vpn-down"

_NETNS = r"([0-9]{1,10}-[0-9]{1,20}),"
_NAME_RE = re.compile(_NETNS + r"([^,]{1,15}),([0-9]{1,18}),(up|down),([0-9.]{7,15})", re.ASCII)
_VPN_NAME_RE = re.compile(_NETNS + r"([^,]{1,15}),([0-9]{1,20}),"
                          r"(vpn-up,([0-9.]{7,15}),([0-9.]{7,15})(?:,([0-9a-f:]{2,39}))?|vpn-down,([0-9.]{7,15}))",
                          re.ASCII)


@dataclass(frozen=True)
class SpooledEvent:
    """One hook call as the sh front recorded it."""

    iface: str
    seq: int
    direction: str
    peer: IPv4Address
    name: str  # the file in the spool
    netns: NetnsId | None = None  # where the hook ran

    def __str__(self) -> str:
        return f"ip-{self.direction} {self.iface} peer {self.peer}"


def event_name(netns: NetnsId, iface: str, seq: int, kind: str, *fields: object) -> str:
    """The spool name of one event: NETNS,IFACE,SEQ,KIND and the kind's fields (l2t_event_name in sh)."""
    return ",".join([str(netns), iface, str(seq), kind, *(str(f) for f in fields)])


def run_dir_from_environment(environ=os.environ) -> str:
    """L2TP_RUN_DIR moves the spool for tests, never for a caller going through sudo."""
    return setting(C.RUN_DIR_ENV, C.DEFAULT_RUN_DIR, environ)


@dataclass(frozen=True)
class VpnEvent:
    """One OpenVPN client-connect (with the user's peer address) or client-disconnect."""

    tun: str
    seq: int
    direction: str  # VPN_UP or VPN_DOWN
    address: IPv4Address  # the client's VPN address (ifconfig_pool_remote_ip)
    peer: IPv4Address | None  # the user's chap-secrets address; None on vpn-down
    name: str
    address6: IPv6Address | None = None  # the client's IPv6 pool address, with server-ipv6
    netns: NetnsId | None = None  # where OpenVPN's hook ran: its tun's namespace

    def __str__(self) -> str:
        user = f" peer {self.peer}" if self.peer is not None else ""
        return f"{self.direction} {self.tun} client {self.address}{user}"


def parse_vpn_name(name: str) -> VpnEvent:
    match = _VPN_NAME_RE.fullmatch(name)
    if match is None:
        raise InputError(f"spool entry {name[:80]} is not NETNS,TUN,SEQ,vpn-up,ADDRESS,PEER[,ADDRESS6] or "
                         "NETNS,TUN,SEQ,vpn-down,ADDRESS")
    netns, tun, seq, _, up_address, up_peer, up_address6, down_address = match.groups()
    if up_address is not None:
        address6 = parse_vpn_address6(up_address6) if up_address6 is not None else None
        return VpnEvent(parse_device(tun), int(seq), VPN_UP, parse_peer(up_address), parse_peer(up_peer), name,
                        address6, parse_id(netns))
    return VpnEvent(parse_device(tun), int(seq), VPN_DOWN, parse_peer(down_address), None, name,
                    netns=parse_id(netns))


def parse_name(name: str) -> SpooledEvent:
    match = _NAME_RE.fullmatch(name)
    if match is None:
        raise InputError(f"spool entry {name[:80]} is not NETNS,IFACE,SEQ,up or down,PEER (one without NETNS "
                         "comes from a hook of the version before; the timer applies its routes)")
    netns, iface, seq, direction, peer = match.groups()
    return SpooledEvent(parse_device(iface), int(seq), direction, parse_peer(peer), name, parse_id(netns))


@dataclass(frozen=True)
class Pending:
    events: list[SpooledEvent]  # per link in the order pppd ran the hooks
    rejected: list[str]  # names that are not events, with why
    vpn: list[VpnEvent] = field(default_factory=list)  # in the order OpenVPN's hooks ran

    def by_namespace(self) -> list[Pending]:
        """The events of each namespace apart, each kept in its order; no rejected ones."""
        spaces = sorted({str(e.netns) for e in [*self.events, *self.vpn]})
        return [Pending([e for e in self.events if str(e.netns) == space], [],
                        [e for e in self.vpn if str(e.netns) == space]) for space in spaces]

    @property
    def netns(self) -> NetnsId | None:
        """The namespace of the first event (by_namespace's parts have one each)."""
        first = [*self.events, *self.vpn]
        return first[0].netns if first else None


class Spool:
    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.directory = os.path.join(run_dir, SPOOL)
        self.lock_path = os.path.join(run_dir, WORKER_LOCK)
        self.running_path = os.path.join(run_dir, WORKER_RUNNING)

    def pending(self) -> Pending:
        events, rejected, vpn = [], [], []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return Pending([], [])
        for name in names:
            if name.startswith("."):
                continue  # a temporary of somebody else's; events are never hidden
            try:
                if ",vpn-" in name:
                    vpn.append(parse_vpn_name(name))
                else:
                    self._check_writer(name)
                    events.append(parse_name(name))
            except InputError as exc:
                rejected.append(f"{exc}; removed")
                self.discard(name)
        events.sort(key=lambda e: (str(e.netns), e.iface, e.seq))
        vpn.sort(key=lambda e: e.seq)
        return Pending(events, rejected, vpn)

    def _check_writer(self, name: str) -> None:
        """pppd runs its hooks as root: a link event written by anybody else (the spool is
        writable by OpenVPN's group) is forged, however valid its name."""
        try:
            owner = os.lstat(os.path.join(self.directory, name)).st_uid
        except FileNotFoundError:
            raise InputError(f"spool entry {name[:80]} vanished") from None
        if owner != os.geteuid():
            raise InputError(f"spool entry {name[:80]} was written by uid {owner}, not by the pppd hook")

    def mark_running(self) -> None:
        """Names this process as the worker holding the lock. Only the holder calls it, and
        clears it before letting go of the lock: a hook that read it before then has its event
        seen by the worker's look at the spool after. Not written (a read-only run directory)
        costs hooks only their flock."""
        pid, start = _own_pid_and_start()
        temporary = f"{self.running_path}.{pid}"
        try:
            with open(temporary, "w") as handle:
                handle.write(f"{pid} {start}\n")
            os.replace(temporary, self.running_path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    def clear_running(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.running_path)

    def is_empty(self) -> bool:
        try:
            return not any(not name.startswith(".") for name in os.listdir(self.directory))
        except FileNotFoundError:
            return True

    def discard(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, name))

    def done(self, events: list) -> None:
        for event in events:
            self.discard(event.name)


def _own_pid_and_start() -> tuple[int, str]:
    """This process's PID and start time (clock ticks after boot) as /proc/self/stat gives
    them: the fields after the command name (which may hold spaces), the start time the 20th."""
    with open("/proc/self/stat") as handle:
        text = handle.read()
    return os.getpid(), text[text.rindex(")") + 2:].split()[19]
