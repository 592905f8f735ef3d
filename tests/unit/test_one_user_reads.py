"""Issue 16: a command about one user reads only what concerns that user.

The in-memory kernel records every read. `add`, `del`, `apply --peer` and `status --peer`
must never dump every link or every route, and must make exactly the same reads whether the
server has 3 sessions or 60: their cost does not grow with the number of users (the bench
measures the time; this proves the reads). The whole-server commands still read everything.
"""

from __future__ import annotations

from support.memkernel import MemKernel
from support.scenarios import PEER1, World

EXTRA_BASE = 20  # extra sessions: ppp20.., peers 10.255.11.x, each with 5 stored and installed routes


class CountingKernel(MemKernel):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple] = []

    def read_links(self) -> list:
        self.reads.append(("addr show",))
        return super().read_links()

    def read_addrs(self, dev: str) -> list:
        self.reads.append(("addr show dev",))
        return super().read_addrs(dev)

    def route_get(self, address) -> list:
        self.reads.append(("route get",))
        return super().route_get(address)

    def read_routes(self, family: int, **kwargs) -> list:
        self.reads.append(("route show", family, tuple(sorted(k for k, v in kwargs.items() if v not in (None, False)))))
        return super().read_routes(family, **kwargs)


def _world(tmp_path, sessions: int) -> World:
    w = World(CountingKernel(), tmp_path / "routes.d")
    w.store_dir.mkdir(parents=True)
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_lan("eth1", "192.168.50.1/24")
    w.write(PEER1, b"10.1.0.0/24 via 10.255.10.1\n10.1.1.0/24 via 10.255.10.1\n")
    for i in range(sessions):
        peer = f"10.255.11.{i + 1}"
        w.kernel.add_ppp(f"ppp{EXTRA_BASE + i}", peer)
        w.write(peer, "".join(f"10.{100 + i}.{j}.0/24 via {peer}\n" for j in range(5)).encode())
    assert w.apply("all").ok
    w.kernel.reads.clear()
    return w


def _commands(w: World) -> dict:
    """Each single-user command once, in an order that leaves the world as it was; the reads of each."""
    reads = {}
    for name, call in (("add", lambda: w.add("add", PEER1, "10.1.2.0/24")),
                       ("apply --peer", lambda: w.apply("apply", PEER1)),
                       ("status --peer", lambda: w.status("status", PEER1)),
                       ("del", lambda: w.delete("del", PEER1, "10.1.2.0/24")),
                       ("add offline", lambda: w.add("add3", "10.255.10.3", "10.1.3.0/24")),
                       ("apply --peer offline", lambda: w.apply("apply3", "10.255.10.3")),
                       ("status --peer offline", lambda: w.status("status3", "10.255.10.3")),
                       ("del offline", lambda: w.delete("del3", "10.255.10.3", "10.1.3.0/24"))):
        w.kernel.reads.clear()
        outcome = call()
        assert outcome.ok, (name, outcome)
        reads[name] = list(w.kernel.reads)
    return reads


def test_single_user_commands_make_the_same_reads_with_3_or_60_sessions(tmp_path):
    few = _commands(_world(tmp_path / "few", 3))
    many = _commands(_world(tmp_path / "many", 60))
    assert few == many
    for name, reads in many.items():
        assert ("addr show",) not in reads, name  # never every link
        for read in reads:
            if read[0] == "route show":
                # every route read is narrowed to a link or a destination, never a dump
                assert {"dev", "exact", "root"} & set(read[2]), (name, read)


def test_single_user_commands_do_what_they_did(tmp_path):
    w = _world(tmp_path, 3)
    assert w.add("a", PEER1, "10.1.2.0/24").value.status == "added"
    assert ("10.1.2.0/24", PEER1, "ppp0", "main") in w.tagged()
    report = w.status("s", PEER1).value
    assert [r.state for r in report.peers[0].routes] == ["installed"] * 3
    assert w.delete("d", PEER1, "10.1.2.0/24").value.kernel_removed == ["10.1.2.0/24 dev ppp0"]
    assert ("10.1.2.0/24", PEER1, "ppp0", "main") not in w.tagged()
    # A tagged route on the peer's link that no line wants is removed by apply --peer, and only there.
    w.kernel.ip("route", "add", "10.1.9.0/24", "via", PEER1, "dev", "ppp0", "proto", "157")
    w.kernel.ip("route", "add", "10.1.8.0/24", "via", "10.255.11.1", "dev", "ppp20", "proto", "157")
    assert [r.state for r in w.status("s2", PEER1).value.peers[0].routes][-1] == "extra"
    applied = w.apply("p", PEER1).value
    assert [r.text for r in applied.removed] == ["10.1.9.0/24 dev ppp0"]
    assert ("10.1.8.0/24", "10.255.11.1", "ppp20", "main") in w.tagged()


def test_apply_peer_takes_its_slot_over_from_our_route_on_another_link(tmp_path):
    """As a full apply would: our route in the slot, on another link, is replaced (update)."""
    w = _world(tmp_path, 1)
    w.kernel.ip("route", "del", "10.1.0.0/24", "proto", "157")
    w.kernel.ip("route", "add", "10.1.0.0/24", "via", "10.255.11.1", "dev", "ppp20", "proto", "157")
    assert "the kernel has it as 10.1.0.0/24 via 10.255.11.1 dev ppp20" in \
        w.status("s", PEER1).value.peers[0].routes[0].detail
    report = w.apply("p", PEER1).value
    assert [r.line for r in report.updated] == ["10.1.0.0/24 via 10.255.10.1"]
    assert ("10.1.0.0/24", PEER1, "ppp0", "main") in w.tagged()


def test_a_peer_address_routed_elsewhere_is_not_connected(tmp_path):
    """The kernel's lookup names a link; only a link whose address has exactly this peer counts."""
    w = _world(tmp_path, 1)
    w.kernel.add_ppp("ppp5", "10.255.10.5")
    w.kernel.ip("addr", "add", "10.254.0.9", "peer", "10.255.10.4", "dev", "ppp5")
    w.kernel.ip("route", "add", "10.255.10.6/32", "via", "10.255.10.5", "dev", "ppp5", "proto", "static")
    assert w.status("s", "10.255.10.6").value.peers[0].link is None  # routed via ppp5, not its peer
    assert w.status("s4", "10.255.10.4").value.peers[0].link == "ppp5"  # its second address's peer
    assert w.status("s5", "10.255.10.5").value.peers[0].link == "ppp5"


def test_server_networks_are_refused_through_the_narrow_read(tmp_path):
    w = _world(tmp_path, 2)
    refused = w.add("lan", PEER1, "192.168.0.0/16")
    assert refused.error.startswith("Refused: refusing 192.168.0.0/16: it covers 192.168.50.0/24, a network on a link")
    # A wide destination covers peers' host routes: those are sessions, not server networks.
    assert w.add("wide", PEER1, "10.255.0.0/16").ok


def test_apply_peer_leaves_a_live_openvpn_sessions_route_alone(tmp_path, monkeypatch):
    """As the full apply: a route of a recorded OpenVPN session holds its slot, first come wins."""
    from l2tproute.core.model import parse_peer
    from l2tproute.transports.openvpn.sessions import Session, SessionRecords

    w = _world(tmp_path, 1)
    w.kernel.add_lan("tun0", "10.8.0.1/24")
    w.kernel.ip("route", "del", "10.1.0.0/24", "proto", "157")
    w.kernel.ip("route", "add", "10.1.0.0/24", "via", "10.8.0.6", "dev", "tun0", "proto", "157")
    SessionRecords(str(w.run_dir)).write(Session("tun0", parse_peer("10.8.0.6"), parse_peer("10.255.11.1")))
    report = w.apply("p", PEER1).value
    assert [r.line for r in report.blocked] == ["10.1.0.0/24 via 10.255.10.1"] and report.updated == []
    assert ("10.1.0.0/24", "10.8.0.6", "tun0", "main") in w.tagged()


def test_status_peer_says_for_each_peer_what_the_full_status_says(tmp_path, monkeypatch):
    """Per peer, the narrow reads give the same entry as the whole-server status: connected on
    ppp, on OpenVPN only, offline, with drift of each kind on its link."""
    from l2tproute.core.model import parse_peer
    from l2tproute.transports.openvpn.sessions import Session, SessionRecords

    w = _world(tmp_path, 3)
    vpn_user = "10.255.11.9"
    w.write(vpn_user, b"10.9.0.0/24 via 10.255.11.9\n10.9.1.0/24 via 10.255.11.9\n")
    w.write("10.255.10.3", b"10.3.0.0/24 via 10.255.10.3\n")  # offline
    w.kernel.add_lan("tun0", "10.8.0.1/24")
    w.kernel.ip("route", "add", "10.9.0.0/24", "via", "10.8.0.6", "dev", "tun0", "proto", "157")
    SessionRecords(str(w.run_dir)).write(Session("tun0", parse_peer("10.8.0.6"), parse_peer(vpn_user)))
    w.kernel.ip("route", "add", "10.1.9.0/24", "via", PEER1, "dev", "ppp0", "proto", "157")  # extra
    w.kernel.ip("route", "del", "10.1.1.0/24", "proto", "157")  # missing
    w.kernel.ip("route", "add", "10.1.1.0/24", "via", "192.168.50.7", "dev", "eth1", "proto", "static")  # blocked
    # (A route of ours that another peer's line claims first is not compared here: the full status
    # counts it as that peer's, `status --peer` as extra on its link, as `apply --peer` removes it.)
    # What each peer's entry must say, written out here (not taken from either status).
    users = {f"10.255.11.{i + 1}": (f"ppp{EXTRA_BASE + i}", False, {
        f"10.{100 + i}.{j}.0/24 via 10.255.11.{i + 1}": "installed" for j in range(5)}) for i in range(3)}
    expected = {
        PEER1: ("ppp0", False, {"10.1.0.0/24 via 10.255.10.1": "installed", "10.1.1.0/24 via 10.255.10.1": "blocked",
                                "10.1.9.0/24 via 10.255.10.1 dev ppp0": "extra"}),
        "10.255.10.3": (None, False, {"10.3.0.0/24 via 10.255.10.3": "wanted"}),
        vpn_user: (None, True, {"10.9.0.0/24 via 10.255.11.9": "installed", "10.9.1.0/24 via 10.255.11.9": "missing"}),
        **users}

    def said(entry) -> tuple:
        return entry.link, bool(entry.shared), {r.route: r.state for r in entry.routes}

    full = {str(entry.peer): entry for entry in w.status("all").value.peers}
    assert {peer: said(entry) for peer, entry in full.items()} == expected
    for peer, entry in full.items():
        narrow = w.status(f"s{peer}", peer).value.peers
        assert narrow == [entry], peer
    assert full[vpn_user].shared and full[vpn_user].link is None
