"""What the panel may ask for: the contract's calls, and nothing that takes the server's own traffic.

The panel's user runs the command through sudo with any arguments (a compromised
panel can), and the command then runs as root. sudo sets SUDO_USER and SUDO_UID and
the shipped sudoers entry lets the caller set neither, so they say who is asking.
Root, the hooks, the timer and administrators through their own sudo are not limited.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Union

from l2tproute.core import constants as C
from l2tproute.core.errors import InputError, Refused
from l2tproute.core.kernel import Links, parse_routes
from l2tproute.core.maintable import MAIN, is_main
from l2tproute.core.model import IPv4Address, Network, Route
from l2tproute.core.tables import table_id

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", re.ASCII)
_MAX_CONFIG_BYTES = 64 * 1024
_MAX_RESOLV_BYTES = 64 * 1024


@dataclass(frozen=True)
class Config:
    """The settings of /etc/l2tp-manager/l2tproute.conf (the defaults when it is missing)."""

    panel_users: tuple[str, ...] = C.DEFAULT_PANEL_USERS
    #: The panel may not route anything shorter than this (IPv4, IPv6).
    min_prefix: int = C.DEFAULT_MIN_PREFIX
    min_prefix6: int = C.DEFAULT_MIN_PREFIX6


_PREFIX_LIMITS = {"min_prefix": 32, "min_prefix6": 128}
_KEYS = ("panel_users", "min_prefix", "min_prefix6")


def parse_config(text: str, path: str = C.CONFIG_FILE) -> Config:
    """Settings from `key = value` lines; `#` starts a comment line. Anything else is an error
    naming the line (never quoting it: the file may hold anything)."""
    values: dict[str, object] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path} line {number}"
        key, eq, value = (part.strip() for part in line.partition("="))
        if not eq or key not in _KEYS:
            raise InputError(f"{where}: expected one of {', '.join(_KEYS)} as key = value, or a # comment")
        if key in values:
            raise InputError(f"{where}: {key} is set twice; set it once")
        if key == "panel_users":
            users = tuple(word for word in re.split(r"[\s,]+", value) if word)
            if not users or not all(_USER_RE.fullmatch(user) for user in users):
                raise InputError(f"{where}: panel_users must list user names separated by commas, like www-data")
            values[key] = users
        else:
            top = _PREFIX_LIMITS[key]
            if not re.fullmatch(r"[0-9]{1,3}", value, re.ASCII) or not 1 <= int(value) <= top:
                raise InputError(f"{where}: {key} must be a prefix length from 1 to {top}")
            values[key] = int(value)
    return Config(**values)  # type: ignore[arg-type]


def load_config(path: str = C.CONFIG_FILE) -> Config:
    """The settings file, or the defaults when there is none. Only root may write it: a file
    the panel could change would let the panel choose its own limits."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}; it must be a regular file owned by root") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            raise InputError(f"{path} must be a regular file owned by root and writable by root only "
                             "(chown root: and chmod 644 it)")
        data = os.read(fd, _MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_CONFIG_BYTES:
        raise InputError(f"{path} is larger than {_MAX_CONFIG_BYTES} bytes; it holds a few settings")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise InputError(f"{path} holds bytes that are not ASCII; it holds a few key = value settings") from None
    return parse_config(text, path)


# -- the caller ---------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    """Who asks: `user` ran sudo (None without sudo); `panel` when that user is a panel user."""

    user: str | None = None
    panel: bool = False
    config: Config = field(default_factory=Config)


def current_caller(environ=os.environ, config_path: str = C.CONFIG_FILE) -> Caller:
    """The caller by sudo's variables. Either one naming a panel user makes it the panel."""
    sudo_user, sudo_uid = environ.get("SUDO_USER"), environ.get("SUDO_UID")
    if sudo_user is None and sudo_uid is None:
        return Caller()
    config = load_config(config_path)
    names = {sudo_user} if sudo_user else set()
    if sudo_uid is not None and sudo_uid.isascii() and sudo_uid.isdigit():
        import pwd

        with contextlib.suppress(KeyError, OverflowError):  # no such user: SUDO_USER still counts
            names.add(pwd.getpwuid(int(sudo_uid)).pw_name)
    panel = sorted(names & set(config.panel_users))
    if panel:
        return Caller(panel[0], True, config)
    return Caller(sudo_user or sudo_uid, False, config)


# -- the request and the server it runs on ----------------------------------

@dataclass(frozen=True)
class Request:
    """What is asked, as parsed: options, and for `add` the route."""

    force: bool = False
    netns: str | None = None
    table: str | None = None
    route: Route | None = None


@dataclass(frozen=True)
class Dependency:
    """An address the server needs to reach itself, and what it is."""

    address: IPAddress
    role: str


@dataclass(frozen=True)
class Taken:
    """A network that is already somebody's: the server's, or another peer's."""

    network: Network
    owner: str


@dataclass(frozen=True)
class ServerState:
    dependencies: tuple[Dependency, ...] = ()
    taken: tuple[Taken, ...] = ()


def read_resolvers(path: str = C.RESOLV_CONF) -> list[IPAddress]:
    """The `nameserver` addresses of resolv.conf; a missing or unreadable file names none."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_RESOLV_BYTES)
    except OSError:
        return []
    found = []
    for raw in data.decode("ascii", "replace").splitlines():
        words = raw.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(ipaddress.ip_address(words[1].split("%", 1)[0]))
            except ValueError:
                continue
    return found


def _gateways(rows: list) -> list[str]:
    found = []
    for row in rows:
        hops = [row] + [hop for hop in row.get("nexthops", []) if isinstance(hop, dict)]
        for hop in hops:
            via = hop.get("via")
            for text in (hop.get("gateway"), via.get("host") if isinstance(via, dict) else None):
                if text:
                    found.append(str(text))
    return found


def server_state(link_rows: list, route_rows: dict[int, list], links: Links, peer: IPv4Address,
                 held: list[Taken], resolvers: list[IPAddress]) -> ServerState:
    """What a panel route must leave alone, from `ip -json addr`, `ip -json route show table all`
    per family, the other peers' stored destinations and the name servers."""
    deps: list[Dependency] = []
    for row in link_rows:
        for info in row.get("addr_info", []):
            deps += _addresses([info.get("local")], "an address of this server")
    taken = list(held)
    sessions = set(links.by_peer.values())
    for family, rows in route_rows.items():
        main_foreign = [row for row in rows if is_main(str(row.get("table", MAIN)))
                        and str(row.get("protocol", "")) not in (str(C.RT_PROTO), C.RT_PROTO_NAME)]
        deps += _addresses(_gateways(main_foreign), "a gateway of this server")
        for item in parse_routes(main_foreign, family):
            if item.route.dst.prefixlen and item.route.dev not in sessions:
                taken.append(Taken(item.route.dst, "a network of this server"))
    for other, link in links.by_peer.items():
        if other != peer:
            taken.append(Taken(ipaddress.ip_network(other), f"the address of peer {other} on {link}"))
    deps += [Dependency(address, f"a name server in {C.RESOLV_CONF}") for address in resolvers]
    return ServerState(tuple(deps), tuple(taken))


def _addresses(texts: list, role: str) -> list[Dependency]:
    found = []
    for text in texts:
        try:
            found.append(Dependency(ipaddress.ip_address(str(text).split("%", 1)[0]), role))
        except ValueError:
            continue
    return found


# -- the decision ---------------------------------------------------------------

def authorize(caller: Caller, request: Request, server: ServerState | None = None) -> None:
    """Refuse (Refused, exit 2) what the panel may not ask; pass everything else, and
    everything from anybody else. A request with a route needs the server's state."""
    if not caller.panel:
        return
    who = f"through the panel (sudo by {caller.user})"
    admin = "an administrator can do it as root"
    if request.force:
        raise Refused(f"--force is not allowed {who}: it takes over what is refused otherwise; {admin}")
    if request.netns is not None:
        raise Refused(f"--netns is not allowed {who}: the panel works on this server only; {admin}")
    if request.table is not None and not is_main(table_id(request.table)):
        raise Refused(f"--table {request.table} is not allowed {who}: the panel adds to the main table only; {admin}")
    if request.route is None:
        return
    if server is None:
        raise ValueError("authorize needs the server state for a route")
    _check_route(caller, request.route.dst, server, who)


def _check_route(caller: Caller, dst: Network, server: ServerState, who: str) -> None:
    refuse = f"refusing {dst} {who}"
    if dst.prefixlen == 0:
        raise Refused(f"{refuse}: it is the default route, all traffic of this server")
    limit = caller.config.min_prefix if dst.version == 4 else caller.config.min_prefix6
    setting = "min_prefix" if dst.version == 4 else "min_prefix6"
    if dst.prefixlen < limit:
        raise Refused(f"{refuse}: it is shorter than /{limit} ({setting} in {C.CONFIG_FILE}); use a narrower network")
    for dep in server.dependencies:
        if dep.address.version == dst.version and dep.address in dst:
            raise Refused(f"{refuse}: it covers {dep.address}, {dep.role}; the server would lose it")
    for taken in server.taken:
        if taken.network.version == dst.version and taken.network.overlaps(dst):
            raise Refused(f"{refuse}: it overlaps {taken.network}, {taken.owner}")
