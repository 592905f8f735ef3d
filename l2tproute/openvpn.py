"""The same per-user routes for users connected over the panel's OpenVPN server.

OpenVPN (`topology subnet`, a pool on one tun) needs two things to deliver a user's LAN
traffic: an `iroute NET MASK` in the client's dynamic config (written by the hook itself,
openvpnhook.py, as it runs unprivileged) and a kernel route `DST via VPN_ADDRESS dev TUN`
(installed here, by the root worker, from a spooled vpn-up event). Never dev-only: with
OpenVPN's kernel data channel the next hop selects the client.

The spool is writable by the hook's group, so an event is only a hint: the tun must be a
tun link (no pppd peer on it) whose own subnet holds the client's address, OpenVPN itself
(its management socket, `status 3`) must list a client with that address whose user
chap-secrets gives that peer, and an address already held by another session is refused.
A vpn-down is only taken once OpenVPN no longer lists a client with that address. A session record under
RUN_DIR/openvpn (`TUN,ADDRESS`, holding the peer) says which user holds which address on
which tun; apply leaves the routes of recorded sessions alone and removes those of ended
ones, as they carry our tag like every other route of ours.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import syslog
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Callable

from . import constants as C
from .chap import DEFAULT_CHAP_SECRETS, SecretsError, read_secrets, resolve_user
from .context import Context, addrs_of, kernel_route, read_tagged, slot_holder, stored_routes
from .errors import describe
from .iproute2 import IpError, is_gone_error, is_no_device_error, is_taken_slot_error
from .kernel import Installed, slot_of
from .model import (
    Change,
    InputError,
    IPv4Address,
    IPv6Address,
    KernelRoute,
    Route,
    parse_device,
    parse_peer,
    parse_vpn_address6,
)
from .spool import VPN_DOWN, VpnEvent
from .tables import table_names

SESSIONS = "openvpn"
#: Clients the kernel agrees with but OpenVPN could not be asked about (its management socket
#: serves one client at a time, and another program held it): the timer's apply asks again.
PENDING = "openvpn-pending"
#: OpenVPN's management socket (`management RUN_DIR/openvpn.sock unix` and
#: `management-client-user root` in the server config): the one source of who is connected.
MANAGEMENT_SOCKET = "openvpn.sock"
#: How long the worker waits for OpenVPN to list a connecting client (or drop a leaving one):
#: the deferred connect finishes only after its event is spooled.
CLIENT_WAIT = 10.0
CLIENT_WAIT_ENV = "L2TP_OPENVPN_CLIENT_WAIT"
MANAGEMENT_TIMEOUT = 5.0
MAX_MANAGEMENT_REPLY = 16 << 20
#: An OpenVPN tun carries no point-to-point peer; `ip -json addr` says link_type none.
TUN_LINK_TYPE = "none"

Log = Callable[[int, str], None]


@dataclass(frozen=True)
class Session:
    """One connected OpenVPN client: its VPN address(es) on a tun, and whose routes it carries."""

    tun: str
    address: IPv4Address
    peer: IPv4Address
    address6: IPv6Address | None = None  # with `server-ipv6`
    #: When the record was written: of two sessions of one user (duplicate-cn), the newer holds the routes.
    since: float = field(default=0.0, compare=False)

    @property
    def next_hops(self) -> set[tuple[str, IPv4Address | IPv6Address]]:
        hops: set[tuple[str, IPv4Address | IPv6Address]] = {(self.tun, self.address)}
        if self.address6 is not None:
            hops.add((self.tun, self.address6))
        return hops


class SessionRecords:
    """RUN_DIR/openvpn/TUN,ADDRESS holding `PEER\\n` and, with IPv6, `ADDRESS6\\n`; written by the
    root worker only."""

    def __init__(self, run_dir: str, kind: str = SESSIONS):
        self.run_dir = run_dir
        self.directory = os.path.join(run_dir, kind)

    def _path(self, tun: str, address: IPv4Address) -> str:
        return os.path.join(self.directory, f"{tun},{address}")

    def all(self) -> list[Session]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            session = self._read(name)
            if session is not None:
                found.append(session)
        return found

    def get(self, tun: str, address: IPv4Address) -> Session | None:
        return self._read(f"{tun},{address}")

    def _read(self, name: str) -> Session | None:
        tun, _, address = name.partition(",")
        try:
            with open(os.path.join(self.directory, name), encoding="ascii") as handle:
                since = os.fstat(handle.fileno()).st_mtime
                fields = handle.read(128).split("\n")
            if len(fields) not in (2, 3) or fields[-1] != "":
                return None
            address6 = parse_vpn_address6(fields[1]) if len(fields) == 3 else None
            return Session(parse_device(tun), parse_peer(address), parse_peer(fields[0]), address6, since)
        except (OSError, ValueError, InputError):
            return None  # a temporary or a broken record: no session

    def write(self, session: Session) -> None:
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        final = self._path(session.tun, session.address)
        temporary = os.path.join(self.directory, f".tmp-{os.getpid()}")
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{session.peer}\n" + (f"{session.address6}\n" if session.address6 is not None else ""))
        os.replace(temporary, final)

    def remove(self, tun: str, address: IPv4Address) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(tun, address))


def live_next_hops(run_dir: str, link_names: set[str]) -> set[tuple[str, IPv4Address | IPv6Address]]:
    """(tun, client address) of every recorded session whose tun still exists: apply's
    reconcile leaves the routes via them alone."""
    return {hop for s in SessionRecords(run_dir).all() if s.tun in link_names for hop in s.next_hops}


def live_sessions(run_dir: str, link_names: set[str]) -> list[Session]:
    """The session that carries each user's routes: the newest recorded one on a tun that exists."""
    newest: dict[IPv4Address, Session] = {}
    for session in SessionRecords(run_dir).all():
        if session.tun in link_names:
            known = newest.get(session.peer)
            if known is None or (session.since, str(session.address)) > (known.since, str(known.address)):
                newest[session.peer] = session
    return sorted(newest.values(), key=lambda s: (s.peer, s.tun))


def peer_session(ctx: Context, peer: IPv4Address) -> Session | None:
    """The session carrying this user's routes, read for this user only: its records, and only
    their tuns asked about (`ip addr show dev TUN`), never a dump of every link."""
    mine = sorted((s for s in SessionRecords(ctx.run_dir).all() if s.peer == peer),
                  key=lambda s: (s.since, str(s.address)), reverse=True)
    for session in mine:
        if addrs_of(ctx.runner, session.tun):
            return session
    return None


def vpn_kernel_route(route: Route, session: Session, names: dict[str, str] | None) -> KernelRoute | None:
    """A stored line as the kernel gets it for an OpenVPN session: via the client's VPN address,
    keeping metric and table; None for a line with its own `dev`, or IPv6 without a client IPv6 address."""
    if route.dev is not None:
        return None
    via = session.address if route.family == 4 else session.address6
    if via is None:
        return None
    return replace(kernel_route(route, session.tun, names), gw=via)


def not_routed_why(route: Route) -> str:
    """Why vpn_kernel_route gave nothing for this line."""
    return f"has its own dev {route.dev}" if route.dev is not None else "is IPv6 and the tunnel has no IPv6"


def is_live_vpn_route(route: KernelRoute, live: set[tuple[str, IPv4Address]]) -> bool:
    return route.gw is not None and (route.dev, route.gw) in live


@dataclass(frozen=True)
class VpnClient:
    """A client as OpenVPN's `status 3` lists it."""

    user: str
    address: IPv4Address | None
    address6: IPv6Address | None = None


class ManagementError(RuntimeError):
    """OpenVPN's management socket cannot be asked."""


def read_clients(path: str, timeout: float = MANAGEMENT_TIMEOUT) -> list[VpnClient]:
    """The clients OpenVPN has now, from its management socket."""
    data = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"status 3\n")
            while b"\nEND" not in data:
                chunk = sock.recv(65536)
                if not chunk or len(data) > MAX_MANAGEMENT_REPLY:
                    break
                data += chunk
            with contextlib.suppress(OSError):
                sock.sendall(b"quit\n")
    except OSError as exc:
        raise ManagementError(f"cannot ask OpenVPN at {path}: {exc.strerror or exc}; the server config needs "
                              f"management {path} unix") from None
    if b"\nEND" not in data:
        raise ManagementError(f"OpenVPN at {path} gave no complete status")
    return parse_status(data.decode("utf-8", "replace"))


def parse_status(text: str) -> list[VpnClient]:
    """CLIENT_LIST rows of `status 3` (tab separated): common name, real address, virtual
    address, virtual IPv6 address, bytes in, bytes out, since, since (time_t), username, ..."""
    found = []
    for line in text.splitlines():
        fields = line.rstrip("\r").split("\t")
        if fields[0] != "CLIENT_LIST" or len(fields) < 10:
            continue
        user = fields[9] if fields[9] and fields[9] != "UNDEF" else fields[1]
        try:
            address: IPv4Address | None = ipaddress.IPv4Address(fields[3])
        except ValueError:
            address = None  # not yet given one
        try:
            address6: IPv6Address | None = ipaddress.IPv6Address(fields[4])
        except ValueError:
            address6 = None  # no server-ipv6
        found.append(VpnClient(user, address, address6))
    return found


class Clients:
    """OpenVPN's clients, read again (until a deadline) while an event is not yet visible there.

    OpenVPN serves one management client at a time: while another program holds the socket, a
    read waits or is refused, so it is tried again until the deadline, then ManagementError."""

    def __init__(self, path: str, wait: float = CLIENT_WAIT):
        self.path = path
        self.deadline = time.monotonic() + wait
        self.known: list[VpnClient] | None = None

    def _read(self) -> list[VpnClient]:
        while True:
            left = self.deadline - time.monotonic()
            try:
                self.known = read_clients(self.path, timeout=min(MANAGEMENT_TIMEOUT, max(left, 1.0)))
                return self.known
            except ManagementError:
                if time.monotonic() >= self.deadline:
                    raise
                time.sleep(0.2)

    def holding(self, address: IPv4Address, present: bool) -> list[VpnClient]:
        """The clients with `address`, once that is non-empty (present) or empty (not present), or at
        the deadline; never decided on a list read before this call began (a storm's pass is long)."""
        clients, fresh = (self.known, False) if self.known is not None else (self._read(), True)
        while True:
            mine = [c for c in clients if c.address == address]
            if bool(mine) == present or (fresh and time.monotonic() >= self.deadline):
                return mine
            if fresh:
                time.sleep(0.2)
            clients, fresh = self._read(), True


def iroute_lines(routes: Sequence[Route], ipv6: bool = False) -> list[str]:
    """OpenVPN's iroutes, as network and dotted mask: `iroute 192.168.20.0/24` is taken as a /32;
    with `ipv6` (the client has an IPv6 pool address) also `iroute-ipv6 NET/LEN`, which takes a prefix."""
    return [f"iroute {r.dst.network_address} {r.dst.netmask}" if r.family == 4 else f"iroute-ipv6 {r.dst}"
            for r in routes if r.dev is None and (r.family == 4 or ipv6)]


def tun_problem(link_rows: list, tun: str, address: IPv4Address, address6: IPv6Address | None = None) -> str | None:
    """Why `address` (and `address6`) on `tun` is not an OpenVPN client's by the kernel's state; None if it can be."""
    for row in link_rows:
        if row.get("ifname") != tun:
            continue
        if row.get("link_type") != TUN_LINK_TYPE:
            return f"{tun} is a {row.get('link_type', 'unknown')} link, not a tun"
        infos = row.get("addr_info", [])
        for info in infos:
            if info.get("family") == "inet" and info.get("address") and info.get("address") != info.get("local"):
                return f"{tun} is a point-to-point session link, not the OpenVPN server tun"
        if not _in_subnet(infos, "inet", address):
            return f"{address} is not a client address in the subnet of {tun}"
        if address6 is not None and not _in_subnet(infos, "inet6", address6):
            return f"{address6} is not a client address in the IPv6 subnet of {tun}"
        return None
    return f"{tun} does not exist"


def _in_subnet(infos: list, family: str, address: IPv4Address | IPv6Address) -> bool:
    for info in infos:
        if info.get("family") != family:
            continue
        try:
            net = ipaddress.ip_network(f"{info.get('local')}/{info.get('prefixlen')}", strict=False)
            local = ipaddress.ip_address(str(info.get("local")))
        except ValueError:
            continue
        if net.prefixlen < net.max_prefixlen - 1 and address in net \
                and address not in (local, net.network_address, net.broadcast_address):
            return True
    return False


@dataclass(frozen=True)
class VpnRoute:
    """One stored line of an OpenVPN session's user, as the kernel got it (or did not)."""

    route: Route
    kernel: KernelRoute
    detail: str = ""  # held: what holds the destination; failed: why


@dataclass(frozen=True)
class VpnRemoval:
    """A route of ours via the client that no line wants, and why it could not be removed."""

    route: KernelRoute
    detail: str


@dataclass(frozen=True)
class NotRouted:
    """A line that does not go over OpenVPN, and why."""

    route: Route
    why: str


@dataclass
class SessionSync:
    """What one session's routes became: the stored lines against our routes via its client."""

    session: Session
    installed: list[VpnRoute] = field(default_factory=list)
    #: Taken over from an older session of the same user (OpenVPN gives the iroute to the newest).
    moved: list[VpnRoute] = field(default_factory=list)
    unchanged: list[VpnRoute] = field(default_factory=list)
    removed: list[KernelRoute] = field(default_factory=list)
    #: The slot is held by another route (L2TP first, another user, a foreign route): first come wins.
    held: list[VpnRoute] = field(default_factory=list)
    failed: list[VpnRoute] = field(default_factory=list)
    removal_failed: list[VpnRemoval] = field(default_factory=list)
    not_routed: list[NotRouted] = field(default_factory=list)  # own dev, or IPv6 without IPv6


def sync_session(ctx: Context, session: Session, routes: Sequence[Route], records: SessionRecords,
                 on_tun: list[Installed] | None = None) -> SessionSync:
    """Make our routes via this session's client exactly its user's stored lines: install what is
    missing (`add`: a slot held by anybody else stays theirs), take over the same user's older
    session's, remove ours via this client that no line wants. One read of our routes on the tun
    (or `on_tun`, read once for many sessions), one batch; the caller holds the store lock."""
    result = SessionSync(session)
    names = table_names() if any(r.table for r in routes) else None
    wanted: dict = {}
    for route in routes:
        try:
            kernel = vpn_kernel_route(route, session, names)
        except InputError as exc:  # a table name no longer defined: this line only
            result.failed.append(VpnRoute(route, kernel_route(replace(route, table=None), session.tun), str(exc)))
            continue
        if kernel is None:
            result.not_routed.append(NotRouted(route, not_routed_why(route)))
        else:
            wanted.setdefault(slot_of(kernel), VpnRoute(route, kernel))
    if on_tun is None:
        families = sorted({slot[0].version for slot in wanted} | ({4, 6} if session.address6 else {4}))
        on_tun = _tagged_on(ctx, session.tun, families)
    by_slot: dict = {}
    for item in on_tun:
        by_slot.setdefault(item.slot, []).append(item)
    hops = session.next_hops
    changes: list[Change] = []
    planned: dict[Change, tuple[list[VpnRoute], VpnRoute]] = {}
    for slot, want in wanted.items():
        holders = by_slot.get(slot, [])
        if any((h.route.dev, h.route.gw) == (want.kernel.dev, want.kernel.gw) for h in holders):
            result.unchanged.append(want)
            continue
        older = any(_of_user(records, h.route, session.peer) for h in holders)
        change = Change("replace" if older else "add", want.kernel)
        changes.append(change)
        planned[change] = (result.moved if older else result.installed, want)
    removals = [Change("del", item.route) for item in on_tun
                if (item.route.dev, item.route.gw) in hops and item.slot not in wanted]
    failures = {f.change: f.message for f in ctx.runner.batch(changes + removals)}
    for change in changes:
        done, want = planned[change]
        message = failures.get(change)
        if message is None:
            done.append(want)
        elif change.verb == "add" and is_taken_slot_error(message):
            result.held.append(replace(want, detail=slot_holder(ctx.runner, want.kernel).text))
        else:
            result.failed.append(replace(want, detail=message))
    for change in removals:
        message = failures.get(change)
        if message is None:
            result.removed.append(change.route)
        elif not is_gone_error(message):
            result.removal_failed.append(VpnRemoval(change.route, message))
    return result


def _of_user(records: SessionRecords, route: KernelRoute, peer: IPv4Address) -> bool:
    """True when `route` goes via another recorded session of the same user."""
    if route.gw is None:
        return False
    return any(s.peer == peer and (route.dev, route.gw) in s.next_hops for s in records.all())


def handle(events: Sequence[VpnEvent], ctx: Context, log: Log, run_dir: str, wait: float | None = None) -> None:
    """Each event in the order OpenVPN's hooks ran, under the store lock."""
    records = SessionRecords(run_dir)
    clients = Clients(os.path.join(run_dir, MANAGEMENT_SOCKET), client_wait() if wait is None else wait)
    known: list = []

    def links() -> list:
        # Once per pass: a storm's events all ask about the same tun (a third of each event's `ip` runs).
        if not known:
            known.append(ctx.runner.read_links())
        return known[0]

    with ctx.store.locked(ctx.lock_timeout):
        for event in events:
            def say(priority: int, message: str, event: VpnEvent = event) -> None:
                log(priority, f"{event}: {message}")

            try:
                if event.direction == VPN_DOWN:
                    _disconnect(ctx, records, clients, event, say)
                else:
                    _connect(ctx, records, clients, event, say, links)
            except Exception as exc:  # one event must not stop the others
                say(syslog.LOG_ERR, describe(exc))
            for text in ctx.warnings:
                say(syslog.LOG_WARNING, " ".join(str(text).split()))
            ctx.warnings.clear()


def tagged_on_tun(ctx: Context, tun: str, families=(4, 6)) -> list[Installed]:
    """Our routes on a tun; none when it is gone."""
    return _tagged_on(ctx, tun, families)


def _tagged_on(ctx: Context, tun: str, families) -> list[Installed]:
    try:
        return read_tagged(ctx.runner, families=families, dev=tun)
    except IpError as exc:
        if is_no_device_error(str(exc)):
            return []  # the tun is gone (the server stopped): the kernel took its routes with it
        raise


def _routes_via(ctx: Context, session: Session) -> list[Installed]:
    families = (4, 6) if session.address6 is not None else (4,)
    return [item for item in _tagged_on(ctx, session.tun, families)
            if (item.route.dev, item.route.gw) in session.next_hops]


def _disconnect(ctx: Context, records: SessionRecords, clients: Clients, event: VpnEvent, say: Log) -> None:
    pending = SessionRecords(records.run_dir, PENDING)
    if pending.get(event.tun, event.address) is not None:
        pending.remove(event.tun, event.address)  # never confirmed: nothing was installed
    session = records.get(event.tun, event.address)
    if session is None:
        say(syslog.LOG_INFO, "no session recorded for that client; nothing to remove")
        return
    try:
        still = clients.holding(event.address, present=False)
    except ManagementError:
        still = []  # no server answers there: none of its clients is connected (it stopped)
    if still:
        say(syslog.LOG_ERR, "refused: OpenVPN still lists a client with that address")
        return
    mine = _routes_via(ctx, session)
    failures = ctx.runner.batch([Change("del", item.route) for item in mine])
    left = [f for f in failures if not is_gone_error(f.message)]
    for failure in left:
        say(syslog.LOG_WARNING, f"{failure.change.route.dst} not removed: {failure.message}")
    records.remove(event.tun, event.address)
    say(syslog.LOG_INFO, f"session of peer {session.peer} ended: {len(mine) - len(left)} routes removed")


def _connect(ctx: Context, records: SessionRecords, clients: Clients, event: VpnEvent, say: Log, links) -> None:
    assert event.peer is not None
    problem = tun_problem(links(), event.tun, event.address, event.address6)
    if problem is None:
        try:
            problem = _client_problem(clients, event)
        except ManagementError as exc:
            SessionRecords(records.run_dir, PENDING).write(Session(event.tun, event.address, event.peer,
                                                                   event.address6))
            say(syslog.LOG_WARNING, f"{exc}; the next apply asks OpenVPN again and installs the routes then")
            return
    if problem is not None:
        say(syslog.LOG_ERR, f"refused: {problem}")
        return
    held = records.get(event.tun, event.address)
    if held is not None and held.peer != event.peer:
        # OpenVPN gives an address to one client at a time and lists this user there now: that
        # session ended without its client-disconnect (the server was killed and restarted). The
        # sync below removes its routes via this address, as no line of this user wants them.
        say(syslog.LOG_WARNING, f"the session of peer {held.peer} at this address ended without a "
                                "client-disconnect; its routes here are removed")
    session = Session(event.tun, event.address, event.peer, event.address6)
    records.write(session)
    result = sync_session(ctx, session, stored_routes(ctx, event.peer), records)
    for item in result.not_routed:
        say(syslog.LOG_INFO, f"{item.route.dst} {item.why}; skipped over OpenVPN")
    for want in result.moved:
        say(syslog.LOG_INFO, f"{want.route.dst} taken over from the same user's older session")
    for want in result.held:
        say(syslog.LOG_WARNING, f"{want.route.dst} is held by {want.detail}; left to it, first come wins")
    if result.failed:
        done = [w.kernel for w in result.installed + result.moved]
        ctx.runner.batch([Change("del", route) for route in done])
        records.remove(event.tun, event.address)
        reasons = "; ".join(f"{w.route.dst}: {w.detail}" for w in result.failed)
        say(syslog.LOG_ERR, f"not connected, what was installed is undone: {reasons}")
        return
    via = f"{event.address}" + (f" and {event.address6}" if event.address6 is not None else "")
    count = len(result.installed) + len(result.moved) + len(result.unchanged)
    say(syslog.LOG_INFO, f"peer {event.peer}: {count} routes installed via {via} dev {event.tun}")


def _client_problem(clients: Clients, event: VpnEvent) -> str | None:
    """None when OpenVPN lists a client with that address (and IPv6 address) whose user has that peer address."""
    mine = clients.holding(event.address, present=True)
    if not mine:
        return f"OpenVPN lists no client with the address {event.address}"
    for client in mine:
        if event.address6 is not None and client.address6 != event.address6:
            continue
        try:
            if resolve_user(client.user, chap_path()) == event.peer:
                return None
        except InputError:
            continue
    return (f"the OpenVPN client with the address {event.address} is not a user with the peer address {event.peer}"
            + (f" and the IPv6 address {event.address6}" if event.address6 is not None else ""))


@dataclass(frozen=True)
class SessionCheck:
    ended: list[Session]  # recorded, but OpenVPN no longer has them: forgotten
    confirmed: list[Session]  # pending, now listed by OpenVPN: recorded
    waiting: list[Session]  # pending, and OpenVPN still does not answer


def check_sessions(run_dir: str, link_names: set[str]) -> SessionCheck:
    """The timer's look at the sessions against OpenVPN's client list. A record whose tun is gone,
    or that OpenVPN answers without (no client of that user at that address: it ended without a
    client-disconnect, the server was killed), is dropped; its routes then are no live session's,
    so apply removes them. A pending client (the worker could not ask OpenVPN) is recorded once
    OpenVPN lists it, dropped once it does not. When OpenVPN does not answer, records on an
    existing tun are kept and pending ones wait: nobody can tell. One server per run dir."""
    records, pending = SessionRecords(run_dir), SessionRecords(run_dir, PENDING)
    recorded, waiting = records.all(), pending.all()
    result = SessionCheck([], [], [])
    if not recorded and not waiting:
        return result
    listed = _Listed(run_dir)
    for session in recorded:
        if session.tun in link_names and listed.has(session) is not False:
            continue
        records.remove(session.tun, session.address)
        result.ended.append(session)
    for session in waiting:
        there = listed.has(session) if session.tun in link_names else False
        if there is None:
            result.waiting.append(session)
            continue
        if there:
            records.write(session)
            result.confirmed.append(session)
        pending.remove(session.tun, session.address)
    return result


class _Listed:
    """Whether OpenVPN lists a session's client (its user with that peer, at its addresses); None
    when OpenVPN cannot be asked or the users cannot be looked up. Asked once, lazily."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, MANAGEMENT_SOCKET)
        self.clients: list[VpnClient] | None = None
        self.asked = False
        self.secrets: bytes | None = None
        self.peers: dict[str, IPv4Address | None] = {}

    def has(self, session: Session) -> bool | None:
        if not self.asked:
            self.asked = True
            try:
                self.clients = read_clients(self.path)
                self.secrets = read_secrets(chap_path())
            except (ManagementError, SecretsError):
                self.clients = None
        if self.clients is None:
            return None
        for client in self.clients:
            if client.address != session.address:
                continue
            if session.address6 is not None and client.address6 != session.address6:
                continue
            if client.user not in self.peers:
                try:
                    self.peers[client.user] = resolve_user(client.user, chap_path(), self.secrets)
                except InputError:
                    self.peers[client.user] = None
            if self.peers[client.user] == session.peer:
                return True
        return False


def client_wait(environ=os.environ) -> float:
    """CLIENT_WAIT; L2TP_OPENVPN_CLIENT_WAIT shortens it for tests, never under sudo."""
    text = environ.get(CLIENT_WAIT_ENV, "")
    if "SUDO_UID" in environ or "SUDO_USER" in environ or not text.replace(".", "", 1).isdigit():
        return CLIENT_WAIT
    return min(float(text), CLIENT_WAIT)


def chap_path(environ=os.environ) -> str:
    """chap-secrets; L2TP_CHAP_SECRETS moves it for tests, never under sudo."""
    if "SUDO_UID" in environ or "SUDO_USER" in environ:
        return DEFAULT_CHAP_SECRETS
    return environ.get(C.CHAP_SECRETS_ENV) or DEFAULT_CHAP_SECRETS
