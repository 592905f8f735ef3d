"""The shortcuts of the hot paths answer exactly as the long way round (issue 28).

text.escape and text.clean skip text that needs nothing escaped, and routefile.parse_line
reads a canonical IPv4 line with one match. Each is held here to what the long way gives:
the escape written out character by character (the rule of text.py's docstring), and
routefile.parse_line_in_full, on lines made to sit on every edge of the shortcut.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from l2tproute.core import routefile as F
from l2tproute.core import text

# Printable ASCII, every character the panel mangles, controls, and a few characters past ASCII
# (printable ones, a line separator, a lone surrogate) that each take a different branch.
_CHARS = st.one_of(st.characters(min_codepoint=0, max_codepoint=0x7F),
                   st.sampled_from(["é", "\u200b", "\u2028", "\x85", "\ud800", "€", "\U0001f600", "\xa0"]))


# A word between quotes loses them (text.clean's docstring): written out again here.
_QUOTED = re.compile(r"""(['"])([^'"\s<>&]+)\1""")


def _escaped_by_hand(value: str) -> str:
    out = []
    for ch in value:
        if ch in "'\"<>&":
            out.append(f"\\x{ord(ch):02x}")
        elif not ch.isprintable():
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


@settings(max_examples=3000, deadline=None)
@given(st.text(_CHARS, max_size=24))
def test_escape_is_the_character_by_character_escape(value):
    assert text.escape(value) == _escaped_by_hand(value)


@settings(max_examples=3000, deadline=None)
@given(st.text(_CHARS, max_size=24))
def test_clean_drops_the_quotes_of_a_word_and_escapes_the_rest(value):
    assert text.clean(value) == _escaped_by_hand(_QUOTED.sub(r"\2", value))


def test_clean_leaves_plain_lines_as_they_are_and_words_quotes_as_before():
    line = "Installed route for peer 10.255.10.1: 10.0.0.0/8 via 10.255.10.1 dev ppp0"
    assert text.clean(line) == line
    assert text.clean("Cannot find device \"ppp9\"") == "Cannot find device ppp9"
    assert text.clean("a <b> & 'c d'") == "a \\x3cb\\x3e \\x26 \\x27c d\\x27"
    assert text.clean("tab\there") == "tab\\there"


_OCTETS = st.sampled_from(["0", "1", "9", "10", "01", "99", "100", "127", "199", "200", "224", "239", "240", "249",
                           "250", "255", "256", "300", "1000"])
_QUAD = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", _OCTETS, _OCTETS, _OCTETS, _OCTETS)
_BITS = st.sampled_from(["0", "1", "8", "9", "16", "24", "29", "30", "32", "33", "07", "", "100"])
_DEV = st.sampled_from(["ppp0", "eth0.5", "a+b@c-d_e", ".", "..", "x" * 15, "x" * 16, "bad/name", ""])
_END = st.sampled_from(["\n", "\r\n", "", " \n", "\t\n", " # note\n", "\n\n"])


@st.composite
def _lines(draw) -> bytes:
    dst = f"{draw(_QUAD)}/{draw(_BITS)}"
    line = f"{dst} via {draw(_QUAD)}"
    if draw(st.booleans()):
        line += f" dev {draw(_DEV)}"
    if draw(st.integers(0, 9)) == 0:
        line += draw(st.sampled_from([" metric 5", " table 100", " dev", " via 10.0.0.1"]))
    if draw(st.integers(0, 9)) == 0:
        line = line.replace(" ", draw(st.sampled_from(["  ", "\t"])), 1)
    return (line + draw(_END)).encode()


@settings(max_examples=4000, deadline=None)
@given(_lines())
def test_a_line_read_by_the_shortcut_is_the_line_the_full_parse_makes(raw):
    assert F.parse_line(raw) == F.parse_line_in_full(raw)


def test_the_shortcut_takes_canonical_lines_and_only_those():
    taken = [b"10.0.0.0/8 via 10.255.10.1\n", b"192.168.20.0/24 via 10.255.10.1 dev ppp0\n",
             b"0.0.0.0/0 via 10.255.10.1\n", b"10.1.2.3/32 via 223.255.255.255\n"]
    left = [b"10.0.0.1/8 via 10.255.10.1\n", b"10.0.0.0/8 via 127.0.0.1\n", b"10.0.0.0/8 via 224.0.0.1\n",
            b"10.0.0.0/8 via 0.1.2.3\n", b"10.0.0.0/8 via 10.255.10.1 dev ..\n", b"10.0.0.0/8 via 10.255.10.1",
            b"10.0.0.0/8 via 10.255.10.01\n", b"10.0.0.0/8 via 10.255.10.1 metric 5\n"]
    for raw in taken + left:
        assert F.parse_line(raw) == F.parse_line_in_full(raw)
    assert all(F.parse_line(raw).kind == F.ROUTE for raw in taken)
    assert [F.parse_line(raw).kind for raw in left] == [F.INVALID] * 5 + [F.LOOSE, F.INVALID, F.ROUTE]


_TOKEN = re.compile(r"[A-Za-z0-9_.:/+@-]{1,64}", re.ASCII)


@settings(max_examples=3000, deadline=None)
@given(st.text(st.sampled_from("ab0:-@ \t;\n'/.#é"), max_size=70), st.one_of(st.none(), st.text(max_size=8)))
def test_a_batch_line_is_refused_exactly_when_a_token_is_unsafe(dev, table):
    import ipaddress

    from l2tproute.core.model import Change, KernelRoute
    from l2tproute.system.iproute2 import change_line, route_tokens

    route = KernelRoute(ipaddress.ip_network("10.0.0.0/8"), dev, ipaddress.ip_address("10.1.1.1"), table=table)
    tokens = ["route", "replace"] + route_tokens(route)
    try:
        line = change_line(Change("replace", route))
    except ValueError:
        assert not all(_TOKEN.fullmatch(token) for token in tokens)
    else:
        assert all(_TOKEN.fullmatch(token) for token in tokens) and line == " ".join(tokens)
