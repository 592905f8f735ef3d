"""An in-memory kernel behind l2tproute's Runner: iproute2 6.1 answers, no root, no namespace.

`MemKernel.ip(...)` takes the arguments of `ip` and answers as iproute2 6.1 on Linux 6.1 does
for the verbs l2tproute and its tests use, with the same exit status, the same `-json -N`
rows (keys dropped by a filter, `linkdown` on carrier-less tun links, host routes without
`/32`, the IPv4 metric only when not 0, the dump order) and the same error lines:

    route add on a taken slot         RTNETLINK answers: File exists             (exit 2)
    route del of a missing route      RTNETLINK answers: No such process         (exit 2)
    via a gateway not on the link     Error: Nexthop has invalid gateway.        (exit 2)
    a link that does not exist        Cannot find device "ppp9"                  (exit 1)
    -force -batch -                   each error, then `Command failed -:N`      (exit 1)

Links come from `tuntap add ... mode tun`, `addr add LOCAL peer PEER` / `addr add CIDR` and
`link set X up`, with the connected and local routes the kernel derives from an address. What
it does not model it refuses with Unsupported rather than guess. The Runner methods build
the same argument lists as l2tproute.system.iproute2.IpRoute2 and read the answer the same way.
tests/netns/test_memkernel_parity.py runs the same scenarios here and in a real namespace.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from l2tproute.core import constants as C
from l2tproute.core.model import Change, Failure
from l2tproute.system.iproute2 import IpError, Runner, change_tokens, route_show_args

from .kernels import KernelSetup

# rtnetlink.h numbers, as `ip -N` prints them.
UNICAST, LOCAL, BROADCAST, BLACKHOLE, UNREACHABLE, PROHIBIT = 1, 2, 3, 6, 7, 8
PROTO_KERNEL, PROTO_BOOT = 2, 3
SCOPE_UNIVERSE, SCOPE_LINK, SCOPE_HOST = 0, 253, 254
TABLE_MAIN, TABLE_LOCAL = 254, 255
_TYPES = {"unicast": UNICAST, "local": LOCAL, "broadcast": BROADCAST, "blackhole": BLACKHOLE,
          "unreachable": UNREACHABLE, "prohibit": PROHIBIT}
_PROTOS = {"redirect": 1, "kernel": 2, "boot": 3, "static": 4, "zebra": 11, "bird": 12, "dhcp": 16,
           C.RT_PROTO_NAME: C.RT_PROTO}
_TABLES = {"main": TABLE_MAIN, "local": TABLE_LOCAL, "default": 253}
_FOREVER = 4294967295

EEXIST = "RTNETLINK answers: File exists"
ESRCH = "RTNETLINK answers: No such process"
BAD_GATEWAY = "Error: Nexthop has invalid gateway."
BAD_PREFIX = "Error: Invalid prefix for given prefix length."
DEV_DOWN = "Error: Nexthop device is not up."
NO_TABLE = "Error: FIB table does not exist."
ADDRESS_TAKEN = "Error: ipv4: Address already assigned."


class Unsupported(NotImplementedError):
    """An `ip` use this fake does not model: a test asked for more than it can answer honestly."""


class _Fail(Exception):
    """One `ip` command failing as the real one does: its stderr line and exit status."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.message = message
        self.status = status


def _no_device(name: str) -> _Fail:
    return _Fail(f'Cannot find device "{name}"', 1)


@dataclass
class _Addr:
    local: ipaddress.IPv4Address | ipaddress.IPv6Address
    prefixlen: int
    peer: ipaddress.IPv4Address | None = None

    @property
    def family(self) -> int:
        return self.local.version


@dataclass
class _Link:
    index: int
    name: str
    loopback: bool = False
    up: bool = False
    addrs: list[_Addr] = field(default_factory=list)

    @property
    def carrier(self) -> bool:
        return self.loopback  # a tun device nobody holds open never has carrier


@dataclass
class _Route:
    family: int
    table: int
    type: int
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    protocol: int
    scope: int
    metric: int
    dev: str | None = None
    gw: ipaddress.IPv4Address | None = None
    prefsrc: ipaddress.IPv4Address | None = None
    seq: int = 0  # insertion order among routes of one slot (the kernel appends)

    def slot(self) -> tuple:
        return (self.family, self.table, self.dst, self.metric)


@dataclass
class _Request:
    """One `ip route` command line, parsed."""

    verb: str
    family: int
    type: int | None = None
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    gw: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dev: str | None = None
    protocol: int | None = None
    metric: int | None = None
    table: int | None = None  # None: `table all` for show, main otherwise
    all_tables: bool = False
    exact: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    root: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    host_bits: bool = False  # an IPv4 prefix written with host bits set: the kernel refuses it


class MemKernel(KernelSetup, Runner):
    """A fresh network namespace after `ip link set lo up`, in memory."""

    netns = None

    def __init__(self) -> None:
        self.links: dict[str, _Link] = {}
        self.fib: list[_Route] = []
        self._ifindex = itertools.count(1)
        self._seq = itertools.count()
        self._tables: dict[tuple[int, int], int] = {}  # (family, id) -> creation order
        for family in (4, 6):
            self._table(family, TABLE_MAIN)
            self._table(family, TABLE_LOCAL)
        lo = _Link(next(self._ifindex), "lo", loopback=True, up=True)
        self.links["lo"] = lo
        self._add_addr(lo, _Addr(ipaddress.ip_address("127.0.0.1"), 8))
        lo.addrs.append(_Addr(ipaddress.ip_address("::1"), 128))
        self._insert(_Route(6, TABLE_LOCAL, LOCAL, ipaddress.ip_network("::1/128"), PROTO_KERNEL, SCOPE_UNIVERSE,
                            0, dev="lo"), append=True)

    @property
    def runner(self) -> Runner:
        return self

    # -- the `ip` command ----------------------------------------------------

    def ip(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        status, out, err = self._command(list(args), stdin)
        done = subprocess.CompletedProcess(["ip", *args], status, out, err)
        if check and status != 0:
            raise subprocess.CalledProcessError(status, done.args, out, err)
        return done

    def _command(self, args: list[str], stdin: str | None) -> tuple[int, str, str]:
        opts = {"family": None, "json": False, "numeric": False, "force": False, "batch": None}
        while args and args[0].startswith("-"):
            flag = args.pop(0)
            if flag in ("-4", "-6"):
                opts["family"] = int(flag[1])
            elif flag in ("-j", "-json"):
                opts["json"] = True
            elif flag in ("-N", "-Numeric"):
                opts["numeric"] = True
            elif flag == "-force":
                opts["force"] = True
            elif flag == "-batch" and args:
                opts["batch"] = args.pop(0)
            else:
                raise Unsupported(f"ip option {flag}")
        if opts["batch"] is not None:
            if opts["batch"] != "-" or stdin is None or args:
                raise Unsupported("only -batch - with the commands on stdin")
            return self._batch_text(stdin, opts)
        try:
            return 0, self._one(args, opts), ""
        except _Fail as failure:
            return failure.status, "", failure.message + "\n"

    def _batch_text(self, text: str, opts: dict) -> tuple[int, str, str]:
        out, err, status = [], [], 0
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if any(q in line for q in "\"'\\"):
                raise Unsupported("quoting in a batch line")
            try:
                out.append(self._one(words, opts))
            except _Fail as failure:
                err += [failure.message, f"Command failed -:{number}"]
                status = 1
                if not opts["force"]:
                    break
        return status, "".join(out), "".join(line + "\n" for line in err)

    def _one(self, args: list[str], opts: dict) -> str:
        if not args:
            raise Unsupported("ip without an object")
        obj, rest = args[0], args[1:]
        if obj in ("route", "r", "ro"):
            return self._route(rest, opts)
        if obj in ("addr", "address", "a"):
            return self._addr(rest, opts)
        if obj in ("link", "l"):
            return self._link(rest)
        if obj == "tuntap":
            return self._tuntap(rest)
        raise Unsupported(f"ip {obj}")

    # -- links and addresses ---------------------------------------------------

    def _device(self, name: str) -> _Link:
        link = self.links.get(name)
        if link is None:
            raise _no_device(name)
        return link

    def _tuntap(self, args: list[str]) -> str:
        if len(args) != 5 or args[:2] != ["add", "dev"] or args[3:] != ["mode", "tun"]:
            raise Unsupported(f"tuntap {' '.join(args)}")
        name = args[2]
        if name in self.links:
            raise _Fail("ioctl(TUNSETIFF): Device or resource busy", 1)
        self.links[name] = _Link(next(self._ifindex), name)
        return ""

    def _link(self, args: list[str]) -> str:
        if len(args) == 3 and args[0] == "set" and args[2] == "up":
            link = self._device(args[1])
            if not link.up:
                link.up = True
                for addr in link.addrs:
                    self._prefix_routes(link, addr)
            return ""
        if len(args) == 2 and args[0] in ("del", "delete"):
            link = self._device(args[1])
            if link.loopback:
                raise Unsupported("deleting lo")
            del self.links[link.name]
            self.fib = [r for r in self.fib if r.dev != link.name]
            return ""
        raise Unsupported(f"link {' '.join(args)}")

    def _addr(self, args: list[str], opts: dict) -> str:
        if args[:1] in ([], ["show"], ["list"]):
            return self._addr_show(args[1:], opts)
        if args[0] == "add" and len(args) == 4 and args[2] == "dev":
            local, addr = args[1], None
        elif args[0] == "add" and len(args) == 6 and args[2] == "peer" and args[4] == "dev":
            local = args[1]
            addr = _Addr(ipaddress.IPv4Address(local), 32, ipaddress.IPv4Address(args[3]))
        else:
            raise Unsupported(f"addr {' '.join(args)}")
        link = self._device(args[-1])
        if addr is None:
            iface = ipaddress.IPv4Interface(local)  # an IPv6 address would need DAD, routes...: not modelled
            addr = _Addr(iface.ip, iface.network.prefixlen)
        if any(a.local == addr.local and a.prefixlen == addr.prefixlen for a in link.addrs):
            raise _Fail(ADDRESS_TAKEN)
        self._add_addr(link, addr)
        return ""

    def _add_addr(self, link: _Link, addr: _Addr) -> None:
        """The routes fib_add_ifaddr makes: local at once, connected and broadcast once the link is up."""
        link.addrs.append(addr)
        host = ipaddress.ip_network(addr.local)
        self._insert(_Route(4, TABLE_LOCAL, LOCAL, host, PROTO_KERNEL, SCOPE_HOST, 0, link.name,
                            prefsrc=addr.local), append=True)
        if link.up:
            self._prefix_routes(link, addr)

    def _prefix_routes(self, link: _Link, addr: _Addr) -> None:
        if addr.family != 4:
            return
        net = ipaddress.ip_network(f"{addr.peer or addr.local}/{addr.prefixlen}", strict=False)
        if addr.peer is not None or addr.prefixlen < 32:
            # lo's own network is local (127.0.0.0/8 answers on every address), any other is connected.
            if link.loopback:
                route = _Route(4, TABLE_LOCAL, LOCAL, net, PROTO_KERNEL, SCOPE_HOST, 0, link.name, prefsrc=addr.local)
            else:
                route = _Route(4, TABLE_MAIN, UNICAST, net, PROTO_KERNEL, SCOPE_LINK, 0, link.name, prefsrc=addr.local)
            self._insert(route, append=True)
        if addr.prefixlen < 31:
            self._insert(_Route(4, TABLE_LOCAL, BROADCAST, ipaddress.ip_network(net.broadcast_address),
                                PROTO_KERNEL, SCOPE_LINK, 0, link.name, prefsrc=addr.local), append=True)

    def _addr_show(self, args: list[str], opts: dict) -> str:
        if not opts["json"]:
            raise Unsupported("addr show without -json")
        links = list(self.links.values())
        if args:
            if len(args) != 2 or args[0] != "dev":
                raise Unsupported(f"addr show {' '.join(args)}")
            if args[1] not in self.links:
                raise _Fail(f'Device "{args[1]}" does not exist.', 1)
            links = [self.links[args[1]]]
        return _json([_link_row(link) for link in links])

    # -- routes ----------------------------------------------------------------

    def _route(self, args: list[str], opts: dict) -> str:
        if args[:1] == ["get"]:
            return self._route_get(args[1:], opts)
        if not args or args[0] in ("show", "list", "ls"):
            request = _parse_route("show", args[1:], opts["family"])
            if not (opts["json"] and opts["numeric"]):
                raise Unsupported("route show without -json -N")
            return _json(self._show(request))
        verb = {"delete": "del"}.get(args[0], args[0])
        if verb not in ("add", "replace", "del"):
            raise Unsupported(f"route {args[0]}")
        request = _parse_route(verb, args[1:], opts["family"])
        if request.dev is not None:
            self._device(request.dev)  # iproute2 resolves the name before it asks the kernel
        if verb == "del":
            self._delete(request)
        else:
            self._add(request)
        return ""

    def _route_get(self, args: list[str], opts: dict) -> str:
        """fib_lookup for one IPv4 address as the default rules do it (local, then main), printed
        as `ip -json route get`; the source address is the route's prefsrc or the link's first."""
        if len(args) != 1 or not opts["json"] or opts["numeric"] or opts["family"] not in (None, 4):
            raise Unsupported(f"route get {' '.join(args)}")
        address = ipaddress.IPv4Address(args[0])
        for table in (TABLE_LOCAL, TABLE_MAIN):
            best = None
            for route in self.fib:
                if (route.family, route.table) != (4, table) or address not in route.dst:
                    continue
                if route.dev is not None and not self.links[route.dev].up:
                    continue
                if best is None or (route.dst.prefixlen, -route.metric) > (best.dst.prefixlen, -best.metric):
                    best = route
            if best is not None:
                return _json([self._got(best, address)])
        raise _Fail("RTNETLINK answers: Network is unreachable")

    def _got(self, route: _Route, address) -> dict:
        if route.type not in (UNICAST, LOCAL):
            raise Unsupported(f"route get through a route of type {route.type}")
        row: dict = {}
        if route.type == LOCAL:
            row["type"] = "local"
        row["dst"] = str(address)
        if route.gw is not None:
            row["gateway"] = str(route.gw)
        row["dev"] = "lo" if route.type == LOCAL else route.dev
        source = route.prefsrc or next((a.local for a in self.links[route.dev].addrs if a.family == 4), None)
        if source is None:
            raise Unsupported("route get choosing a source address on another link")
        row["prefsrc"] = str(source)
        row["flags"] = []
        row["uid"] = 0
        row["cache"] = ["local"] if route.type == LOCAL else []
        return row

    def _show(self, request: _Request) -> list[dict]:
        if request.dev is not None:
            self._device(request.dev)
        rows = []
        for route in self._dump_order(request.family):
            if not request.all_tables and route.table != (request.table or TABLE_MAIN):
                continue
            if request.protocol is not None and route.protocol != request.protocol:
                continue
            if request.dev is not None and route.dev != request.dev:
                continue
            if request.exact is not None and route.dst != request.exact:
                continue
            if request.root is not None and not (route.dst.version == request.root.version
                                                 and route.dst.subnet_of(request.root)):
                continue
            rows.append(self._row(route, request))
        return rows

    def _row(self, route: _Route, request: _Request) -> dict:
        """print_route() of iproute2 6.1 under -json -N, field for field."""
        row: dict = {}
        if route.type != UNICAST:
            row["type"] = str(route.type)
        row["dst"] = _dst_text(route.dst)
        if route.gw is not None:
            row["gateway"] = str(route.gw)
        if route.dev is not None and request.dev is None:
            row["dev"] = route.dev
        if route.table != TABLE_MAIN and request.all_tables:
            row["table"] = str(route.table)
        if route.protocol != PROTO_BOOT and request.protocol is None:
            row["protocol"] = str(route.protocol)
        if route.scope != SCOPE_UNIVERSE:
            row["scope"] = str(route.scope)
        if route.prefsrc is not None:
            row["prefsrc"] = str(route.prefsrc)
        if route.family == 6 or route.metric:
            row["metric"] = route.metric  # IPv4 sends RTA_PRIORITY only when it is not 0
        link = self.links.get(route.dev or "")
        down = link is not None and not link.carrier and route.scope != SCOPE_HOST and route.type != LOCAL
        row["flags"] = ["linkdown"] if down else []
        if route.family == 6:
            row["pref"] = "medium"
        return row

    def _dump_order(self, family: int) -> list[_Route]:
        """Tables by hash bucket (id mod 256, the newest first in a bucket); IPv4 in trie key
        order (longer prefix first on one key); IPv6 in the fib6 tree's post-order walk."""

        def key(route: _Route) -> tuple:
            table = (route.table & 0xFF, -self._tables[(family, route.table)])
            net = route.dst
            if family == 4:
                place: tuple = (int(net.network_address), -net.prefixlen)
            else:
                place = (format(int(net.network_address), "0128b")[:net.prefixlen] + "2",)
            return (*table, *place, route.metric, route.seq)

        return sorted((r for r in self.fib if r.family == family), key=key)

    def _table(self, family: int, table: int) -> None:
        self._tables.setdefault((family, table), len(self._tables))

    def _insert(self, route: _Route, *, append: bool = False, replace: bool = False) -> None:
        self._table(route.family, route.table)
        taken = [r for r in self.fib if r.slot() == route.slot()]
        if taken and replace:
            route.seq = taken[0].seq
            self.fib[self.fib.index(taken[0])] = route
            return
        if taken and not append:
            raise _Fail(EEXIST)
        route.seq = next(self._seq)
        self.fib.append(route)

    def _add(self, request: _Request) -> None:
        family, kind = request.family, request.type or UNICAST
        if request.dst is None:
            raise Unsupported("route add without a destination")
        table = request.table or TABLE_MAIN
        self._table(family, table)  # the kernel makes the table before it checks the route
        if request.host_bits:
            raise _Fail(BAD_PREFIX)
        scope = SCOPE_UNIVERSE
        if kind == UNICAST:
            if request.dev is None:
                raise Unsupported("a unicast route without dev")
            if not self.links[request.dev].up:
                raise _Fail(DEV_DOWN)
            if request.gw is not None:
                if family == 6:
                    raise Unsupported("IPv6 gateways")
                self._check_gateway(request.gw, request.dev, table)
            elif family == 4:
                scope = SCOPE_LINK
        elif kind not in (BLACKHOLE, UNREACHABLE, PROHIBIT) or family == 6 or request.dev or request.gw:
            raise Unsupported(f"route type {kind} here")
        metric = request.metric or 0
        if family == 6 and metric == 0:
            metric = 1024  # IP6_RT_PRIO_USER
        route = _Route(family, table, kind, request.dst, request.protocol or PROTO_BOOT, scope, metric,
                       request.dev, request.gw)
        self._insert(route, replace=request.verb == "replace")

    def _check_gateway(self, gw, dev: str, table: int) -> None:
        """fib_check_nh_v4_gw: the gateway must be on `dev` through a link or host scope route of
        type unicast or local, looked up in the route's table first, then local and main."""
        tables = ([table] if table != TABLE_MAIN and (4, table) in self._tables else []) + [TABLE_LOCAL, TABLE_MAIN]
        for tid in tables:
            best = None
            for route in self.fib:
                if (route.family, route.table) != (4, tid) or gw not in route.dst:
                    continue
                if route.scope < SCOPE_LINK or (route.dev is not None and route.dev != dev):
                    continue
                if best is None or route.dst.prefixlen > best.dst.prefixlen or \
                        (route.dst.prefixlen == best.dst.prefixlen and route.metric < best.metric):
                    best = route
            if best is not None:
                if best.type not in (UNICAST, LOCAL):
                    raise _Fail(BAD_GATEWAY)
                return
        raise _Fail(BAD_GATEWAY)

    def _delete(self, request: _Request) -> None:
        """fib_table_delete / ip6_route_del: the first route of that prefix every given key matches."""
        if request.host_bits:
            raise _Fail(BAD_PREFIX)
        table = request.table or TABLE_MAIN
        if (request.family, table) not in self._tables:
            raise _Fail(NO_TABLE)
        for route in self._dump_order(request.family):
            if route.table != table or route.dst != request.dst:
                continue
            if request.type is not None and route.type != request.type:
                continue
            if request.protocol and route.protocol != request.protocol:
                continue
            if request.metric and route.metric != request.metric:
                continue
            if request.dev is not None and route.dev != request.dev:
                continue
            if request.gw is not None and route.gw != request.gw:
                continue
            self.fib.remove(route)
            return
        raise _Fail(ESRCH)

    # -- the Runner ------------------------------------------------------------

    def _read_json(self, args: list[str]) -> list:
        done = self.ip(*args, check=False)
        if done.returncode != 0:
            raise IpError(f"ip {' '.join(args)} failed: {done.stderr.strip().splitlines()[0]}")
        return json.loads(done.stdout) if done.stdout.strip() else []

    def read_links(self) -> list:
        return self._read_json(["-json", "addr", "show"])

    def read_routes(self, family: int, *, tagged: bool, dev: str | None = None, exact=None,
                    main_boot: bool = False, root=None, main_kernel: bool = False) -> list:
        return self._read_json(route_show_args(family, tagged=tagged, dev=dev, exact=exact, main_boot=main_boot,
                                               root=root, main_kernel=main_kernel))

    def read_addrs(self, dev: str) -> list:
        return self._read_json(["-json", "addr", "show", "dev", dev])

    def route_get(self, address) -> list:
        return self._read_json(["-json", "route", "get", str(address)])

    def change(self, change: Change) -> None:
        done = self.ip(*change_tokens(change), check=False)
        if done.returncode != 0:
            raise IpError(done.stderr.strip())

    def batch(self, changes: Sequence[Change]) -> list[Failure]:
        """One `ip -force -batch -`; each `Command failed -:N` goes back to the Nth change."""
        if not changes:
            return []
        text = "".join(" ".join(change_tokens(c)) + "\n" for c in changes)
        done = self.ip("-force", "-batch", "-", stdin=text, check=False)
        failures, message = [], []
        for line in done.stderr.splitlines():
            if line.startswith("Command failed -:"):
                failures.append(Failure(changes[int(line.rpartition(":")[2]) - 1], "; ".join(message)))
                message = []
            else:
                message.append(line)
        return failures


def _parse_route(verb: str, args: list[str], family: int | None) -> _Request:
    request = _Request(verb, family or 0)
    words = list(args)
    if words and words[0] in _TYPES:
        request.type = _TYPES[words.pop(0)]
    while words:
        word = words.pop(0)
        if word in ("via", "dev", "oif", "proto", "protocol", "metric", "priority", "preference", "table",
                    "exact", "root") and not words:
            raise Unsupported(f"{word} without its value")
        if word == "via":
            request.gw = ipaddress.ip_address(words.pop(0))
        elif word in ("dev", "oif"):
            request.dev = words.pop(0)
        elif word in ("proto", "protocol"):
            request.protocol = _number(words.pop(0), _PROTOS, "protocol")
        elif word in ("metric", "priority", "preference"):
            request.metric = int(words.pop(0))
        elif word == "table":
            value = words.pop(0)
            if value == "all" and verb == "show":
                request.all_tables = True
            else:
                request.table = _number(value, _TABLES, "table")
        elif word == "exact" and verb == "show":
            request.exact = _prefix(words.pop(0), request)
        elif word == "root" and verb == "show":
            request.root = _prefix(words.pop(0), request)
        elif word in _TYPES and verb == "show":
            raise Unsupported("route show type filters")
        elif request.dst is None and verb != "show":
            request.dst = _prefix(word, request)
        else:
            raise Unsupported(f"route {verb} argument {word}")
    request.family = request.family or 4
    return request


def _prefix(text: str, request: _Request):
    if text == "default":
        return ipaddress.ip_network("::/0" if request.family == 6 else "0.0.0.0/0")
    net = ipaddress.ip_network(text, strict=False)
    request.family = request.family or net.version
    if net.version != request.family:
        raise Unsupported("a prefix of the other family")
    if net.version == 4 and ipaddress.IPv4Address(text.partition("/")[0]) != net.network_address:
        request.host_bits = True
    return net


def _number(value: str, names: dict, what: str) -> int:
    if value.isdigit():
        return int(value)
    if value in names:
        return names[value]
    raise Unsupported(f"{what} name {value}")


def _dst_text(net) -> str:
    if net.prefixlen == 0:
        return "default"
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _link_row(link: _Link) -> dict:
    """One link of `ip -json addr show` (tun or loopback) as iproute2 6.1 prints it."""
    if link.loopback:
        row = {"ifindex": link.index, "ifname": link.name, "flags": ["LOOPBACK", "UP", "LOWER_UP"],
               "mtu": 65536, "qdisc": "noqueue", "operstate": "UNKNOWN", "group": "default", "txqlen": 1000,
               "link_type": "loopback", "address": "00:00:00:00:00:00", "broadcast": "00:00:00:00:00:00"}
    else:
        flags = ["NO-CARRIER", "POINTOPOINT", "MULTICAST", "NOARP", "UP"] if link.up else \
            ["POINTOPOINT", "MULTICAST", "NOARP"]
        row = {"ifindex": link.index, "ifname": link.name, "flags": flags, "mtu": 1500,
               "qdisc": "pfifo_fast" if link.up else "noop", "operstate": "DOWN", "group": "default",
               "txqlen": 500, "link_type": "none"}
    row["addr_info"] = [_addr_row(link, addr) for addr in link.addrs]
    return row


def _addr_row(link: _Link, addr: _Addr) -> dict:
    info: dict = {"family": "inet" if addr.family == 4 else "inet6", "local": str(addr.local)}
    if addr.peer is not None:
        info["address"] = str(addr.peer)
    info["prefixlen"] = addr.prefixlen
    info["scope"] = "host" if link.loopback else "global"
    if addr.family == 4:
        info["label"] = link.name
    info["valid_life_time"] = _FOREVER
    info["preferred_life_time"] = _FOREVER
    return info


def _json(rows: list) -> str:
    return json.dumps(rows, separators=(",", ":")) + "\n"
