"""OpenVPN's client-connect, the unprivileged half: user -> peer -> iroutes, then a vpn-up event.

Runs as the server's `user nobody`, `group www-data`. Where OpenVPN offers the deferred form,
bin/l2tp-routes-openvpn queues each connect and one connector (openvpnconnect.py) serves a
whole burst through `answer`; without it, this module's `main` serves the one client in the
hook's own environment. The user name (`username`, else `common_name`) is looked up in
chap-secrets as `--user` is; that address's route file gives the iroutes, written into the
client's dynamic config ($1) as network and dotted mask (`iroute-ipv6 NET/LEN` for IPv6 lines
when the server gives the client an IPv6 address, `server-ipv6`); the kernel routes are the
root worker's, from the spooled `NETNS,TUN,SEQ,vpn-up,ADDRESS,PEER[,ADDRESS6]`. Lines with their own
`dev`, IPv6 lines without `server-ipv6` and users without a fixed address or a route file are
logged and skipped: the client still connects.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import syslog
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from l2tproute.core.errors import describe
from l2tproute.core.model import (
    InputError,
    IPv4Address,
    IPv6Address,
    Route,
    parse_device,
    parse_peer,
    parse_vpn_address6,
)
from l2tproute.core.routefile import routes as routes_of
from l2tproute.core.text import one_line
from l2tproute.system import netns
from l2tproute.system.chap import Users, chap_path
from l2tproute.system.spool import SPOOL, VPN_UP, event_name, run_dir_from_environment
from l2tproute.system.store import Store, store_dir_from_environment
from l2tproute.system.syslogger import Log, quiet_log
from l2tproute.transports.openvpn.sync import iroute_lines

#: The names of OpenVPN's environment a connect needs; the connector's queue records hold
#: exactly these, besides the dynamic config file (CONFIG).
CLIENT_NAMES = ("username", "common_name", "dev", "ifconfig_pool_remote_ip", "ifconfig_pool_remote_ip6",
                "client_connect_deferred_file")
CONFIG = "config"


@dataclass(frozen=True)
class Client:
    """What OpenVPN tells client-connect, parsed."""

    user: str
    tun: str
    address: IPv4Address
    address6: IPv6Address | None = None  # with server-ipv6 only


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
    text6 = environ.get("ifconfig_pool_remote_ip6", "")
    return Client(user, tun, address, parse_vpn_address6(text6) if text6 else None)


class Lookup:
    """chap-secrets and the route files, each read once however many clients a burst brings."""

    def __init__(self, chap: str, store: Store):
        self.users = Users(chap)
        self.store = store
        self.born = time.monotonic()
        self.known: dict[IPv4Address, list[Route]] = {}

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Lookup:
        return cls(chap_path(environ), Store(store_dir_from_environment(environ)))

    def peer(self, user: str) -> IPv4Address:
        return self.users.peer(user)

    def routes(self, peer: IPv4Address) -> list[Route]:
        if peer not in self.known:
            self.known[peer] = routes_of(self.store.read(peer) or [])
        return self.known[peer]


def open_own_file(path: str, flags: int) -> int:
    """A descriptor of `path`, only when it is a regular file (no symlink) of this process's uid:
    the paths may come from a queue record, which the server's whole group can write."""
    if not os.path.isabs(path):
        raise InputError(f"invalid file {path[:200]}: expected an absolute path from OpenVPN")
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise InputError(f"{path[:200]} is a symbolic link, not the file OpenVPN made; not written") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise InputError(f"{path[:200]} is not a regular file of uid {os.geteuid()}; not written")
    return fd


def serve(config_path: str, client: Client, lookup: Lookup, run_dir: str, log: Log) -> None:
    """Write the client's iroutes into `config_path` and spool the kernel routes for the worker.
    A user without an address or routes gets nothing and connects; anything else raises."""
    say = _sayer(client, log)
    try:
        peer = lookup.peer(client.user)
    except InputError as exc:
        say(syslog.LOG_INFO, f"no routes: {exc}")
        return
    routes = lookup.routes(peer)
    if not routes:
        say(syslog.LOG_INFO, f"no routes stored for peer {peer}")
        return
    ipv6 = client.address6 is not None
    for route in routes:
        if route.dev is not None:
            say(syslog.LOG_INFO, f"{route.dst} has its own dev {route.dev}; skipped over OpenVPN")
        elif route.family != 4 and not ipv6:
            say(syslog.LOG_INFO, f"{route.dst} is IPv6; skipped over OpenVPN (the server gives this client no "
                                 "IPv6 address: server-ipv6)")
    iroutes = iroute_lines(routes, ipv6=ipv6)
    if not iroutes:
        say(syslog.LOG_INFO, f"peer {peer}: no routes usable over OpenVPN; nothing to route")
        return
    fd = open_own_file(config_path, os.O_WRONLY | os.O_APPEND)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, "".join(line + "\n" for line in iroutes).encode("ascii"))
        try:
            spool_connect(run_dir, client, peer)
        except BaseException:
            # Without the kernel routes the iroutes would only black-hole the user's LAN: undone.
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    say(syslog.LOG_INFO, f"peer {peer}: {len(iroutes)} iroutes written, kernel routes handed to the worker")


def connect(config_path: str, environ: Mapping[str, str], log: Log) -> None:
    """`serve` the one client in OpenVPN's environment `environ`."""
    serve(config_path, parse_client(environ), Lookup.from_environment(environ), run_dir_from_environment(environ),
          log)


def spool_connect(run_dir: str, client: Client, peer: IPv4Address) -> None:
    # The connector runs in the server's namespace, where its tun is: the worker applies it there.
    extra = [client.address6] if client.address6 is not None else []
    name = event_name(netns.current(), client.tun, time.time_ns(), VPN_UP, client.address, peer, *extra)
    fd = os.open(os.path.join(run_dir, SPOOL, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.close(fd)


def _sayer(client: Client, log: Log):
    prefix = f"openvpn client-connect {client.tun} client {client.address}: "
    return lambda priority, message: log(priority, prefix + one_line(message))


def answer(config_path: str, values: Mapping[str, str], lookup: Lookup, run_dir: str, log: Log) -> bool:
    """Serve one client from OpenVPN's values; True lets it in, False refuses it. Never raises."""
    try:
        if not config_path:
            raise InputError("expected one argument: the dynamic config file OpenVPN passes to client-connect")
        serve(config_path, parse_client(values), lookup, run_dir, log)
    except InputError as exc:
        # What OpenVPN gave is unusable for routes (no pool address, say): the client still connects.
        log(syslog.LOG_ERR, f"openvpn client-connect: no routes: {describe(exc)}")
    except BaseException as exc:  # noqa: B902 - logged; the client is refused, never a traceback
        log(syslog.LOG_ERR, f"openvpn client-connect: refused: {describe(exc)}")
        return False
    return True


def finish(deferred: str, ok: bool, log: Log) -> None:
    """Tell OpenVPN the deferred connect's answer: 1 lets the client in, 0 refuses it."""
    if not deferred:
        return
    try:
        fd = open_own_file(deferred, os.O_WRONLY)  # O_TRUNC would cut before the check
        try:
            os.ftruncate(fd, 0)
            os.write(fd, b"1" if ok else b"0")
        finally:
            os.close(fd)
    except (OSError, InputError) as exc:
        # OpenVPN's own timeout then ends the client's wait.
        log(syslog.LOG_ERR, f"openvpn client-connect: no answer for OpenVPN: {describe(exc)}")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """`l2tp-routes-openvpn-connect CONFIG_FILE`: 0 lets the client in, 1 refuses it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    log = quiet_log()
    config_path = argv[0] if len(argv) == 1 else ""
    ok = answer(config_path, environ, Lookup.from_environment(environ), run_dir_from_environment(environ), log)
    finish(environ.get("client_connect_deferred_file", ""), ok, log)
    return 0 if ok else 1
