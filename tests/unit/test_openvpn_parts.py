"""OpenVPN's parts that need no server: the spool names, the iroute text, `status 3`, the
tun check and the session records (tests/system/test_openvpn.py runs the real server)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from l2tproute.core.carrier import Carrier, carried_route, newest, not_carried_why
from l2tproute.core.kernel import Links
from l2tproute.core.model import InputError, Route
from l2tproute.system.spool import VPN_DOWN, VPN_UP, Spool, parse_vpn_name
from l2tproute.transports.openvpn import iroutes
from l2tproute.transports.openvpn import management as vpnmanagement
from l2tproute.transports.openvpn import sessions as vpnsessions
from l2tproute.transports.openvpn import sync as openvpn
from l2tproute.transports.openvpn.carrier import OpenVpnTransport, carrier

A = ipaddress.IPv4Address
#: The namespace field every spooled name begins with (tests/unit/test_spool_grammar.py has its own cases).
NS = "4-4026531840,"


def test_vpn_names_parse_and_anything_else_is_refused():
    up = parse_vpn_name(NS + "tun0,1796025175673307835,vpn-up,10.10.30.2,10.255.10.1")
    assert (up.tun, up.direction, up.address, up.peer) == ("tun0", VPN_UP, A("10.10.30.2"), A("10.255.10.1"))
    down = parse_vpn_name(NS + "tun0,17,vpn-down,10.10.30.2")
    assert (down.direction, down.address, down.peer) == (VPN_DOWN, A("10.10.30.2"), None)
    assert up.address6 is None
    six = parse_vpn_name(NS + "tun0,17,vpn-up,10.10.30.2,10.255.10.1,fd00:10:30::1000")
    assert (six.address, six.address6) == (A("10.10.30.2"), ipaddress.IPv6Address("fd00:10:30::1000"))
    for name in ["tun0,1,vpn-down,10.10.30.2"] + [NS + name for name in [
                 "tun0,1,vpn-up,10.10.30.2", "tun0,1,vpn-down,10.10.30.2,10.255.10.1",
                 "tun0,1,vpn-up,10.10.30.2,10.255.10.1;x", "../x,1,vpn-down,10.10.30.2",
                 "tun0,1,vpn-up,1.2.3,10.255.10.1",
                 "tun0,1,vpn-up,10.10.30.2,0.0.0.0", "tun0,x,vpn-down,10.10.30.2", "a" * 16 + ",1,vpn-down,10.10.30.2",
                 # the IPv6 pool address: unicast, routable, canonical, and only on vpn-up
                 "tun0,1,vpn-up,10.10.30.2,10.255.10.1,fe80::1", "tun0,1,vpn-up,10.10.30.2,10.255.10.1,ff02::1",
                 "tun0,1,vpn-up,10.10.30.2,10.255.10.1,fd00::0:1", "tun0,1,vpn-up,10.10.30.2,10.255.10.1,::1",
                 "tun0,1,vpn-up,10.10.30.2,10.255.10.1,FD00::1", "tun0,1,vpn-up,10.10.30.2,10.255.10.1,",
                 "tun0,1,vpn-down,10.10.30.2,fd00::1"]]:
        with pytest.raises(InputError):
            parse_vpn_name(name)


def test_the_spool_sorts_vpn_events_by_time_and_removes_broken_ones(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    down, up, bad, link = (NS + name for name in ["tun0,20,vpn-down,10.10.30.2",
                                                  "tun0,10,vpn-up,10.10.30.2,10.255.10.1", "tun0,5,vpn-up,bad",
                                                  "ppp0,1,up,10.255.10.3"])
    for name in [down, up, bad, link]:
        (spool / name).touch()
    pending = Spool(str(tmp_path)).pending()
    assert [e.name for e in pending.vpn] == [up, down]
    assert [e.name for e in pending.events] == [link]
    assert len(pending.rejected) == 1 and not (spool / bad).exists()


def test_iroutes_are_network_and_dotted_mask_and_only_plain_ipv4_lines():
    gw = A("10.255.10.1")
    net = ipaddress.ip_network
    routes = [Route(net("192.168.20.0/24"), gw), Route(net("10.1.0.0/16"), gw, dev="eth1"),
              Route(net("2001:db8::/64"), gw), Route(net("172.16.4.0/22"), gw, metric=5)]
    assert iroutes.iroute_lines(routes) == ["iroute 192.168.20.0 255.255.255.0", "iroute 172.16.4.0 255.255.252.0"]


STATUS = ("TITLE\tOpenVPN 2.6.14\r\nTIME\tx\t1\r\nHEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\t"
          "Virtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\t"
          "Client ID\tPeer ID\tData Channel Cipher\r\n"
          "CLIENT_LIST\tuser1\t172.31.1.2:4\t10.10.30.2\t\t1\t2\tx\t1\tuser1\t0\t0\tAES-256-GCM\r\n"
          "CLIENT_LIST\tcn\t172.31.2.2:5\t\t\t1\t2\tx\t1\tUNDEF\t1\t1\tAES-256-GCM\r\nEND\r\n")


def test_status_3_gives_each_client_its_user_and_address():
    assert vpnmanagement.parse_status(STATUS) == [vpnmanagement.VpnClient("user1", A("10.10.30.2")),
                                                  vpnmanagement.VpnClient("cn", None)]


TUN = {"ifname": "tun0", "link_type": "none",
       "addr_info": [{"family": "inet", "local": "10.10.30.1", "prefixlen": 24}]}
PPP = {"ifname": "ppp0", "link_type": "none",
       "addr_info": [{"family": "inet", "local": "10.254.0.1", "address": "10.255.10.1", "prefixlen": 32}]}
VETH = {"ifname": "eth0", "link_type": "ether",
        "addr_info": [{"family": "inet", "local": "10.10.30.1", "prefixlen": 24}]}


@pytest.mark.parametrize("tun,address,ok", [
    ("tun0", "10.10.30.2", True), ("tun0", "10.10.30.1", False), ("tun0", "10.10.30.0", False),
    ("tun0", "10.10.30.255", False), ("tun0", "10.10.31.2", False), ("ppp0", "10.255.10.1", False),
    ("eth0", "10.10.30.2", False), ("tun9", "10.10.30.2", False)])
def test_only_a_client_address_in_the_tun_subnet_passes(tun, address, ok):
    assert (openvpn.tun_problem([TUN, PPP, VETH], tun, A(address)) is None) is ok


def test_session_records_round_trip_and_broken_ones_are_no_session(tmp_path):
    records = vpnsessions.SessionRecords(str(tmp_path))
    assert records.all() == []
    records.write(vpnsessions.Session("tun0", A("10.10.30.2"), A("10.255.10.1")))
    (Path(records.directory) / "tun0,10.10.30.3").write_text("not an address\n")
    assert records.all() == [vpnsessions.Session("tun0", A("10.10.30.2"), A("10.255.10.1"))]
    assert vpnsessions.live_next_hops(str(tmp_path), {"tun0"}) == {("tun0", A("10.10.30.2"))}
    assert vpnsessions.live_next_hops(str(tmp_path), {"tun1"}) == set()
    records.remove("tun0", A("10.10.30.2"))
    assert records.get("tun0", A("10.10.30.2")) is None


def _newest_each(carriers: list) -> list:
    by_peer: dict = {}
    for c in carriers:
        by_peer.setdefault(c.peer, []).append(c)
    return [newest(cs) for cs in by_peer.values()]


def test_a_record_keeps_the_ipv6_address_and_the_newest_session_of_a_user_carries_its_routes(tmp_path):
    records = vpnsessions.SessionRecords(str(tmp_path))
    six = ipaddress.IPv6Address("fd00:10:30::1000")
    records.write(vpnsessions.Session("tun0", A("10.10.30.2"), A("10.255.10.1"), six))
    assert (Path(records.directory) / "tun0,10.10.30.2").read_text() == "10.255.10.1\nfd00:10:30::1000\n"
    assert vpnsessions.live_next_hops(str(tmp_path), {"tun0"}) == {("tun0", A("10.10.30.2")), ("tun0", six)}
    records.write(vpnsessions.Session("tun0", A("10.10.30.3"), A("10.255.10.1")))
    records.write(vpnsessions.Session("tun0", A("10.10.30.4"), A("10.255.10.2")))
    older, newer = Path(records.directory) / "tun0,10.10.30.3", Path(records.directory) / "tun0,10.10.30.2"
    os.utime(older, (1000, 1000))
    os.utime(newer, (2000, 2000))
    transport = OpenVpnTransport(None, str(tmp_path))
    links = Links(names={"tun0"})

    def carrying(links: Links) -> list:
        return sorted((c.peer, c.via4) for c in _newest_each(transport.carriers(links)))

    assert carrying(links) == [(A("10.255.10.1"), A("10.10.30.2")), (A("10.255.10.2"), A("10.10.30.4"))]
    os.utime(older, (3000, 3000))
    assert carrying(links)[0] == (A("10.255.10.1"), A("10.10.30.3"))
    assert carrying(Links(names={"tun1"})) == []
    # A record with a broken IPv6 line, or more lines than a record has, is no session.
    for text in ["10.255.10.1\nfe80::1\n", "10.255.10.1\nfd00::1\nx\n", "10.255.10.1\nfd00::1"]:
        newer.write_text(text)
        assert records.get("tun0", A("10.10.30.2")) is None


def test_a_line_goes_via_the_client_address_of_its_family_keeping_metric_and_table():
    six = carrier(vpnsessions.Session("tun0", A("10.10.30.2"), A("10.255.10.1"),
                                      ipaddress.IPv6Address("fd00:10:30::1000")))
    four = carrier(vpnsessions.Session("tun0", A("10.10.30.2"), A("10.255.10.1")))
    route = Route(ipaddress.ip_network("192.168.20.0/24"), A("10.255.10.1"), None, 50, "100")
    kernel = carried_route(route, four, None)
    assert (kernel.dst, kernel.dev, kernel.gw, kernel.metric, kernel.table) == (
        route.dst, "tun0", A("10.10.30.2"), 50, "100")
    v6 = Route(ipaddress.ip_network("2001:db8:20::/48"), None, None, None, None)
    assert carried_route(v6, four, None) is None
    assert not_carried_why(v6) == "is IPv6 and the tunnel has no IPv6"
    assert carried_route(v6, six, None).gw == ipaddress.IPv6Address("fd00:10:30::1000")
    own = Route(ipaddress.ip_network("10.1.0.0/16"), A("10.255.10.1"), "eth1", None, None)
    assert carried_route(own, six, None) is None
    assert not_carried_why(own) == "has its own dev eth1"
    # A link of the user's own (L2TP) takes the line as it is: its gateway, its own dev.
    l2tp = Carrier(A("10.255.10.1"), "ppp0", "l2tp")
    assert (carried_route(own, l2tp, None).dev, carried_route(own, l2tp, None).gw) == ("eth1", A("10.255.10.1"))


def _management(path, replies):
    """A management socket answering `status 3` with each of `replies` in turn, one client at a time."""
    import socket
    import threading

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve():
        for reply in replies:
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(reply.encode() + b"END\r\n")
        server.close()

    threading.Thread(target=serve, daemon=True).start()


def _row(user, address):
    return f"CLIENT_LIST\t{user}\t172.31.1.2:40000\t{address}\t\t1\t2\tx\t1\t{user}\t0\t0\tAES\r\n"


def test_a_client_missing_from_a_list_read_earlier_is_looked_for_again_before_a_no(tmp_path):
    sock = tmp_path / "openvpn.sock"
    _management(sock, ["HEADER\r\n" + _row("user1", "10.10.30.2"),
                       "HEADER\r\n" + _row("user1", "10.10.30.2") + _row("user2", "10.10.30.3")])
    clients = vpnmanagement.Clients(str(sock), wait=0.0)  # a storm's pass already past its deadline
    assert [c.user for c in clients.holding(A("10.10.30.2"), present=True)] == ["user1"]
    # Not in the list read for the first event: read again, not refused on the old list.
    assert [c.user for c in clients.holding(A("10.10.30.3"), present=True)] == ["user2"]


def test_no_answer_from_openvpn_is_a_management_error_after_the_wait_and_no_server_one_at_once(tmp_path,
                                                                                                 monkeypatch):
    import socket

    # Somebody else's session holds it: the socket takes the connection and never answers.
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    busy.bind(str(tmp_path / "busy.sock"))
    busy.listen(4)
    with busy:
        clients = vpnmanagement.Clients(str(tmp_path / "busy.sock"), wait=0.3)
        with pytest.raises(vpnmanagement.ManagementError) as caught:
            clients.holding(A("10.10.30.2"), present=True)
        assert caught.value.busy
    # The server stopped: nothing listens there, and waiting cannot change that: one read, no
    # pause, no second try (counted, not timed).
    reads, pauses = [], []
    real_read = vpnmanagement.read_clients
    monkeypatch.setattr(vpnmanagement, "read_clients", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    monkeypatch.setattr(vpnmanagement.time, "sleep", pauses.append)
    clients = vpnmanagement.Clients(str(tmp_path / "openvpn.sock"), wait=30)
    with pytest.raises(vpnmanagement.ManagementError) as caught:
        clients.holding(A("10.10.30.2"), present=True)
    assert not caught.value.busy and len(reads) == 1 and pauses == []


def test_users_read_chap_secrets_once_and_say_why_a_name_has_no_address(tmp_path):
    from l2tproute.system.chap import Users

    chap = tmp_path / "chap-secrets"
    chap.write_text("user1 * p1 10.255.10.1\nroaming * p2 *\n")
    users = Users(str(chap))
    assert users.peer("user1") == A("10.255.10.1")
    chap.unlink()  # read once: the next names come from what was read
    with pytest.raises(InputError, match="may use any address"):
        users.peer("roaming")
    with pytest.raises(InputError, match="is not in"):
        users.peer("nobody")
    assert vpnsessions.lists_user([vpnmanagement.VpnClient("user1", A("10.10.30.2"))], A("10.10.30.2"), None,
                                  A("10.255.10.1"), users)
    assert not vpnsessions.lists_user([vpnmanagement.VpnClient("roaming", A("10.10.30.2"))], A("10.10.30.2"), None,
                                      A("10.255.10.1"), users)
