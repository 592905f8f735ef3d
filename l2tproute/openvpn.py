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
from dataclasses import dataclass, replace
from typing import Callable

from . import constants as C
from .chap import DEFAULT_CHAP_SECRETS, resolve_user
from .context import Context, kernel_route, read_tagged, stored_routes
from .errors import describe
from .iproute2 import is_gone_error, is_taken_slot_error
from .kernel import Installed, slot_of
from .model import Change, InputError, IPv4Address, KernelRoute, Route, parse_device, parse_peer
from .spool import VPN_DOWN, VpnEvent
from .tables import table_names

SESSIONS = "openvpn"
#: OpenVPN's management socket (`management RUN_DIR/openvpn.sock unix` and
#: `management-client-user root` in the server config): the one source of who is connected.
MANAGEMENT_SOCKET = "openvpn.sock"
#: How long the worker waits for OpenVPN to list a connecting client (or drop a leaving one):
#: the deferred connect finishes only after its event is spooled.
CLIENT_WAIT = 10.0
MANAGEMENT_TIMEOUT = 5.0
MAX_MANAGEMENT_REPLY = 16 << 20
#: An OpenVPN tun carries no point-to-point peer; `ip -json addr` says link_type none.
TUN_LINK_TYPE = "none"

Log = Callable[[int, str], None]


@dataclass(frozen=True)
class Session:
    """One connected OpenVPN client: its VPN address on a tun, and whose routes it carries."""

    tun: str
    address: IPv4Address
    peer: IPv4Address


class SessionRecords:
    """RUN_DIR/openvpn/TUN,ADDRESS holding `PEER\\n`; written by the root worker only."""

    def __init__(self, run_dir: str):
        self.directory = os.path.join(run_dir, SESSIONS)

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
                peer = handle.read(64).strip()
            return Session(parse_device(tun), parse_peer(address), parse_peer(peer))
        except (OSError, ValueError, InputError):
            return None  # a temporary or a broken record: no session

    def write(self, session: Session) -> None:
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        final = self._path(session.tun, session.address)
        temporary = os.path.join(self.directory, f".tmp-{os.getpid()}")
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{session.peer}\n")
        os.replace(temporary, final)

    def remove(self, tun: str, address: IPv4Address) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(tun, address))


def live_next_hops(run_dir: str, link_names: set[str]) -> set[tuple[str, IPv4Address]]:
    """(tun, client address) of every recorded session whose tun still exists: apply's
    reconcile leaves the routes via them alone."""
    return {(s.tun, s.address) for s in SessionRecords(run_dir).all() if s.tun in link_names}


def is_live_vpn_route(route: KernelRoute, live: set[tuple[str, IPv4Address]]) -> bool:
    return route.gw is not None and (route.dev, route.gw) in live


@dataclass(frozen=True)
class VpnClient:
    """A client as OpenVPN's `status 3` lists it."""

    user: str
    address: IPv4Address | None


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
        found.append(VpnClient(user, address))
    return found


class Clients:
    """OpenVPN's clients, read again (until a deadline) while an event is not yet visible there."""

    def __init__(self, path: str, wait: float = CLIENT_WAIT):
        self.path = path
        self.deadline = time.monotonic() + wait
        self.known: list[VpnClient] | None = None

    def _read(self) -> list[VpnClient]:
        self.known = read_clients(self.path)
        return self.known

    def holding(self, address: IPv4Address, present: bool) -> list[VpnClient]:
        """The clients with `address`, once that is non-empty (present) or empty (not present), or at the deadline."""
        clients = self.known if self.known is not None else self._read()
        while True:
            mine = [c for c in clients if c.address == address]
            if bool(mine) == present or time.monotonic() >= self.deadline:
                return mine
            time.sleep(0.2)
            clients = self._read()


def iroute_lines(routes: Sequence[Route], ipv6: bool = False) -> list[str]:
    """OpenVPN's iroutes, as network and dotted mask: `iroute 192.168.20.0/24` is taken as a /32;
    with `ipv6` (the client has an IPv6 pool address) also `iroute-ipv6 NET/LEN`, which takes a prefix."""
    return [f"iroute {r.dst.network_address} {r.dst.netmask}" if r.family == 4 else f"iroute-ipv6 {r.dst}"
            for r in routes if r.dev is None and (r.family == 4 or ipv6)]


def tun_problem(link_rows: list, tun: str, address: IPv4Address) -> str | None:
    """Why `address` on `tun` is not an OpenVPN client's address by the kernel's state; None if it can be."""
    for row in link_rows:
        if row.get("ifname") != tun:
            continue
        if row.get("link_type") != TUN_LINK_TYPE:
            return f"{tun} is a {row.get('link_type', 'unknown')} link, not a tun"
        for info in row.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            if info.get("address") and info.get("address") != info.get("local"):
                return f"{tun} is a point-to-point session link, not the OpenVPN server tun"
            try:
                net = ipaddress.ip_network(f"{info.get('local')}/{info.get('prefixlen')}", strict=False)
                local = ipaddress.IPv4Address(info.get("local"))
            except ValueError:
                continue
            if address in net and address not in (local, net.network_address, net.broadcast_address):
                return None
        return f"{address} is not a client address in the subnet of {tun}"
    return f"{tun} does not exist"


def handle(events: Sequence[VpnEvent], ctx: Context, log: Log, run_dir: str) -> None:
    """Each event in the order OpenVPN's hooks ran, under the store lock."""
    records = SessionRecords(run_dir)
    clients = Clients(os.path.join(run_dir, MANAGEMENT_SOCKET))
    with ctx.store.locked(ctx.lock_timeout):
        for event in events:
            def say(priority: int, message: str, event: VpnEvent = event) -> None:
                log(priority, f"{event}: {message}")

            try:
                if event.direction == VPN_DOWN:
                    _disconnect(ctx, records, clients, event, say)
                else:
                    _connect(ctx, records, clients, event, say)
            except Exception as exc:  # one event must not stop the others
                say(syslog.LOG_ERR, describe(exc))
            for text in ctx.warnings:
                say(syslog.LOG_WARNING, " ".join(str(text).split()))
            ctx.warnings.clear()


def _routes_via(ctx: Context, tun: str, address: IPv4Address) -> list[Installed]:
    # Not `ip route show dev TUN`: ip leaves the device out of what it prints then.
    return [item for item in read_tagged(ctx.runner, families=(4,))
            if (item.route.dev, item.route.gw) == (tun, address)]


def _disconnect(ctx: Context, records: SessionRecords, clients: Clients, event: VpnEvent, say: Log) -> None:
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
    mine = _routes_via(ctx, event.tun, event.address)
    failures = ctx.runner.batch([Change("del", item.route) for item in mine])
    left = [f for f in failures if not is_gone_error(f.message)]
    for failure in left:
        say(syslog.LOG_WARNING, f"{failure.change.route.dst} not removed: {failure.message}")
    records.remove(event.tun, event.address)
    say(syslog.LOG_INFO, f"session of peer {session.peer} ended: {len(mine) - len(left)} routes removed")


def _connect(ctx: Context, records: SessionRecords, clients: Clients, event: VpnEvent, say: Log) -> None:
    assert event.peer is not None
    problem = tun_problem(ctx.runner.read_links(), event.tun, event.address) or _client_problem(clients, event)
    if problem is not None:
        say(syslog.LOG_ERR, f"refused: {problem}")
        return
    held = records.get(event.tun, event.address)
    if held is not None and held.peer != event.peer:
        say(syslog.LOG_ERR, f"refused: {event.address} on {event.tun} is held by the session of peer {held.peer}, "
                            "whose client-disconnect has not come")
        return
    routes = stored_routes(ctx, event.peer)
    wanted: list[Route] = []
    for route in routes:
        if route.dev is not None or route.family != 4:
            why = f"has its own dev {route.dev}" if route.dev is not None else "is IPv6"
            say(syslog.LOG_INFO, f"{route.dst} {why}; skipped over OpenVPN")
        else:
            wanted.append(route)
    records.write(Session(event.tun, event.address, event.peer))
    if not wanted:
        say(syslog.LOG_INFO, f"no IPv4 routes stored for peer {event.peer}; nothing to install")
        return
    names = table_names() if any(r.table for r in wanted) else None
    ours = {item.slot: item for item in read_tagged(ctx.runner, families=(4,))}
    changes: list[Change] = []
    for route in wanted:
        kernel = kernel_route(replace(route, gw=event.address), event.tun, names)
        current = ours.get(slot_of(kernel))
        if current is None:
            changes.append(Change("add", kernel))
        elif (current.route.dev, current.route.gw) == (kernel.dev, kernel.gw):
            continue
        elif _older_session_of(records, current.route, event):
            # OpenVPN gives the iroute to the newest session of a user (measured with 2.6.14 and
            # duplicate-cn): the kernel route follows it, or the two would disagree.
            changes.append(Change("replace", kernel))
            say(syslog.LOG_INFO, f"{route.dst} taken over from the same user's older session at {current.route.gw}")
        else:
            # First come wins: another user's or an L2TP session of ours holds the slot.
            say(syslog.LOG_WARNING, f"{route.dst} is held by our route via {current.route.gw} dev "
                                    f"{current.route.dev}; left to that session")
    failures = {f.change: f.message for f in ctx.runner.batch(changes)}
    blocked = [c for c, m in failures.items() if is_taken_slot_error(m)]
    failed = [c for c, m in failures.items() if not is_taken_slot_error(m)]
    for change in blocked:
        say(syslog.LOG_WARNING, f"{change.route.dst} is already routed by a route l2tp-routectl did not install; "
                                "left alone")
    if failed:
        done = [c for c in changes if c not in failures]
        ctx.runner.batch([Change("del", c.route) for c in done])
        records.remove(event.tun, event.address)
        reasons = "; ".join(f"{c.route.dst}: {failures[c]}" for c in failed)
        say(syslog.LOG_ERR, f"not connected, what was installed is undone: {reasons}")
        return
    installed = len(changes) - len(blocked)
    say(syslog.LOG_INFO, f"peer {event.peer}: {installed} routes installed via {event.address} dev {event.tun}")


def _older_session_of(records: SessionRecords, route: KernelRoute, event: VpnEvent) -> bool:
    if route.dev != event.tun or route.gw is None:
        return False
    held = records.get(route.dev, route.gw)
    return held is not None and held.peer == event.peer


def _client_problem(clients: Clients, event: VpnEvent) -> str | None:
    """None when OpenVPN lists a client with that address whose user has that peer address."""
    mine = clients.holding(event.address, present=True)
    if not mine:
        return f"OpenVPN lists no client with the address {event.address}"
    for client in mine:
        try:
            if resolve_user(client.user, chap_path()) == event.peer:
                return None
        except InputError:
            continue
    return f"the OpenVPN client with the address {event.address} is not a user with the peer address {event.peer}"


def chap_path(environ=os.environ) -> str:
    """chap-secrets; L2TP_CHAP_SECRETS moves it for tests, never under sudo."""
    if "SUDO_UID" in environ or "SUDO_USER" in environ:
        return DEFAULT_CHAP_SECRETS
    return environ.get(C.CHAP_SECRETS_ENV) or DEFAULT_CHAP_SECRETS
