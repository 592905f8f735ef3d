"""The route file format: byte-for-byte round trips and edits that leave other lines alone."""

import pytest

from l2tproute.core import routefile as F
from l2tproute.core.model import make_route, parse_destination, parse_peer

PEER = parse_peer("10.255.10.1")

# Files as they are found in the field: written by the old tool, and edited by hand.
CORPUS = {
    "old tool, one route": b"192.168.20.0/24 via 10.255.10.1\n",
    "old tool, with dev": b"192.168.20.0/24 via 10.255.10.1\n10.20.0.0/16 via 10.255.10.1 dev ppp0\n",
    "crlf from a windows editor": b"192.168.20.0/24 via 10.255.10.1\r\n10.20.0.0/16 via 10.255.10.1\r\n",
    "comments and blanks": b"# office of Ms. Smith\n\n192.168.20.0/24 via 10.255.10.1\n   \n#end\n",
    "trailing spaces and tabs": b"192.168.20.0/24 via 10.255.10.1   \n10.1.0.0/16\tvia\t10.255.10.1\n",
    "no final newline": b"192.168.20.0/24 via 10.255.10.1\n10.20.0.0/16 via 10.255.10.1",
    "garbage": b"hello world\n192.168.20.0/24 via 10.255.10.1\n\xff\xfe binary\n",
    "host bits by hand": b"192.168.1.5/24 via 10.255.10.1\n",
    "bad prefix": b"10.0.0.0/33 via 10.255.10.1\n",
    "missing via": b"10.0.0.0/8 10.255.10.1\n",
    "control characters": b"10.0.0.0/8 via 10.255.10.1\x00\n10.1.0.0/16 via\x0b10.255.10.1\n",
    "extras": b"10.0.0.0/8 via 10.255.10.1 metric 5 table 100\n",
    "empty": b"",
    "only newlines": b"\n\n\n",
    "lone CR": b"10.0.0.0/8 via 10.255.10.1\r10.1.0.0/16 via 10.255.10.1\n",
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_parse_then_serialize_is_byte_identical(name):
    data = CORPUS[name]
    assert F.serialize(F.parse(data)) == data


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_parsing_never_raises_and_classifies_every_line(name):
    lines = F.parse(CORPUS[name])
    assert all(line.kind in (F.ROUTE, F.LOOSE, F.COMMENT, F.BLANK, F.INVALID) for line in lines)
    assert all((line.route is not None) == (line.kind in (F.ROUTE, F.LOOSE)) for line in lines)


def test_lines_the_old_tool_wrote_are_canonical():
    lines = F.parse(CORPUS["old tool, with dev"])
    assert [line.kind for line in lines] == [F.ROUTE, F.ROUTE]
    assert [F.format_route(line.route) for line in lines] == [
        "192.168.20.0/24 via 10.255.10.1", "10.20.0.0/16 via 10.255.10.1 dev ppp0"]


def test_crlf_and_extra_blanks_still_mean_a_route_but_are_flagged():
    lines = F.parse(CORPUS["crlf from a windows editor"] + CORPUS["trailing spaces and tabs"])
    assert [line.kind for line in lines] == [F.LOOSE] * 4
    assert str(lines[0].route.dst) == "192.168.20.0/24"
    assert "CRLF" in lines[0].problem


def test_a_line_with_host_bits_is_invalid_and_names_the_network_meant():
    (line,) = F.parse(CORPUS["host bits by hand"])
    assert line.kind == F.INVALID
    assert "did you mean 192.168.1.0/24" in line.problem


def test_a_new_route_is_written_exactly_as_the_old_tool_wrote_it():
    route = make_route(PEER, parse_destination("192.168.20.0/24"))
    assert F.route_line(route).raw == b"192.168.20.0/24 via 10.255.10.1\n"
    route = make_route(PEER, parse_destination("10.20.0.0/16"), dev="ppp0")
    assert F.route_line(route).raw == b"10.20.0.0/16 via 10.255.10.1 dev ppp0\n"


def test_extras_go_at_the_end_of_the_line():
    route = make_route(PEER, parse_destination("10.0.0.0/8"), metric=5, table="100")
    assert F.route_line(route).raw == b"10.0.0.0/8 via 10.255.10.1 metric 5 table 100\n"
    (line,) = F.parse(CORPUS["extras"])
    assert line.kind == F.ROUTE and line.route == route


def test_problems_warn_about_broken_and_loose_lines_but_not_comments():
    lines = F.parse(CORPUS["comments and blanks"] + CORPUS["garbage"] + b"10.9.0.0/16 via 10.255.10.1\r\n")
    warnings = F.problems(lines, "x.routes")
    assert len(warnings) == 3
    assert all(w.startswith("x.routes line ") for w in warnings)
    assert not any(w[:1].isdigit() for w in warnings)


def test_split_lines_splits_on_lf_only():
    assert F.split_lines(b"a\r\nb\rc\nd") == [b"a\r\n", b"b\rc\n", b"d"]
