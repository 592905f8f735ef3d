"""The kernel a scenario runs against, set up and read back through `ip` commands only.

Two implementations answer the same commands: MemKernel (in memory, for tests/unit) and
NetnsKernel (the real `ip -n NS`, for tests/netns). A scenario written against KernelSetup runs
on either, so tests/netns/test_memkernel_parity.py can hold the fake to the real kernel.
"""

from __future__ import annotations

import json
import subprocess

from l2tproute.core import constants as C
from l2tproute.system.iproute2 import IpRoute2, Runner


class KernelSetup:
    """Links and foreign routes as tests/conftest.py's Netns makes them, and the state read back."""

    def ip(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        raise NotImplementedError

    @property
    def runner(self) -> Runner:
        raise NotImplementedError

    def add_ppp(self, ifname: str, peer: str, local: str = "10.254.0.1") -> None:
        """A pppd session: a tun device with `LOCAL peer PEER`, as on the L2TP server."""
        self.ip("tuntap", "add", "dev", ifname, "mode", "tun")
        self.ip("addr", "add", local, "peer", peer, "dev", ifname)
        self.ip("link", "set", ifname, "up")

    def add_lan(self, ifname: str, cidr: str) -> None:
        """A non-PPP link of the server (LAN or uplink) with a connected network."""
        self.ip("tuntap", "add", "dev", ifname, "mode", "tun")
        self.ip("addr", "add", cidr, "dev", ifname)
        self.ip("link", "set", ifname, "up")

    def del_link(self, ifname: str) -> None:
        self.ip("link", "del", ifname)

    def add_foreign(self, dst: str, *, via: str | None = None, dev: str | None = None, proto: str = "boot",
                    kind: str | None = None, table: str | None = None, metric: int | None = None) -> None:
        """A route somebody else installed (the old tool: proto boot; an admin: static; a blackhole)."""
        args = ["route", "add"] + ([kind] if kind else []) + [dst]
        args += (["via", via] if via else []) + (["dev", dev] if dev else []) + ["proto", proto]
        args += (["table", table] if table else []) + (["metric", str(metric)] if metric is not None else [])
        self.ip(*args)

    def routes(self, family: int = 4, *extra: str) -> list:
        """`ip -j -N route show table all`, without the local table (as Netns.routes)."""
        rows = json.loads(self.ip(f"-{family}", "-j", "-N", "route", "show", "table", "all", *extra).stdout or "[]")
        return [r for r in rows if r.get("table") != "255"]

    def tagged_set(self, family: int = 4) -> set:
        """Our routes as (dst, gateway, dev, table)."""
        return {(r["dst"], r.get("gateway"), r["dev"], r.get("table", "main"))
                for r in self.routes(family, "proto", str(C.RT_PROTO))}

    def state(self) -> dict:
        """Everything a scenario can change: every route of both families in dump order, every table
        (local included), and the links as the library reads them (no qdisc: a host setting)."""
        links = json.loads(self.ip("-json", "addr", "show").stdout)
        keep = ("ifindex", "ifname", "flags", "link_type", "addr_info")
        return {
            "routes4": json.loads(self.ip("-4", "-j", "-N", "route", "show", "table", "all").stdout),
            "routes6": json.loads(self.ip("-6", "-j", "-N", "route", "show", "table", "all").stdout),
            "links": [{k: row[k] for k in keep if k in row} for row in links],
        }


class NetnsKernel(KernelSetup):
    """A namespace somebody else created and removes (tests/conftest.py's netns fixture), driven
    by the real `ip -n NAME`; the library reaches it through its own runner, IpRoute2."""

    def __init__(self, name: str):
        self.name = name
        self._runner = IpRoute2(name)

    @property
    def runner(self) -> Runner:
        return self._runner

    def ip(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "-n", self.name, *args], input=stdin, capture_output=True, text=True,
                              check=check, env={"LC_ALL": "C", "PATH": "/usr/sbin:/sbin:/usr/bin:/bin"})
