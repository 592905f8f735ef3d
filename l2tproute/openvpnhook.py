"""OpenVPN's client-connect, the unprivileged half: user -> peer -> iroutes, then a vpn-up event.

Runs as the server's `user nobody`, `group www-data`, started by bin/l2tp-routes-openvpn
(in the background when OpenVPN offers the deferred form, so the server never waits for
Python). The user name (`username`, else `common_name`) is looked up in chap-secrets as
`--user` is; that address's route file gives the iroutes, written into the client's dynamic
config ($1) as network and dotted mask; the kernel routes are the root worker's, from the
spooled `TUN,SEQ,vpn-up,ADDRESS,PEER`. Lines with their own `dev`, IPv6 lines and users
without a fixed address or a route file are logged and skipped: the client still connects.
"""

from __future__ import annotations

import os
import sys
import syslog
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .chap import resolve_user
from .errors import describe
from .hook import Log, quiet_log
from .model import InputError, IPv4Address, parse_device, parse_peer
from .openvpn import chap_path, iroute_lines
from .routefile import routes as routes_of
from .spool import SPOOL, VPN_UP, run_dir_from_environment
from .store import Store, store_dir_from_environment


@dataclass(frozen=True)
class Client:
    """What OpenVPN tells client-connect, parsed."""

    user: str
    tun: str
    address: IPv4Address


def parse_client(environ: Mapping[str, str]) -> Client:
    user = environ.get("username") or environ.get("common_name") or ""
    if not user:
        raise InputError("no user name: expected username or common_name from OpenVPN")
    try:
        tun = parse_device(environ.get("dev", ""))
        address = parse_peer(environ.get("ifconfig_pool_remote_ip", ""))
    except InputError as exc:
        raise InputError(f"{exc} (from dev and ifconfig_pool_remote_ip; the server needs a pool: server or "
                         "ifconfig-pool)") from None
    return Client(user, tun, address)


def connect(config_path: str, environ: Mapping[str, str], log: Log) -> None:
    """Write the user's iroutes into `config_path` and spool the kernel routes for the worker.
    A user without an address or routes gets nothing and connects; anything else raises."""
    client = parse_client(environ)
    say = _sayer(client, log)
    try:
        peer = resolve_user(client.user, chap_path(environ))
    except InputError as exc:
        say(syslog.LOG_INFO, f"no routes: {exc}")
        return
    store = Store(store_dir_from_environment(environ))
    lines = store.read(peer) or []
    routes = routes_of(lines)
    if not routes:
        say(syslog.LOG_INFO, f"no routes stored for peer {peer}")
        return
    for route in routes:
        if route.dev is not None or route.family != 4:
            why = f"has its own dev {route.dev}" if route.dev is not None else "is IPv6"
            say(syslog.LOG_INFO, f"{route.dst} {why}; skipped over OpenVPN")
    iroutes = iroute_lines(routes)
    if not iroutes:
        say(syslog.LOG_INFO, f"peer {peer}: no plain IPv4 routes; nothing to route over OpenVPN")
        return
    with open(config_path, "a", encoding="ascii") as handle:
        start = handle.tell()
        handle.write("".join(line + "\n" for line in iroutes))
    try:
        spool_connect(run_dir_from_environment(environ), client, peer)
    except BaseException:
        # Without the kernel routes the iroutes would only black-hole the user's LAN: undone.
        with open(config_path, "r+", encoding="ascii") as handle:
            handle.truncate(start)
        raise
    say(syslog.LOG_INFO, f"peer {peer}: {len(iroutes)} iroutes written, kernel routes handed to the worker")


def spool_connect(run_dir: str, client: Client, peer: IPv4Address) -> None:
    name = f"{client.tun},{time.time_ns()},{VPN_UP},{client.address},{peer}"
    fd = os.open(os.path.join(run_dir, SPOOL, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.close(fd)


def _sayer(client: Client, log: Log):
    prefix = f"openvpn client-connect {client.tun} client {client.address}: "
    return lambda priority, message: log(priority, prefix + " ".join(str(message).split()))


def _finish(deferred: str, ok: bool) -> None:
    if deferred:
        try:
            with open(deferred, "w", encoding="ascii") as handle:
                handle.write("1" if ok else "0")
        except OSError:
            pass  # OpenVPN's own timeout then ends the client's wait


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """`l2tp-routes-openvpn-connect CONFIG_FILE`: 0 lets the client in, 1 refuses it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    log = quiet_log()
    deferred = environ.get("client_connect_deferred_file", "")
    ok = False
    try:
        if len(argv) != 1 or not argv[0]:
            raise InputError("expected one argument: the dynamic config file OpenVPN passes to client-connect")
        connect(argv[0], environ, log)
        ok = True
    except InputError as exc:
        # What OpenVPN gave is unusable for routes (no pool address, say): the client still connects.
        log(syslog.LOG_ERR, f"openvpn client-connect: no routes: {describe(exc)}")
        ok = True
    except BaseException as exc:  # noqa: B902 - logged; the client is refused, never a traceback
        log(syslog.LOG_ERR, f"openvpn client-connect: refused: {describe(exc)}")
    _finish(deferred, ok)
    return 0 if ok else 1
