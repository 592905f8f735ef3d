"""policy.py on its own: the settings file, who the caller is, and the decision over a
server state built by hand. The same rules against a real kernel and store are in
tests/netns/test_panel_limits.py (the console script) and tests/robustness/test_privilege.py (the
installed command through sudo)."""

from __future__ import annotations

import ipaddress
import os

import pytest

from l2tproute.core import constants as C
from l2tproute.core.kernel import parse_links
from l2tproute.core.model import InputError, Refused, make_route, parse_destination, parse_peer
from l2tproute.ops.policy import (
    Caller,
    Config,
    Request,
    ServerState,
    Taken,
    authorize,
    current_caller,
    load_config,
    parse_config,
    read_resolvers,
    server_state,
)

PEER = parse_peer("10.255.99.2")
PANEL = Caller("www-data", True, Config())
FORBIDDEN_IN_MESSAGES = set("'\"<>&")


def test_settings_default_when_the_file_is_missing(tmp_path):
    assert load_config(str(tmp_path / "none.conf")) == Config(("www-data",), 8, 32)


def test_settings_are_read_with_comments_lists_and_blanks(tmp_path):
    text = "# by the installer\n\npanel_users = www-data, apache nginx\nmin_prefix=16\n  min_prefix6 = 48  \n"
    assert parse_config(text) == Config(("www-data", "apache", "nginx"), 16, 48)


BROKEN = [
    "panel_users www-data\n",  # no =
    "panel_user = www-data\n",  # unknown key
    "panel_users =\n",
    "panel_users = www-data;rm\n",
    "min_prefix = 0\n",
    "min_prefix = 33\n",
    "min_prefix = 8.5\n",
    "min_prefix6 = 129\n",
    "min_prefix = 8\nmin_prefix = 9\n",
    "panel_users = <script>'\"&\n",
]


@pytest.mark.parametrize("text", BROKEN)
def test_a_broken_settings_file_is_one_line_naming_the_line_and_never_its_text(tmp_path, text):
    path = tmp_path / "l2tproute.conf"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_config(str(path))
    message = str(err.value)
    assert "\n" not in message and f"{path} line " in message
    assert not FORBIDDEN_IN_MESSAGES & set(message), message
    assert "script" not in message and ";rm" not in message


def test_a_settings_file_the_panel_could_write_is_refused(tmp_path):
    path = tmp_path / "l2tproute.conf"
    path.write_text("panel_users = nobody\n")
    os.chmod(path, 0o666)
    with pytest.raises(InputError, match="owned by root and writable by root only"):
        load_config(str(path))
    os.chmod(path, 0o644)
    os.chown(path, 33, 33)
    with pytest.raises(InputError, match="owned by root"):
        load_config(str(path))
    link = tmp_path / "link.conf"
    link.symlink_to(path)
    with pytest.raises(InputError, match="regular file owned by root"):
        load_config(str(link))


def test_the_caller_is_the_panel_when_sudo_names_a_panel_user(tmp_path):
    conf = tmp_path / "l2tproute.conf"
    conf.write_text("panel_users = www-data, apache\n")
    path = str(conf)
    assert current_caller({}, path) == Caller()  # root, the hooks, the timer: no file read at all
    assert current_caller({"SUDO_USER": "www-data", "SUDO_UID": "33"}, path).panel
    assert current_caller({"SUDO_USER": "apache"}, path).panel
    assert current_caller({"SUDO_UID": "33"}, path).panel  # www-data by its uid
    # Either variable naming a panel user is enough: a mismatch never opens the doors.
    assert current_caller({"SUDO_USER": "alice", "SUDO_UID": "33"}, path).panel
    admin = current_caller({"SUDO_USER": "alice", "SUDO_UID": "1000"}, path)
    assert (admin.panel, admin.user) == (False, "alice")
    assert not current_caller({"SUDO_USER": "root", "SUDO_UID": "0"}, path).panel
    assert not current_caller({"SUDO_USER": "www-data"}, str(_write(tmp_path, "panel_users = apache\n"))).panel


def test_a_broken_settings_file_stops_every_sudo_caller_and_no_one_else(tmp_path):
    path = str(_write(tmp_path, "min_prefix = none\n"))
    with pytest.raises(InputError):
        current_caller({"SUDO_USER": "alice"}, path)
    assert current_caller({}, path) == Caller()


def _write(tmp_path, text):
    path = tmp_path / "other.conf"
    path.write_text(text)
    return path


def _request(dst: str, **options) -> Request:
    return Request(route=make_route(PEER, parse_destination(dst)), **options)


def test_options_the_panel_may_not_use_and_everybody_else_may():
    for request in (Request(force=True), Request(netns="other"), Request(table="100"), _request("10.9.0.0/24",
                                                                                                 force=True)):
        with pytest.raises(Refused) as err:
            authorize(PANEL, request, ServerState())
        assert not FORBIDDEN_IN_MESSAGES & set(str(err.value)), err.value
        for other in (Caller(), Caller("alice", False, Config())):
            authorize(other, request, ServerState())
    for table in ("main", "254"):
        authorize(PANEL, Request(table=table))
    authorize(PANEL, Request())


def _server() -> ServerState:
    link_rows = [
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1"}, {"family": "inet6", "local": "::1"}]},
        {"ifname": "up0", "addr_info": [{"family": "inet", "local": "198.51.100.2"}]},
        {"ifname": "ppp0", "addr_info": [{"family": "inet", "local": "10.254.0.1", "address": "10.255.99.2"}]},
        {"ifname": "ppp1", "addr_info": [{"family": "inet", "local": "10.254.0.1", "address": "10.255.99.3"}]},
    ]
    routes4 = [
        {"dst": "default", "gateway": "100.64.0.1", "dev": "up0", "protocol": "static"},
        {"dst": "198.51.100.0/24", "dev": "up0", "protocol": "2"},
        {"dst": "203.0.113.0/24", "nexthops": [{"gateway": "198.51.100.7", "dev": "up0"}], "protocol": "4"},
        {"dst": "10.255.99.2", "dev": "ppp0", "protocol": "2"},
        {"dst": "172.31.0.0/16", "gateway": "10.255.99.2", "dev": "ppp0", "protocol": "157"},  # ours
        {"dst": "172.30.0.0/16", "gateway": "10.255.99.9", "dev": "up0", "protocol": "157", "table": "100"},
    ]
    held = [Taken(ipaddress.ip_network("172.16.5.0/24"), "routed to peer 10.255.99.3")]
    return server_state(link_rows, {4: routes4, 6: []}, parse_links(link_rows), PEER, held,
                        [ipaddress.ip_address("9.9.9.9")])


REFUSED = {
    "0.0.0.0/0": "default route", "::/0": "default route", "0.0.0.0/1": "shorter than /8",
    "128.0.0.0/1": "shorter than /8", "2000::/3": "shorter than /32", "9.9.9.0/24": "name server",
    "100.64.0.0/10": "100.64.0.1, a gateway", "198.51.100.7/32": "198.51.100.7, a gateway",
    "198.51.100.128/25": "a network of this server", "198.51.0.0/16": "198.51.100.2, an address",
    "203.0.113.0/24": "a network of this server", "127.0.0.0/8": "127.0.0.1, an address",
    "10.254.0.1/32": "an address of this server", "172.16.5.0/24": "routed to peer 10.255.99.3",
    "172.16.5.128/25": "routed to peer 10.255.99.3", "172.16.0.0/12": "routed to peer 10.255.99.3",
    "10.255.99.3/32": "the address of peer 10.255.99.3 on ppp1", "::1/128": "an address of this server",
}


@pytest.mark.parametrize("dst", sorted(REFUSED))
def test_the_panel_may_not_route_what_the_server_or_another_user_needs(dst):
    with pytest.raises(Refused) as err:
        authorize(PANEL, _request(dst), _server())
    assert REFUSED[dst] in str(err.value) and not FORBIDDEN_IN_MESSAGES & set(str(err.value)), err.value
    authorize(Caller("alice", False, Config()), _request(dst), _server())  # an administrator may


@pytest.mark.parametrize("dst", ["10.9.0.0/24", "192.168.20.0/24", "172.31.0.0/16", "172.30.0.0/16",
                                 "8.0.0.0/8", "10.255.99.2/32", "2001:db8:100::/48"])
def test_the_panel_may_route_what_nobody_else_holds(dst):
    # Its own routes (tagged 157) and its own peer address do not block it; nor does table 100.
    authorize(PANEL, _request(dst), _server())


def test_min_prefix_comes_from_the_settings():
    narrow = Caller("www-data", True, Config(min_prefix=20, min_prefix6=56))
    with pytest.raises(Refused, match="shorter than /20"):
        authorize(narrow, _request("10.9.0.0/16"), _server())
    with pytest.raises(Refused, match="shorter than /56"):
        authorize(narrow, _request("2001:db8:100::/48"), _server())
    wide = Caller("www-data", True, Config(min_prefix=1))
    with pytest.raises(Refused, match="default route"):
        authorize(wide, _request("0.0.0.0/0"), _server())
    with pytest.raises(Refused, match="name server"):
        authorize(wide, _request("8.0.0.0/7"), _server())


def test_name_servers_are_read_from_resolv_conf(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# x\nsearch example.org\nnameserver 9.9.9.9\nnameserver fe80::1%eth0\nnameserver bogus\n"
                    "options ndots:2\n")
    assert read_resolvers(str(path)) == [ipaddress.ip_address("9.9.9.9"), ipaddress.ip_address("fe80::1")]
    assert read_resolvers(str(tmp_path / "missing")) == []
    assert C.RESOLV_CONF == "/etc/resolv.conf"


# -- --gw and --dev, and the server's IPv6 side -------------------------------------------

@pytest.mark.parametrize("dst", sorted(REFUSED))
@pytest.mark.parametrize("gw, dev", [("10.255.99.2", None), (None, "ppp0"), ("10.255.99.2", "ppp0"),
                                     ("198.51.100.7", "up0")], ids=["gw", "dev", "gw-dev", "gw-dev-uplink"])
def test_a_gateway_or_link_of_the_request_changes_nothing_about_the_destination_rules(dst, gw, dev):
    """The rules are about the destination: naming a gateway or a link neither loosens nor adds one."""
    route = make_route(PEER, parse_destination(dst), parse_peer(gw) if gw else None, dev)
    with pytest.raises(Refused) as err:
        authorize(PANEL, Request(route=route), _server())
    assert REFUSED[dst] in str(err.value), err.value


@pytest.mark.parametrize("gw, dev", [("10.255.99.2", None), (None, "ppp0"), ("10.255.99.2", "ppp0"),
                                     ("198.51.100.7", "up0")])
def test_the_panel_may_name_a_gateway_and_a_link_for_a_free_destination(gw, dev):
    route = make_route(PEER, parse_destination("10.9.0.0/24"), parse_peer(gw) if gw else None, dev)
    authorize(PANEL, Request(route=route), _server())


def _server6() -> ServerState:
    """A server with an IPv6 uplink: a global address, its connected network, a default route via
    a link-local router, a route via a global gateway, and an IPv6 name server."""
    link_rows = [
        {"ifname": "lo", "addr_info": [{"family": "inet6", "local": "::1"}]},
        {"ifname": "up0", "addr_info": [{"family": "inet6", "local": "2001:db8:1::2"},
                                        {"family": "inet6", "local": "fe80::2"}]},
        {"ifname": "ppp0", "addr_info": [{"family": "inet", "local": "10.254.0.1", "address": "10.255.99.2"}]},
    ]
    routes6 = [
        {"dst": "default", "gateway": "fe80::1", "dev": "up0", "protocol": "ra"},
        {"dst": "2001:db8:1::/64", "dev": "up0", "protocol": "kernel"},
        {"dst": "2001:db8:77::/48", "gateway": "2001:db8:1::fe", "dev": "up0", "protocol": "static"},
        {"dst": "2001:db8:66::/48", "nexthops": [{"gateway": "2001:db8:1::fd", "dev": "up0"}], "protocol": "static"},
        {"dst": "2001:db8:99::/48", "dev": "ppp0", "protocol": "157"},  # ours
    ]
    return server_state(link_rows, {4: [], 6: routes6}, parse_links(link_rows), PEER, [],
                        [ipaddress.ip_address("2001:4860:4860::8888")])


REFUSED6 = {
    "2001:db8:1::/64": "2001:db8:1::2, an address of this server",
    "2001:db8:1:0:8000::/65": "2001:db8:1::/64, a network of this server",
    "2001:db8:77::/48": "2001:db8:77::/48, a network of this server",
    "2001:db8:77:1::/64": "a network of this server",
    "2001:db8:1::fe/128": "2001:db8:1::fe, a gateway of this server",
    "2001:db8:1::fd/128": "2001:db8:1::fd, a gateway of this server",
    "fe80::/64": "an address of this server",
    "fe80::1/128": "fe80::1, a gateway of this server",
    "2001:4860:4860::/48": "2001:4860:4860::8888, a name server",
}


@pytest.mark.parametrize("dst", sorted(REFUSED6))
def test_the_panel_may_not_route_the_servers_ipv6_networks_gateways_or_name_servers(dst):
    with pytest.raises(Refused) as err:
        authorize(PANEL, _request(dst), _server6())
    assert REFUSED6[dst] in str(err.value) and not FORBIDDEN_IN_MESSAGES & set(str(err.value)), err.value
    authorize(Caller("alice", False, Config()), _request(dst), _server6())  # an administrator may


@pytest.mark.parametrize("dst", ["2001:db8:99::/48", "2001:db8:100::/48", "2001:4860:4861::/48"])
def test_the_panel_may_route_ipv6_space_nobody_else_holds(dst):
    authorize(PANEL, _request(dst), _server6())
