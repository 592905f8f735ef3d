"""The text reader for an `ip` without -N, held to what iproute2 4.15.0 really prints.

tests/data/iproute2-4.15.0/ holds one kernel state (a LAN, two sessions, our routes in main,
table 100 and table default, a blackhole, an RFC 5549 route, a multipath route, TCP metrics,
foreign routes) read by the real 4.15.0 `ip` as text (NAME.txt) and, in the same second, by
this machine's iproute2 6.1 as `ip -json -N` (NAME.json; `ip -json` for `route get`, which
the runner reads without -N). The capture machine named 157 `l2tproute` (rt_protos.d) and
99 `openr`; its frr.conf also named 196 `static`.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from l2tproute.core.kernel import parse_links, parse_routes
from l2tproute.core.tables import protocol_numbers
from l2tproute.system.iptext import Names, parse_routes_text

DATA = Path(__file__).resolve().parent.parent / "data" / "iproute2-4.15.0"
#: The names the capture machine's `ip` printed, as its files said (static unambiguous here).
CAPTURED = Names(protocols={"kernel": "2", "boot": "3", "static": "4", "bird": "12", "openr": "99", "l2tproute": "157"},
                 tables={"local": "255", "main": "main", "default": "253"})
#: What both readers give and the library reads; `metrics` and `uid` are left out by the text reader.
KEYS = ("type", "dst", "gateway", "via", "dev", "table", "protocol", "scope", "metric", "prefsrc", "flags", "pref",
        "nexthops", "cache")
SHOWS = [("route4-all", 4), ("route6-all", 6), ("route4-tagged", 4), ("route6-tagged", 6), ("route4-main-boot", 4),
         ("route4-main-kernel", 4), ("route4-dev-ppp0", 4), ("route4-exact", 4), ("route4-root", 4)]
GETS = ["10.255.10.1", "10.2.3.4", "192.168.50.1", "8.8.8.8"]


def _projected(rows: list) -> list:
    return [{k: row[k] for k in KEYS if k in row} for row in rows]


def _json(name: str) -> list:
    return json.loads((DATA / f"{name}.json").read_text())


def _text(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


@pytest.mark.parametrize("name,family", SHOWS)
def test_a_text_route_listing_reads_as_the_rows_of_ip_json_n(name, family):
    assert _projected(parse_routes_text(_text(name), CAPTURED)) == _projected(_json(name))


@pytest.mark.parametrize("name,family", SHOWS)
def test_the_typed_routes_are_the_same_from_text_and_from_json(name, family):
    tagged = "tagged" in name
    from_text = parse_routes(parse_routes_text(_text(name), CAPTURED), family, tagged=tagged)
    assert from_text == parse_routes(_json(name), family, tagged=tagged)
    assert from_text  # every listing has routes: an empty reader cannot pass


@pytest.mark.parametrize("address", GETS)
def test_route_get_reads_as_ip_json_without_n(address):
    rows = parse_routes_text(_text(f"get-{address}"), CAPTURED, numeric=False)
    assert _projected(rows) == _projected(_json(f"get-{address}"))


def test_what_the_library_reads_of_the_captured_state():
    """The facts, not only the equality: our tag, tables by number, metrics, the link of each route."""
    installed = parse_routes(parse_routes_text(_text("route4-all"), CAPTURED), 4)
    ours = {(str(i.route.dst), i.route.dev, i.route.table, i.route.metric, str(i.route.gw)) for i in installed
            if i.protocol == "157"}
    assert ours == {("10.1.0.0/16", "ppp0", "main", 0, "None"), ("10.2.0.0/16", "eth0", "main", 5, "192.168.50.9"),
                    ("10.3.0.0/16", "ppp0", "100", 7, "None"), ("10.4.0.0/16", "ppp0", "253", 0, "None"),
                    ("10.9.0.0/16", "eth0", "main", 0, "None"), ("10.255.10.1/32", "ppp0", "main", 10, "None")}
    boot = {str(i.route.dst) for i in installed if i.protocol == "3"}
    assert boot == {"0.0.0.0/0", "172.16.3.0/24", "10.8.0.0/16"}


def test_a_protocol_name_no_single_number_has_is_kept_and_is_never_ours():
    names = Names(protocols={"kernel": "2", "boot": "3"}, tables={})  # `l2tproute` unknown, `static` shared
    rows = parse_routes_text(_text("route4-all"), names)
    protocols = {row["dst"]: row.get("protocol") for row in rows if row.get("type") is None}
    assert protocols["10.1.0.0/16"] == "l2tproute" and protocols["172.16.1.0/24"] == "static"
    assert not [i for i in parse_routes(rows, 4) if i.protocol == "157"]


def test_tcp_metrics_after_the_route_do_not_change_its_metric():
    rows = parse_routes_text("10.5.0.0/16 dev ppp0 proto openr scope link metric 3 linkdown mtu lock 1400 "
                             "metric 12 7 advmss 1360 \n", CAPTURED)
    assert _projected(rows) == [{"dst": "10.5.0.0/16", "dev": "ppp0", "protocol": "99", "scope": "253", "metric": 3,
                                 "flags": ["linkdown"]}]


def test_a_link_named_like_a_keyword_is_still_the_link():
    rows = parse_routes_text("10.1.0.0/16 dev via proto l2tproute scope link metric 4\n", CAPTURED)
    assert _projected(rows) == [{"dst": "10.1.0.0/16", "dev": "via", "protocol": "157", "scope": "253", "metric": 4,
                                 "flags": []}]


def test_empty_output_is_no_route():
    assert parse_routes_text("", CAPTURED) == []


def test_the_4_15_address_json_with_a_dev_filter_has_rows_without_a_link():
    """4.15 prints an empty row per link the filter left out; the runner drops them, parse_links ignores them."""
    rows = _json("addr-dev-ppp1")
    assert [row.get("ifname") for row in rows] == [None, None, None, "ppp1"]
    links = parse_links(rows)
    assert links.names == {"ppp1"} and links.link_of(ipaddress.IPv4Address("10.255.10.2")) == "ppp1"
    assert parse_links(_json("addr-all")).by_peer == {ipaddress.IPv4Address("10.255.10.1"): "ppp0",
                                                       ipaddress.IPv4Address("10.255.10.2"): "ppp1"}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_protocol_names_come_from_ip_own_table_then_its_files(tmp_path):
    base = tmp_path / "etc" / "iproute2"
    _write(base / "rt_protos", "# comment\n2 kernel\n  0x9d  early # hex, overridden below\n4 static\n")
    _write(base / "rt_protos.d" / "l2tproute.conf", "157\tl2tproute\n")
    _write(base / "rt_protos.d" / "frr.conf", "196 static\n186 bgp\n")
    _write(base / "rt_protos.d" / "ignored.txt", "200 notread\n")
    names = protocol_numbers(str(tmp_path))
    assert names["l2tproute"] == "157" and "early" not in names  # a later file names 157 anew
    assert "static" not in names  # 4 and 196: which one `ip` meant cannot be told
    assert names["bgp"] == "186" and names["boot"] == "3" and names["dhcp"] == "16"  # ip's own names stay
    assert "notread" not in names


def test_a_protocol_file_is_read_up_to_its_first_unreadable_line_as_ip_does(tmp_path):
    _write(tmp_path / "etc" / "iproute2" / "rt_protos", "150 first\nbroken line\n151 second\n")
    names = protocol_numbers(str(tmp_path))
    assert names["first"] == "150" and "second" not in names
    assert protocol_numbers(str(tmp_path / "nowhere"))["kernel"] == "2"  # no file: ip's own names
