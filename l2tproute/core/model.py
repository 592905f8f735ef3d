"""The route model and every validation of a value that comes from outside.

Values are parsed here once, at the edge, into typed objects; nothing below
handles raw strings. Every error says what was wrong and what would be right.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Union

# Re-exported: callers have long imported them from here; they live with the other exceptions.
from l2tproute.core.errors import InputError as InputError
from l2tproute.core.errors import Refused as Refused
from l2tproute.core.maintable import is_main
from l2tproute.core.text import show

IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


# re.ASCII: `\d` must not accept Arabic-Indic or other unicode digits.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}", re.ASCII)
_PREFIX_RE = re.compile(r"(?:3[0-2]|[12][0-9]|[0-9])", re.ASCII)
_PREFIX6_RE = re.compile(r"(?:12[0-8]|1[01][0-9]|[1-9][0-9]|[0-9])", re.ASCII)
_IPV6_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}", re.ASCII)
# Linux accepts almost any byte in a link name; we accept the names pppd,
# ifupdown and systemd-networkd actually make, so a name is always one safe token
# in an `ip -batch` line (no space, `#`, quote or control character).
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.+@-]{1,15}", re.ASCII)
_TABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", re.ASCII)
_UINT_RE = re.compile(r"[0-9]{1,10}", re.ASCII)

MAX_METRIC = 2**32 - 1
#: Tables a route of ours may never go to: 0 (unspec), 253 default, 254 is main
#: (allowed, but written as no table), 255 local.
_RESERVED_TABLES = {0, 253, 255}
_RESERVED_TABLE_NAMES = {"local", "default", "unspec", "all"}


def _is_host_ipv4(text: str) -> bool:
    return _IPV4_RE.fullmatch(text) is not None


def _quad_int(text: str) -> int:
    """The integer of a dotted quad already matched by _IPV4_RE."""
    a, b, c, d = text.split(".")
    return int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)


def _checked_ipv4(text: str) -> IPv4Address:
    """The address of a dotted quad that _is_host_ipv4 accepted: ipaddress's own parser
    checks it all again and costs most of a route file's parse at thousands of lines."""
    found = _ADDRESSES.get(text)
    if found is None:
        found = _remember(_ADDRESSES, text, IPv4Address(_quad_int(text)))
    return found


# Every line of a peer's file names the same gateway, and the kernel's listing repeats
# the destinations the files name: one shared object per value saves building it again,
# and a dict lookup of an identical key skips ipaddress's Python-level __eq__.
_ADDRESSES: dict = {}
_NETWORKS: dict = {}
_MEMO_LIMIT = 1 << 17  # far above 50,000 routes; a long-lived caller's memory stays bounded


def _remember(memo: dict, key, value):
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


def ipv4_network(address: int, bits: int) -> ipaddress.IPv4Network:
    """The network of a valid address integer and prefix length with no host bits set."""
    found = _NETWORKS.get((address, bits))
    if found is None:
        found = _remember(_NETWORKS, (address, bits), ipaddress.IPv4Network((address, bits)))
    return found


def ipv4_address(text: str) -> IPv4Address | None:
    """The address of a canonical dotted quad (as the kernel prints it), None for anything else."""
    found = _ADDRESSES.get(text)
    if found is None and _is_host_ipv4(text):
        found = _checked_ipv4(text)
    return found


def ipv4_int(text: str) -> int | None:
    """The integer of a canonical dotted quad (as the kernel prints it), None for anything else."""
    return _quad_int(text) if _IPV4_RE.fullmatch(text) else None


def parse_ipv4(text: str, what: str) -> IPv4Address:
    if not _is_host_ipv4(text):
        hint = ""
        if text.count(".") == 3 and all(p.isascii() and p.isdigit() for p in text.split(".")):
            hint = " (no leading zeros, each part 0-255)"
        elif ":" in text:
            hint = " (IPv6 is not accepted here)"
        elif _is_host_ipv4(text.partition("/")[0]):
            hint = " (an address, not a network)"
        raise InputError(f"invalid {what} {show(text)}: expected a dotted IPv4 address like 10.255.10.1{hint}")
    return _checked_ipv4(text)


def _check_unicast(addr: IPv4Address, what: str, text: str) -> None:
    # 0/8 (with 0.0.0.0), 127/8 loopback, 224/4 multicast, 240/4 reserved (with the broadcast
    # address), by the first octet: ipaddress's properties cost more than a whole line's parse.
    first = int(addr) >> 24
    if first == 0 or first == 127 or first >= 224:
        raise InputError(
            f"invalid {what} {show(text)}: not a unicast host address; expected the address of a user, like 10.255.10.1"
        )


def parse_peer(text: str) -> IPv4Address:
    """A peer names its route file, so nothing but a plain unicast dotted quad passes."""
    addr = parse_ipv4(text, "peer")
    _check_unicast(addr, "peer", text)
    return addr


def parse_vpn_address6(text: str) -> IPv6Address:
    """An OpenVPN client's IPv6 pool address (ifconfig_pool_remote_ip6): a routable unicast address."""
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        addr = None
    if addr is None or str(addr) != text or addr.is_multicast or addr.is_unspecified or addr.is_loopback \
            or addr.is_link_local or addr.ipv4_mapped is not None:
        raise InputError(f"invalid client IPv6 address {show(text)}: expected a unicast address in canonical "
                         "form, like fd00:10:30::1000")
    return addr


def parse_gateway(text: str) -> IPv4Address:
    addr = parse_ipv4(text, "gateway")
    _check_unicast(addr, "gateway", text)
    return addr


def parse_destination(text: str) -> Network:
    """An IPv4 or IPv6 CIDR with its prefix written and host bits zero."""
    addr_part, slash, prefix = text.partition("/")
    if ":" in addr_part:
        return _parse_destination6(text, addr_part, slash, prefix)
    if not _is_host_ipv4(addr_part):
        raise InputError(f"invalid destination {show(text)}: expected an IPv4 network like 192.168.1.0/24")
    if not slash:
        raise InputError(f"invalid destination {show(text)}: the prefix length is missing; "
                         f"did you mean {addr_part}/32?")
    if not _PREFIX_RE.fullmatch(prefix):
        raise InputError(f"invalid destination {show(text)}: the prefix length must be 0-32, like 192.168.1.0/24")
    # From integers: parsing the text again costs more than the checks above.
    address, bits = _quad_int(addr_part), int(prefix)
    if address & ((1 << (32 - bits)) - 1):
        net = ipaddress.IPv4Network((address, bits), strict=False)
        raise InputError(f"invalid destination {show(text)}: host bits are set; did you mean {net}?")
    return ipv4_network(address, bits)


def _parse_destination6(text: str, addr_part: str, slash: str, prefix: str) -> Network:
    if not _IPV6_CHARS_RE.fullmatch(addr_part):
        raise InputError(f"invalid destination {show(text)}: expected an IPv6 network like 2001:db8:100::/48")
    try:
        addr = ipaddress.IPv6Address(addr_part)
    except ValueError:
        raise InputError(f"invalid destination {show(text)}: expected an IPv6 network like 2001:db8:100::/48") from None
    if not slash:
        raise InputError(f"invalid destination {show(text)}: the prefix length is missing; did you mean {addr}/128?")
    if not _PREFIX6_RE.fullmatch(prefix):
        raise InputError(f"invalid destination {show(text)}: the prefix length must be 0-128, like 2001:db8:100::/48")
    net = ipaddress.IPv6Network(f"{addr}/{prefix}", strict=False)
    if net.network_address != addr:
        raise InputError(f"invalid destination {show(text)}: host bits are set; did you mean {net}?")
    if addr_part != str(addr):
        raise InputError(f"invalid destination {show(text)}: write it in canonical form: {net}")
    return net


def parse_device(text: str) -> str:
    if not _IFNAME_RE.fullmatch(text) or text in (".", ".."):
        raise InputError(
            f"invalid device {show(text)}: expected an interface name like ppp0 "
            "(1-15 characters: letters, digits, and . _ - + @)"
        )
    return text


def parse_metric(text: str) -> int:
    if not _UINT_RE.fullmatch(text) or int(text) > MAX_METRIC:
        raise InputError(f"invalid metric {show(text)}: expected a whole number from 0 to {MAX_METRIC}")
    return int(text)


def parse_table(text: str) -> str:
    """A table as written: a number or a name. Names are resolved by tables.py when applied."""
    if _UINT_RE.fullmatch(text):
        number = int(text)
        if number in _RESERVED_TABLES or number > MAX_METRIC or number == 0:
            raise InputError(f"invalid table {show(text)}: expected a table id from 1 to {MAX_METRIC}, "
                             "not 0, 253 or 255")
        return str(number)
    if not _TABLE_NAME_RE.fullmatch(text) or text in _RESERVED_TABLE_NAMES:
        raise InputError(f"invalid table {show(text)}: expected a table number or a name from /etc/iproute2/rt_tables")
    return text


@dataclass(frozen=True)
class Route:
    """One route of one peer, as a route file line says it."""

    dst: Network
    gw: IPv4Address
    dev: str | None = None
    metric: int | None = None
    table: str | None = None

    @property
    def family(self) -> int:
        return self.dst.version

    def same_target(self, other: Route) -> bool:
        """Two lines for one kernel slot (destination, table, metric)."""
        return (self.dst, self.table_key, self.metric) == (other.dst, other.table_key, other.metric)

    @property
    def table_key(self) -> str | None:
        return None if is_main(self.table) else self.table



def make_route(peer: IPv4Address, dst: Network, gw: IPv4Address | None = None, dev: str | None = None,
               metric: int | None = None, table: str | None = None) -> Route:
    """A route as `add` stores it: without `--gw` the peer itself is the gateway."""
    return Route(dst=dst, gw=gw if gw is not None else peer, dev=dev, metric=metric, table=table)


@dataclass(frozen=True)
class KernelRoute:
    """A route as the kernel is told it: always carries our protocol tag."""

    dst: Network
    dev: str
    gw: IPv4Address | IPv6Address | None = None  # IPv6 only over OpenVPN
    metric: int | None = None
    table: str | None = None


@dataclass(frozen=True)
class Change:
    verb: str  # "add" (fails on a taken slot), "replace", "del"
    route: KernelRoute


@dataclass(frozen=True)
class Failure:
    change: Change
    message: str
