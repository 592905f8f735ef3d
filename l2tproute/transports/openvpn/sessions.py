"""OpenVPN sessions the root worker recorded: which user holds which client address on which tun.

RUN_DIR/openvpn/NETNS/TUN,ADDRESS holds the user's peer address (and the client's IPv6 address);
RUN_DIR/openvpn-pending/NETNS the clients the worker could not check with OpenVPN yet. Every
command reads them: apply leaves a live session's routes to it and gives each user's lines
to its newest session; the timer's apply drops the sessions OpenVPN no longer lists.

A session belongs to the network namespace its tun is in: NETNS is that namespace's
identity (netns.NetnsId, `DEV-INO`), so an apply for another namespace (`--netns X`, the
installer's demo, a test's) never reads or drops the records of the host's clients. The
records of the version before (RUN_DIR/openvpn/TUN,ADDRESS) were the host's: the installer, or
a reader that can tell it is in the host's namespace, moves them into the host's directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from l2tproute.core import constants as C
from l2tproute.core.model import (
    InputError,
    IPv4Address,
    IPv6Address,
    parse_device,
    parse_peer,
    parse_vpn_address6,
)
from l2tproute.system import netns as namespaces
from l2tproute.system.chap import SecretsError, Users, chap_path
from l2tproute.transports.openvpn.management import MANAGEMENT_SOCKET, ManagementError, VpnClient, read_clients

SESSIONS = C.OPENVPN_SESSIONS
#: Clients the kernel agrees with but OpenVPN could not be asked about (its management socket
#: serves one client at a time, and another program held it): the timer's apply asks again.
PENDING = C.OPENVPN_PENDING


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
    """RUN_DIR/openvpn/NETNS/TUN,ADDRESS holding `PEER\\n` and, with IPv6, `ADDRESS6\\n`; written by
    the root worker only. `netns` is the namespace's name as `--netns` gives it, None for this
    thread's own (where the worker runs an event)."""

    def __init__(self, run_dir: str, kind: str = SESSIONS, netns: str | None = None):
        self.run_dir = run_dir
        self.kind = kind
        self.netns = netns
        self.space = namespaces.of_netns(netns)
        self.directory = os.path.join(run_dir, kind, str(self.space))
        self._adopted = False

    def sibling(self, kind: str) -> SessionRecords:
        """The records of another kind (PENDING) of the same namespace."""
        return SessionRecords(self.run_dir, kind, self.netns)

    def _path(self, tun: str, address: IPv4Address) -> str:
        return os.path.join(self.directory, f"{tun},{address}")

    def _adopt_flat(self) -> None:
        """Records of the version before, flat in RUN_DIR/openvpn, were the host's: moved into
        the host's directory by a reader in the host's namespace (PID 1's: only an unsandboxed
        root can tell; the installer moves them too)."""
        self._adopted = True
        parent = os.path.dirname(self.directory)
        try:
            flat = [name for name in os.listdir(parent) if "," in name and not name.startswith(".")]
        except OSError:
            return
        if not flat or self.space != namespaces.host():
            return
        with contextlib.suppress(OSError):  # a read-only /run (a sandboxed reader): the installer moves them
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
            for name in flat:
                os.rename(os.path.join(parent, name), os.path.join(self.directory, name))

    def all(self) -> list[Session]:
        if not self._adopted:
            self._adopt_flat()
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
        if not self._adopted:
            self._adopt_flat()
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


def live_next_hops(run_dir: str, link_names: set[str], netns: str | None = None,
                   ) -> set[tuple[str, IPv4Address | IPv6Address]]:
    """(tun, client address) of every recorded session whose tun still exists: apply's
    reconcile leaves the routes via them alone."""
    return {hop for s in SessionRecords(run_dir, netns=netns).all() if s.tun in link_names for hop in s.next_hops}












@dataclass(frozen=True)
class SessionCheck:
    ended: list[Session]  # recorded, but OpenVPN no longer has them: forgotten
    confirmed: list[Session]  # pending, now listed by OpenVPN: recorded
    waiting: list[Session]  # pending, and OpenVPN still does not answer


def check_sessions(run_dir: str, link_names: set[str], netns: str | None = None) -> SessionCheck:
    """The timer's look at the sessions against OpenVPN's client list. A record whose tun is gone,
    or that OpenVPN answers without (no client of that user at that address: it ended without a
    client-disconnect, the server was killed), is dropped; its routes then are no live session's,
    so apply removes them. A pending client (the worker could not ask OpenVPN) is recorded once
    OpenVPN lists it, dropped once it does not. When OpenVPN does not answer, records on an
    existing tun are kept and pending ones wait: nobody can tell. One server per run dir."""
    records = SessionRecords(run_dir, netns=netns)
    pending = records.sibling(PENDING)
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


def lists_user(clients: Iterable[VpnClient], address: IPv4Address, address6: IPv6Address | None,
               peer: IPv4Address, users: Users) -> bool:
    """True when one of `clients` is at `address` (and at `address6`, when given) and is a user
    whose chap-secrets address is `peer`: the worker's check of a connecting client, and the
    timer's of a recorded one. SecretsError when chap-secrets cannot be read."""
    for client in clients:
        if client.address != address or (address6 is not None and client.address6 != address6):
            continue
        try:
            if users.peer(client.user) == peer:
                return True
        except InputError:
            continue
    return False


class _Listed:
    """Whether OpenVPN lists a session's client (its user with that peer, at its addresses); None
    when OpenVPN cannot be asked or the users cannot be looked up. Asked once, lazily."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, MANAGEMENT_SOCKET)
        self.clients: list[VpnClient] | None = None
        self.asked = False
        self.users = Users(chap_path())

    def has(self, session: Session) -> bool | None:
        if not self.asked:
            self.asked = True
            try:
                self.clients = read_clients(self.path)
                self.users.read()
            except (ManagementError, SecretsError):
                self.clients = None
        if self.clients is None:
            return None
        return lists_user(self.clients, session.address, session.address6, session.peer, self.users)
