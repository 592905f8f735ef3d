"""The same per-user routes for users connected over the panel's OpenVPN server.

OpenVPN (`topology subnet`, a pool on one tun) needs two things to deliver a user's LAN
traffic: an `iroute NET MASK` in the client's dynamic config (precomputed by root,
iroutes.py, and copied there by the unprivileged hook) and a kernel route `DST via VPN_ADDRESS dev TUN`
(installed here, by the root worker, from a spooled vpn-up event). Never dev-only: with
OpenVPN's kernel data channel the next hop selects the client.

The spool is writable by the hook's group, so an event is only a hint: the tun must be a
tun link (no pppd peer on it) whose own subnet holds the client's address, OpenVPN itself
(its management socket, `status 3`) must list a client with that address whose user
chap-secrets gives that peer, and an address already held by another session is refused.
A vpn-down is only taken once OpenVPN no longer lists a client with that address. The
session records (vpnsessions.py) say which user holds which address on which tun; OpenVPN's
client list comes from its management socket (vpnmanagement.py). One behaviour for a
session's routes, ops.syncing.sync_carrier, serves the worker's connect and every command.
"""

from __future__ import annotations

import ipaddress
import os
import syslog
from collections.abc import Sequence
from typing import Callable

from l2tproute.core.errors import describe
from l2tproute.core.kernel import Installed
from l2tproute.core.model import Change, IPv4Address, IPv6Address
from l2tproute.core.text import one_line
from l2tproute.ops.context import Context, stored_routes
from l2tproute.ops.syncing import sync_carrier, tagged_on_link
from l2tproute.system.chap import Users, chap_path
from l2tproute.system.iproute2 import is_gone_error
from l2tproute.system.spool import VPN_DOWN, VpnEvent
from l2tproute.transports.openvpn.carrier import OpenVpnTransport, carrier
from l2tproute.transports.openvpn.management import MANAGEMENT_SOCKET, Clients, ManagementError, client_wait
from l2tproute.transports.openvpn.sessions import PENDING, Session, SessionRecords, lists_user

#: An OpenVPN tun carries no point-to-point peer; `ip -json addr` says link_type none.
TUN_LINK_TYPE = "none"

Log = Callable[[int, str], None]


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


def handle(events: Sequence[VpnEvent], ctx: Context, log: Log, run_dir: str,
           wait: float | None = None) -> list[IPv4Address]:
    """Each event in the order OpenVPN's hooks ran, under the store lock. Returns the users whose
    session ended: their lines may go over their L2TP link now (the worker applies them)."""
    ended: list[IPv4Address] = []
    records = SessionRecords(run_dir, netns=ctx.runner.netns)
    clients = Clients(os.path.join(run_dir, MANAGEMENT_SOCKET), client_wait() if wait is None else wait)
    users = Users(chap_path())  # chap-secrets read once per pass, not once per event
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
                    peer = _disconnect(ctx, records, clients, event, say)
                    if peer is not None and peer not in ended:
                        ended.append(peer)
                else:
                    _connect(ctx, records, clients, event, say, links, users)
            except Exception as exc:  # one event must not stop the others
                say(syslog.LOG_ERR, describe(exc))
            for text in ctx.warnings:
                say(syslog.LOG_WARNING, one_line(text))
            ctx.warnings.clear()
    return ended


def _routes_via(ctx: Context, session: Session) -> list[Installed]:
    families = (4, 6) if session.address6 is not None else (4,)
    return [item for item in tagged_on_link(ctx.runner, session.tun, families)
            if (item.route.dev, item.route.gw) in session.next_hops]


def _disconnect(ctx: Context, records: SessionRecords, clients: Clients, event: VpnEvent,
                say: Log) -> IPv4Address | None:
    """The ended session's routes and record go; its user's peer address, or None when nothing ended."""
    pending = records.sibling(PENDING)
    if pending.get(event.tun, event.address) is not None:
        pending.remove(event.tun, event.address)  # never confirmed: nothing was installed
    session = records.get(event.tun, event.address)
    if session is None:
        say(syslog.LOG_INFO, "no session recorded for that client; nothing to remove")
        return None
    try:
        still = clients.holding(event.address, present=False)
    except ManagementError:
        still = []  # no server answers there: none of its clients is connected (it stopped)
    if still:
        say(syslog.LOG_ERR, "refused: OpenVPN still lists a client with that address")
        return None
    mine = _routes_via(ctx, session)
    failures = ctx.runner.batch([Change("del", item.route) for item in mine])
    left = [f for f in failures if not is_gone_error(f.message)]
    for failure in left:
        say(syslog.LOG_WARNING, f"{failure.change.route.dst} not removed: {failure.message}")
    records.remove(event.tun, event.address)
    say(syslog.LOG_INFO, f"session of peer {session.peer} ended: {len(mine) - len(left)} routes removed")
    return session.peer


def _connect(ctx: Context, records: SessionRecords, clients: Clients, event: VpnEvent, say: Log, links,
             users: Users) -> None:
    assert event.peer is not None
    problem = tun_problem(links(), event.tun, event.address, event.address6)
    if problem is None:
        try:
            problem = _client_problem(clients, event, users)
        except ManagementError as exc:
            records.sibling(PENDING).write(Session(event.tun, event.address, event.peer, event.address6))
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
    client, transport = carrier(session), OpenVpnTransport(ctx.runner, records.run_dir)
    result = sync_carrier(ctx.runner, client, stored_routes(ctx, event.peer),
                          lambda hop: transport.is_older_of(hop, client))
    for item in result.not_carried:
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


def _client_problem(clients: Clients, event: VpnEvent, users: Users) -> str | None:
    """None when OpenVPN lists a client with that address (and IPv6 address) whose user has that peer address."""
    mine = clients.holding(event.address, present=True)
    if not mine:
        return f"OpenVPN lists no client with the address {event.address}"
    if lists_user(mine, event.address, event.address6, event.peer, users):
        return None
    return (f"the OpenVPN client with the address {event.address} is not a user with the peer address {event.peer}"
            + (f" and the IPv6 address {event.address6}" if event.address6 is not None else ""))


