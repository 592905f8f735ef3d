"""Scenarios of the library's operations, written once, run on any KernelSetup.

tests/unit runs them on MemKernel and asserts what each proves; tests/netns/test_memkernel_parity.py
runs each on MemKernel and on a real namespace and wants the same steps, kernel and files.

The topology every scenario starts from (only what it needs is brought up):

    ppp0 10.254.0.1 peer 10.255.10.1 (PEER1)      ppp1 10.254.0.1 peer 10.255.10.2 (PEER2)
    eth1 192.168.50.1/24 (the server's LAN)       PEER3 10.255.10.3: offline until a scenario connects it

World is the one place that calls the library: when an operation's signature changes, only
World changes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from l2tproute import transports
from l2tproute.core import constants as C
from l2tproute.core.model import (
    Change,
    InputError,
    KernelRoute,
    make_route,
    parse_destination,
    parse_device,
    parse_gateway,
    parse_peer,
)
from l2tproute.ops import adding, applying, deleting, status
from l2tproute.system.iproute2 import IpError
from l2tproute.system.store import Store, StoreError
from l2tproute.transports.openvpn.sessions import Session, SessionRecords

from .kernels import KernelSetup

PEER1, PEER2, PEER3 = "10.255.10.1", "10.255.10.2", "10.255.10.3"
LOCAL = "10.254.0.1"


@dataclass(frozen=True)
class Outcome:
    """What one operation returned, or the error it raised, and what it warned."""

    value: object = None
    error: str | None = None
    warnings: tuple = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class World:
    kernel: KernelSetup
    store_dir: Path
    steps: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = Store(str(self.store_dir))
        # The world's own run dir (OpenVPN's session records), never the machine's /run/l2tproute.
        self.run_dir = self.store_dir.with_name(self.store_dir.name + ".run")

    @classmethod
    def in_memory(cls, tmp_path: Path) -> World:
        from .memkernel import MemKernel

        directory = tmp_path / "routes.d"
        directory.mkdir()
        return cls(MemKernel(), directory)

    # -- the operations ------------------------------------------------------

    def _run(self, name: str, call, force: bool = False) -> Outcome:
        ctx = transports.context(self.store, self.kernel.runner, force=force, lock_timeout=5, run_dir=str(self.run_dir))
        try:
            outcome = Outcome(value=call(ctx))
        except (InputError, IpError, StoreError) as exc:
            outcome = Outcome(error=f"{type(exc).__name__}: {self._neutral(str(exc))}")
        outcome = Outcome(outcome.value, outcome.error, tuple(self._neutral(w) for w in ctx.warnings))
        self.steps[name] = outcome
        return outcome

    def _neutral(self, text: str) -> str:
        """Messages name the store; each world has its own."""
        return text.replace(str(self.store_dir), "STORE")

    def add(self, name: str, peer: str, dst: str, *, gw: str | None = None, dev: str | None = None,
            force: bool = False) -> Outcome:
        p = parse_peer(peer)
        route = make_route(p, parse_destination(dst), parse_gateway(gw) if gw else None,
                           parse_device(dev) if dev else None)
        return self._run(name, lambda ctx: adding.add(ctx, p, route), force)

    def delete(self, name: str, peer: str, dst: str) -> Outcome:
        target = deleting.ALL if dst == "all" else parse_destination(dst)
        return self._run(name, lambda ctx: deleting.delete(ctx, parse_peer(peer), target))

    def apply(self, name: str, peer: str | None = None, *, force: bool = False) -> Outcome:
        scope = parse_peer(peer) if peer else None
        return self._run(name, lambda ctx: applying.apply(ctx, scope), force)

    def status(self, name: str, peer: str | None = None) -> Outcome:
        scope = parse_peer(peer) if peer else None
        return self._run(name, lambda ctx: status.status(ctx, scope))

    # -- the store and the kernel ------------------------------------------------

    def write(self, peer: str, data: bytes) -> None:
        """A route file as an admin (or the old tool) left it."""
        (self.store_dir / f"{peer}{C.ROUTE_FILE_SUFFIX}").write_bytes(data)

    def file(self, peer: str) -> bytes | None:
        path = self.store_dir / f"{peer}{C.ROUTE_FILE_SUFFIX}"
        return path.read_bytes() if path.exists() else None

    def files(self) -> dict:
        return {p.name: p.read_bytes() for p in sorted(self.store_dir.glob(f"*{C.ROUTE_FILE_SUFFIX}"))}

    def snap(self, name: str) -> dict:
        """The kernel's whole state, kept as a step (the parity test compares it too)."""
        self.steps[name] = self.kernel.state()
        return self.steps[name]

    def tagged(self, family: int = 4) -> set:
        return self.kernel.tagged_set(family)

    def openvpn_session(self, tun: str, address: str, peer: str, address6: str | None = None) -> None:
        """The record the root worker writes once OpenVPN listed the client, in the world's namespace."""
        SessionRecords(str(self.run_dir), netns=getattr(self.kernel.runner, "netns", None)).write(Session(
            tun, parse_peer(address), parse_peer(peer), ipaddress.IPv6Address(address6) if address6 else None))


def tagged_route(dst: str, gw: str | None, dev: str) -> KernelRoute:
    net = parse_destination(dst)
    return KernelRoute(dst=net, dev=dev, gw=parse_gateway(gw) if gw else None)


# -- add ---------------------------------------------------------------------------

def add_installs_on_the_peers_link(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_ppp("ppp1", PEER2)
    w.add("add", PEER1, "10.1.0.0/24")
    w.add("add6", PEER2, "2001:db8:1::/48")


def repeat_add_changes_nothing(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.add("first", PEER1, "10.1.0.0/24")
    w.snap("after_first")
    w.add("again", PEER1, "10.1.0.0/24")
    w.snap("after_again")


def foreign_route_refused_unless_force(w: World) -> None:
    w.kernel.add_lan("eth1", "192.168.50.1/24")
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_foreign("10.9.0.0/24", via="192.168.50.7", dev="eth1", proto="static")
    w.kernel.add_foreign("10.8.0.0/24", via=PEER1, dev="ppp0")  # the old tool's: proto boot
    w.snap("before")
    w.add("static", PEER1, "10.9.0.0/24")
    w.add("boot", PEER1, "10.8.0.0/24")
    w.add("offline", PEER3, "10.9.0.0/24")  # no link yet: the library looks for the holder itself
    w.snap("after_refusals")
    w.add("forced", PEER1, "10.9.0.0/24", force=True)


def two_peers_same_destination_refused(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_ppp("ppp1", PEER2)
    w.add("first", PEER1, "10.1.0.0/24")
    w.add("second", PEER2, "10.1.0.0/24")
    w.add("second_offline_owner", PEER3, "10.1.0.0/24")


def unreachable_gateway_and_missing_device_refused(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.add("bad_gateway", PEER1, "10.5.0.0/24", gw="10.9.9.9")
    w.add("missing_device", PEER1, "10.6.0.0/24", dev="ppp9")


# -- del ---------------------------------------------------------------------------

def del_is_exact(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.add("add_24", PEER1, "10.0.0.0/24")
    w.add("add_16", PEER1, "10.0.0.0/16")
    w.add("add_8", PEER1, "10.0.0.0/8")
    w.delete("del_16", PEER1, "10.0.0.0/16")
    w.delete("del_absent", PEER1, "10.0.0.0/12")


def del_all_takes_every_route_and_the_file(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_ppp("ppp1", PEER2)
    w.write(PEER1, b"10.1.0.0/24 via 10.255.10.1\nnot a route\n10.2.0.0/24 via 10.255.10.1 metric 5\n")
    w.write(PEER2, b"10.3.0.0/24 via 10.255.10.2\n")
    w.apply("apply")
    w.delete("del_all", PEER1, "all")


def del_of_a_route_gone_from_the_kernel(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.add("add", PEER1, "10.7.0.0/24")
    w.kernel.ip("route", "del", "10.7.0.0/24", "proto", str(C.RT_PROTO))
    w.delete("del", PEER1, "10.7.0.0/24")
    w.delete("del_all_without_file", PEER2, "all")


# -- apply -------------------------------------------------------------------------

def apply_reconciles_then_changes_nothing(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_ppp("ppp1", PEER2)
    w.write(PEER1, b"10.1.0.0/24 via 10.255.10.1\n10.2.0.0/24 via 10.255.10.1 dev ppp0\n")
    w.write(PEER2, b"10.3.0.0/24 via 10.255.10.2\n2001:db8:3::/48 via 10.255.10.2\n")
    w.apply("first")
    w.snap("after_first")
    w.apply("second")
    w.snap("after_second")


def stale_tagged_route_removed(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.write(PEER1, b"10.1.0.0/24 via 10.255.10.1\n")
    w.kernel.add_foreign("10.50.0.0/24", via=PEER1, dev="ppp0", proto=str(C.RT_PROTO))  # ours, wanted by nobody
    w.kernel.add_foreign("10.51.0.0/24", via=PEER1, dev="ppp0", proto="static")  # not ours
    w.apply("apply")


def apply_peer_leaves_other_links(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_ppp("ppp1", PEER2)
    w.write(PEER1, b"10.1.0.0/24 via 10.255.10.1\n")
    w.write(PEER2, b"10.2.0.0/24 via 10.255.10.2\n")
    w.kernel.add_foreign("10.52.0.0/24", via=PEER2, dev="ppp1", proto=str(C.RT_PROTO))
    w.apply("peer1", PEER1)
    w.snap("after_peer1")
    w.apply("all")


def offline_peer(w: World) -> None:
    w.add("add", PEER3, "10.3.0.0/24")
    w.apply("apply_peer", PEER3)
    w.apply("apply_all")
    w.snap("while_offline")
    w.kernel.add_ppp("ppp2", PEER3)
    w.apply("connected", PEER3)


BROKEN = (b"# written by hand\n"
          b"\n"
          b"10.1.0.0/24 via 10.255.10.1\r\n"
          b"this is not a route\n"
          b"10.2.0.5/24 via 10.255.10.1\n"
          b"10.3.0.0/24 via 10.255.10.1   \n"
          b"10.4.0.0/24 via 10.255.10.1\n")


def broken_lines_skipped(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.write(PEER1, BROKEN)
    w.apply("apply")
    w.delete("del", PEER1, "10.4.0.0/24")


def link_name_reuse(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.write(PEER1, b"10.1.0.0/24 via 10.255.10.1\n")
    w.write(PEER2, b"10.2.0.0/24 via 10.255.10.2\n")
    w.apply("first")
    w.kernel.del_link("ppp0")  # PEER1 hangs up; PEER2 dials in and pppd hands out ppp0 again
    w.kernel.add_ppp("ppp0", PEER2)
    w.snap("reused")
    w.apply("second")


def apply_in_other_tables_and_metrics(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.write(PEER1, b"10.1.0.0/24 via 10.255.10.1\n"
                   b"10.1.0.0/24 via 10.255.10.1 metric 5\n"
                   b"10.1.0.0/24 via 10.255.10.1 table 100\n"
                   b"2001:db8:1::/48 via 10.255.10.1 metric 7 table 100\n")
    w.apply("first")
    w.write(PEER1, b"10.1.0.0/24 via 10.255.10.1 metric 6\n"
                   b"10.1.0.0/24 via 10.255.10.1 table 100\n")
    w.apply("second")
    w.status("status")


def same_peer_on_two_links(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_ppp("ppp1", PEER1)  # a stale session not yet torn down
    w.write(PEER1, b"10.1.0.0/24 via 10.255.10.1\n")
    w.apply("apply")


def apply_failures_mapped_back(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_foreign("10.64.0.0/24", via=PEER1, dev="ppp0", proto="static")
    w.write(PEER1, b"10.60.0.0/24 via 10.255.10.1\n"
                   b"10.61.0.0/24 via 10.9.9.9\n"            # gateway not on ppp0
                   b"10.62.0.0/24 via 10.255.10.1 dev ppp9\n"  # no such link
                   b"10.64.0.0/24 via 10.255.10.1\n"           # held by a proto static route
                   b"10.63.0.0/24 via 10.255.10.1\n")
    w.apply("apply")
    w.apply("forced", force=True)


# -- status ------------------------------------------------------------------------

def status_reports_drift(w: World) -> None:
    w.kernel.add_ppp("ppp0", PEER1)
    w.write(PEER1, b"10.20.0.0/24 via 10.255.10.1\n10.21.0.0/24 via 10.255.10.1\n"
                   b"10.22.0.0/24 via 10.255.10.1\n10.23.0.0/24 via 10.255.10.1\n")
    w.write(PEER3, b"10.90.0.0/24 via 10.255.10.3\n")
    w.kernel.add_foreign("10.22.0.0/24", via=PEER1, dev="ppp0", proto="static")
    w.kernel.add_foreign("10.23.0.0/24", kind="blackhole")
    w.apply("apply")
    w.status("clean")
    w.kernel.ip("route", "del", "10.21.0.0/24", "proto", str(C.RT_PROTO))
    w.kernel.add_foreign("10.99.0.0/16", dev="ppp0", proto=str(C.RT_PROTO))
    w.status("drift")
    w.status("peer", PEER3)


# -- the runner itself -------------------------------------------------------------

def runner_errors(w: World) -> None:
    """The kernel's refusals as the library's runner reports them, one by one and in one batch."""
    w.kernel.add_ppp("ppp0", PEER1)
    ok = tagged_route("10.1.0.0/24", PEER1, "ppp0")
    cases = {
        "add": Change("add", ok),
        "add_taken": Change("add", ok),
        "replace_taken": Change("replace", ok),
        "del_missing": Change("del", tagged_route("10.2.0.0/24", PEER1, "ppp0")),
        "bad_gateway": Change("add", tagged_route("10.3.0.0/24", "10.9.9.9", "ppp0")),
        "no_device": Change("add", tagged_route("10.4.0.0/24", PEER1, "ppp9")),
        "del": Change("del", ok),
    }
    for name, change in cases.items():
        try:
            w.kernel.runner.change(change)
            w.steps[name] = Outcome()
        except IpError as exc:
            w.steps[name] = Outcome(error=str(exc))
    batch = [cases["add"], cases["add_taken"], cases["del_missing"], cases["bad_gateway"], cases["no_device"],
             Change("replace", tagged_route("10.5.0.0/24", PEER1, "ppp0"))]
    failures = w.kernel.runner.batch(batch)
    w.steps["batch"] = [(next(i for i, c in enumerate(batch) if c is f.change), f.message) for f in failures]
    w.snap("after")


# -- OpenVPN ------------------------------------------------------------------------

def openvpn_session_follows_the_user(w: World) -> None:
    """PEER1 only over OpenVPN (tun0, client 10.10.30.2), PEER2 over both VPNs (L2TP first); the
    timer's apply, one user's add, del and apply --peer, and a session's route lost. IPv6 over
    OpenVPN is the real server's (tests/system/test_openvpn_connect.py): MemKernel has no IPv6 addresses."""
    w.kernel.add_lan("tun0", "10.10.30.1/24")
    w.kernel.add_ppp("ppp1", PEER2)
    w.write(PEER1, b"10.1.0.0/24 via 10.255.10.1\n10.2.0.0/24 via 10.255.10.1 metric 5\n"
                   b"2001:db8:1::/48 via 10.255.10.1\n10.9.0.0/24 via 10.255.10.1 dev eth1\n")
    w.write(PEER2, b"10.3.0.0/24 via 10.255.10.2\n")
    w.openvpn_session("tun0", "10.10.30.2", PEER1)
    w.openvpn_session("tun0", "10.10.30.3", PEER2)
    w.kernel.add_foreign("10.8.0.0/24", via="10.10.30.2", dev="tun0", proto=str(C.RT_PROTO))  # no line wants it
    w.apply("apply")
    w.snap("after_apply")
    w.apply("again")
    w.add("add", PEER1, "10.4.0.0/24")
    w.delete("del", PEER1, "10.1.0.0/24")
    w.kernel.ip("route", "del", "10.2.0.0/24", "via", "10.10.30.2", "dev", "tun0", "metric", "5")
    w.apply("apply_peer", PEER1)
    w.status("status", PEER1)


SCENARIOS = [
    add_installs_on_the_peers_link, repeat_add_changes_nothing, foreign_route_refused_unless_force,
    two_peers_same_destination_refused, unreachable_gateway_and_missing_device_refused, del_is_exact,
    del_all_takes_every_route_and_the_file, del_of_a_route_gone_from_the_kernel,
    apply_reconciles_then_changes_nothing, stale_tagged_route_removed, apply_peer_leaves_other_links, offline_peer,
    broken_lines_skipped, link_name_reuse, apply_in_other_tables_and_metrics, same_peer_on_two_links,
    apply_failures_mapped_back, status_reports_drift, runner_errors, openvpn_session_follows_the_user,
]
