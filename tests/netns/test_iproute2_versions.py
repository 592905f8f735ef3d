"""One reader for every `ip`: the runner asks once whether its `ip` has -N, and what it reads is the
same typed state whether `ip` printed JSON (5.3 and later) or text (4.15, Ubuntu 18.04).

    eth0  192.168.50.1/24 (LAN, default route, foreign zebra/bird/boot routes, a multipath one)
    ppp0  10.254.0.1 peer 10.255.10.1   ppp1 (down) 10.254.0.1 peer 10.255.10.2
    ours: main, table 100, table 253 (named `default`), metrics, a blackhole, IPv6 in two tables
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from conftest import run_routectl
from support import iproute2s

from l2tproute.core import constants as C
from l2tproute.core.kernel import parse_links, parse_routes, server_networks
from l2tproute.system.iproute2 import IpError, IpRoute2, RouteRead, is_no_device_error, route_read_line
from l2tproute.system.kernel_reads import peer_link

P1, P2 = "10.255.10.1", "10.255.10.2"
TEXT = {iproute2s.DISTRO: False, "4.15.0": True, "5.5.0": False}


@pytest.fixture
def state(netns):
    netns.add_lan("eth0", "192.168.50.1/24")
    netns.ip("addr", "add", "2001:db8::1/64", "dev", "eth0")
    netns.add_ppp("ppp0", P1)
    netns.ip("tuntap", "add", "dev", "ppp1", "mode", "tun")
    netns.ip("addr", "add", "10.254.0.1", "peer", P2, "dev", "ppp1")
    for args in (["default", "via", "192.168.50.254"],
                 # Not `static`: this machine's frr.conf names 196 static too, and a name two numbers
                 # share stays a name (tests/unit/test_iptext.py), unlike -N's number.
                 ["172.16.1.0/24", "via", "192.168.50.2", "proto", "zebra"],
                 ["172.16.2.0/24", "via", "192.168.50.3", "proto", "bird"],
                 ["172.16.3.0/24", "via", "192.168.50.4"],
                 ["10.1.0.0/16", "dev", "ppp0", "proto", "157"],
                 ["10.2.0.0/16", "via", "192.168.50.9", "dev", "eth0", "proto", "157", "metric", "5"],
                 ["10.3.0.0/16", "dev", "ppp0", "proto", "157", "table", "100", "metric", "7"],
                 ["10.4.0.0/16", "dev", "ppp0", "proto", "157", "table", "253"],
                 ["blackhole", "10.6.0.0/16", "proto", "157"],
                 ["10.8.0.0/16", "nexthop", "via", "192.168.50.2", "dev", "eth0", "nexthop", "via", "192.168.50.3",
                  "dev", "eth0"]):
        netns.ip("route", "add", *args)
    netns.ip("-6", "route", "add", "2001:db8:5::/48", "via", "2001:db8::5", "dev", "eth0", "proto", "157")
    netns.ip("-6", "route", "add", "2001:db8:6::/48", "dev", "ppp0", "proto", "157", "table", "100")
    return netns


def _reads(runner: IpRoute2) -> dict:
    """Every kind of read the library makes, typed."""
    found = {}
    for family in (4, 6):
        for name, filters in (("all", {}), ("dev", {"dev": "ppp0"}), ("main_boot", {"main_boot": True}),
                              ("main_kernel", {"main_kernel": True}),
                              ("root", {"root": ipaddress.ip_network("10.0.0.0/8" if family == 4
                                                                     else "2001:db8::/32")}),
                              ("exact", {"exact": ipaddress.ip_network("10.2.0.0/16" if family == 4
                                                                       else "2001:db8:5::/48")})):
            for tagged in (False, True):
                rows = runner.read_routes(family, tagged=tagged, **filters)
                found[(family, name, tagged)] = parse_routes(rows, family, tagged=tagged)
    links = parse_links(runner.read_links())
    found["links"] = (links.by_peer, links.names)
    found["server"] = server_networks(runner.read_routes(4, tagged=False), links)
    found["peer_link"] = [peer_link(runner, ipaddress.IPv4Address(p)) for p in (P1, P2, "192.168.50.1", "8.8.8.8")]
    found["addrs"] = parse_links(runner.read_addrs("ppp1")).peer_on
    return found


@pytest.mark.iproute2_versions
def test_every_read_gives_the_same_typed_state_as_the_distributions_ip(state, ip_binary, monkeypatch):
    runner = IpRoute2(state.name)
    assert runner.prints_text() is TEXT[ip_binary]
    got = _reads(runner)
    monkeypatch.delenv(C.IP_BINARY_ENV, raising=False)
    assert got == _reads(IpRoute2(state.name))
    ours = {(str(i.route.dst), i.route.table, i.route.metric) for i in got[(4, "all", True)]}
    assert ours == {("10.1.0.0/16", "main", 0), ("10.2.0.0/16", "main", 5), ("10.3.0.0/16", "100", 7),
                    ("10.4.0.0/16", "253", 0)}  # the blackhole is not a route of a peer
    assert got["peer_link"] == ["ppp0", None, None, None]  # ppp1 is down: its peer is not connected


def _logging_ip(tmp_path, monkeypatch, version):
    """L2TP_IP_BINARY: a wrapper of that `ip` writing each call's arguments to the returned file."""
    problem = iproute2s.problem(version) if version != iproute2s.DISTRO else None
    if problem:
        pytest.fail(problem, pytrace=False)
    program = iproute2s.program(version) if version != iproute2s.DISTRO else "/usr/sbin/ip"
    log = tmp_path / "calls"
    wrapper = tmp_path / "ip"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {program} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv(C.IP_BINARY_ENV, str(wrapper))
    return log


@pytest.mark.parametrize("version", iproute2s.IP_VERSIONS)
def test_the_runner_learns_from_its_first_read_whether_its_ip_has_n(state, tmp_path, monkeypatch, version):
    log = _logging_ip(tmp_path, monkeypatch, version)
    runner = IpRoute2(state.name)
    assert not log.exists()  # a runner that only writes never asks
    for _ in range(2):
        runner.read_routes(4, tagged=True)
        runner.route_get(ipaddress.IPv4Address(P1))
    calls = log.read_text().splitlines()
    asked = [c for c in calls if " -N" in c]
    if TEXT[version]:  # the first read, refused for its -N; every later one in text
        assert len(calls) == 5 and asked == [calls[0]] and calls[0].endswith("route show table all proto 157")
    else:  # no question of its own: the reads are asked with -N
        assert len(calls) == 4 and asked == [calls[0], calls[2]]
    assert runner.prints_text() is TEXT[version]
    assert len(log.read_text().splitlines()) == len(calls)


@pytest.mark.parametrize("version", iproute2s.IP_VERSIONS)
def test_a_set_of_reads_gives_each_reads_rows_in_one_ip_where_it_can(state, tmp_path, monkeypatch, version):
    log = _logging_ip(tmp_path, monkeypatch, version)
    net = ipaddress.ip_network
    reads = [RouteRead(4, True), RouteRead(6, True), RouteRead(4, True, dev="ppp0"), RouteRead(6, True, dev="ppp0"),
             RouteRead(4, False), RouteRead(4, False, exact=net("10.2.0.0/16")),
             RouteRead(6, False, exact=net("2001:db8:5::/48")), RouteRead(4, False, exact=net("10.6.0.0/16")),
             RouteRead(4, True, exact=net("172.16.1.0/24")), RouteRead(4, False, exact=net("10.99.0.0/16"))]
    runner = IpRoute2(state.name)
    alone = [runner.read_routes(r.family, tagged=r.tagged, dev=r.dev, exact=r.exact) for r in reads]
    assert [len(rows) for rows in alone[-2:]] == [0, 0] and all(alone[:-2])
    before = len(log.read_text().splitlines())
    together = runner.read_route_sets(reads)
    calls = log.read_text().splitlines()[before:]
    assert together == alone
    assert len(calls) == (len(reads) if TEXT[version] else 1)
    # A read that fails (a link that is not there) fails the set as it fails alone, after the
    # batch stopped at it: each read is then asked alone.
    gone = [RouteRead(4, True), RouteRead(4, True, dev="ppp9")]
    with pytest.raises(IpError) as alone_error:
        runner.read_routes(4, tagged=True, dev="ppp9")
    with pytest.raises(IpError) as set_error:
        runner.read_route_sets(gone)
    assert str(set_error.value) == str(alone_error.value) and is_no_device_error(str(set_error.value))


def test_a_read_line_is_checked_and_names_its_family():
    assert route_read_line(RouteRead(4, True, dev="ppp0")) == "route show table all proto 157 dev ppp0 root 0.0.0.0/0"
    assert route_read_line(RouteRead(6, False)) == "route show table all root ::/0"
    assert route_read_line(RouteRead(6, False, exact=ipaddress.ip_network("2001:db8::/32"))) \
        == "route show table all exact 2001:db8::/32"
    for bad in (RouteRead(4, True, dev="ppp0 dev x"), RouteRead(4, True, dev="-x"),
                RouteRead(4, False, exact=ipaddress.ip_network("2001:db8::/32"))):
        with pytest.raises(ValueError):
            route_read_line(bad)


def test_l2tp_ip_binary_names_the_ip_and_is_ignored_under_sudo(monkeypatch):
    monkeypatch.setenv(C.IP_BINARY_ENV, "/bin/true")
    assert IpRoute2("nowhere").program == "/bin/true"
    monkeypatch.setenv("SUDO_USER", "www-data")
    assert IpRoute2("nowhere").program != "/bin/true"


@pytest.mark.parametrize("value", ["/nonexistent/ip", "ip", "plain-file"])
def test_l2tp_ip_binary_that_names_no_program_is_one_line_exit_1(store_dir, netns, monkeypatch, tmp_path, value):
    if value == "plain-file":
        value = str(tmp_path / value)
        Path(value).write_text("not a program\n")
    with monkeypatch.context() as patch:
        patch.setenv(C.IP_BINARY_ENV, value)
        with pytest.raises(IpError, match=C.IP_BINARY_ENV):
            IpRoute2(netns.name)
    result = run_routectl("apply", ns=netns, env={C.IP_BINARY_ENV: value})
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and C.IP_BINARY_ENV in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not set("'\"<>&") & set(result.stderr)


def test_a_missing_built_ip_is_one_line_that_says_what_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(iproute2s, "CACHE", tmp_path)
    problem = iproute2s.problem("4.15.0")
    assert problem == f"{tmp_path}/iproute2-4.15.0/ip is missing: build ip of iproute2 4.15.0 from its upstream tag " \
                      "v4.15.0 into it"
    fake = Path(tmp_path, "iproute2-4.15.0", "ip")
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho ip utility, iproute2-6.1.0\n")
    fake.chmod(0o755)
    assert "not iproute2-ss180129" in iproute2s.problem("4.15.0")
