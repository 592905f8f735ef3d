"""Property-based tests (hypothesis): the file format round trip and argument validation.

Each property is checked against an independent oracle (the ipaddress module, or a
plain re-implementation), not against the code it tests.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import string

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from l2tproute import cli
from l2tproute import constants as C
from l2tproute.iproute2 import Change, KernelRoute, change_tokens
from l2tproute.model import (
    InputError,
    Route,
    parse_destination,
    parse_device,
    parse_gateway,
    parse_metric,
    parse_peer,
    parse_table,
)
from l2tproute.routefile import BLANK, COMMENT, INVALID, LOOSE, ROUTE, format_route, parse, parse_line, serialize
from l2tproute.store import Store

EXAMPLES = int(os.environ.get("L2TP_TEST_EXAMPLES", "100"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])

# -- strategies -------------------------------------------------------------------------

octets = st.integers(0, 255)
unicast = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)).filter(
    lambda a: not (a.is_unspecified or a.is_loopback or a.is_multicast or a.is_reserved
                   or a in ipaddress.IPv4Network("0.0.0.0/8")))
v4_networks = st.builds(lambda addr, plen: ipaddress.IPv4Network((addr, plen), strict=False),
                        st.integers(0, 2**32 - 1), st.integers(0, 32))
v6_networks = st.builds(lambda addr, plen: ipaddress.IPv6Network((addr, plen), strict=False),
                        st.integers(0, 2**128 - 1), st.integers(0, 128))
ifnames = st.text(alphabet=string.ascii_letters + string.digits + "_.+@-", min_size=1, max_size=15).filter(
    lambda name: name not in (".", ".."))
table_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda name: name not in ("local", "default", "unspec", "all"))
tables = st.one_of(st.none(), table_names, st.integers(1, 2**32 - 1).filter(lambda n: n not in (253, 255)).map(str))
routes = st.builds(Route, dst=st.one_of(v4_networks, v6_networks), gw=unicast, dev=st.one_of(st.none(), ifnames),
                   metric=st.one_of(st.none(), st.integers(0, 2**32 - 1)), table=tables)
# Text a caller could type, weighted towards what is almost an address.
near_ipv4 = st.one_of(
    st.builds(lambda parts, sep: sep.join(parts),
              st.lists(st.one_of(octets.map(str), st.text("0123456789", min_size=0, max_size=4),
                                 st.sampled_from(["-1", "0x1", "\u0661", "\uff11", " 1", "1\n", "00"])),
                       min_size=1, max_size=6),
              st.sampled_from([".", ".", ".", ",", "\u3002"])),
    st.text(max_size=20),
)
route_lines = routes.map(lambda r: format_route(r).encode("ascii"))
any_line = st.one_of(route_lines, st.binary(max_size=60), st.sampled_from(
    [b"", b"# comment", b"  ", b"\t", b"garbage here", b"10.0.0.0/24 via 10.255.10.2 ", b"\x00"]))
files = st.lists(st.tuples(any_line, st.sampled_from([b"\n", b"\r\n", b"\n"])), max_size=12).map(
    lambda items: b"".join(line + end for line, end in items))


# -- the format -------------------------------------------------------------------------

@SETTINGS
@given(routes)
def test_every_route_written_reads_back_as_the_same_route(route):
    raw = format_route(route).encode("ascii") + b"\n"
    line = parse_line(raw)
    assert (line.kind, line.route) == (ROUTE, route)
    assert b"  " not in raw and raw.count(b"\n") == 1


@SETTINGS
@given(st.binary(max_size=400) | files)
@example(b"10.0.0.0/24 via 10.255.10.2\r\n# x\n\n\x00\xff")
def test_any_bytes_parse_without_error_and_serialize_back_byte_for_byte(data):
    lines = parse(data)
    assert serialize(lines) == data
    for line in lines:
        assert line.kind in (ROUTE, LOOSE, COMMENT, BLANK, INVALID)
        assert (line.route is not None) == (line.kind in (ROUTE, LOOSE))
        if line.kind == ROUTE:  # only what the tool itself would write counts as clean
            assert line.raw == format_route(line.route).encode("ascii") + b"\n"


@settings(SETTINGS, max_examples=max(10, EXAMPLES // 3))  # each example fsyncs a file
@given(files, routes)
def test_a_route_appended_by_a_write_keeps_every_other_byte(tmp_path_factory, data, route):
    store = Store(str(tmp_path_factory.mktemp("store")))
    peer = ipaddress.IPv4Address("10.255.10.2")
    new = parse(data) + parse(format_route(route).encode("ascii") + b"\n")
    with store.locked():
        store.write(peer, new)
    assert store.read_bytes(peer) == data + format_route(route).encode("ascii") + b"\n"
    assert os.stat(store.path(peer)).st_mode & 0o777 == C.ROUTE_FILE_MODE
    assert sorted(os.listdir(store.directory)) == sorted([C.LOCK_FILE_NAME, f"{peer}{C.ROUTE_FILE_SUFFIX}"])


# -- argument validation -------------------------------------------------------------------

def oracle_peer(text: str):
    """Canonical dotted quad, unicast, not 0/8: what a peer may be."""
    if not text.isascii() or text != text.strip() or not text:
        return None
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError:
        return None
    if str(addr) != text:
        return None
    if addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_reserved or text.startswith("0."):
        return None
    return addr


def one_line(exc: Exception) -> str:
    text = str(exc)
    assert "\n" not in text and "\r" not in text and text.isprintable(), text
    assert len(text) < 400, len(text)
    return text


@SETTINGS
@given(st.one_of(near_ipv4, unicast.map(str)))
@example("010.1.1.1")
@example("\u0661.1.1.1")
@example("1.1.1.1\n")
def test_a_peer_is_accepted_exactly_when_it_is_a_canonical_unicast_dotted_quad(text):
    expected = oracle_peer(text)
    try:
        got = parse_peer(text)
    except InputError as exc:
        one_line(exc)
        assert expected is None, text
    else:
        assert got == expected and str(got) == text
    try:
        gw = parse_gateway(text)
    except InputError as exc:
        one_line(exc)
        assert expected is None
    else:
        assert gw == expected


@SETTINGS
@given(st.one_of(
    st.builds(lambda a, p: f"{a}/{p}", near_ipv4, st.one_of(st.integers(-2, 40).map(str), st.text(max_size=4))),
    v4_networks.map(str), v6_networks.map(str), st.text(max_size=30),
    st.builds(lambda net, plen: f"{net.network_address + 1}/{plen}", v4_networks, st.integers(0, 31))))
def test_a_destination_is_accepted_exactly_when_it_is_a_canonical_network(text):
    try:
        expected = ipaddress.ip_network(text, strict=True) if text.isascii() and "/" in text else None
    except ValueError:
        expected = None
    if expected is not None and str(expected) != text:
        expected = None  # leading zeros, upper case, `/024`: refused, never guessed
    try:
        got = parse_destination(text)
    except InputError as exc:
        message = one_line(exc)
        assert expected is None, text
        if "host bits" in message:  # and the message gives the right one
            assert str(ipaddress.ip_network(text, strict=False)) in message
    else:
        assert got == expected and str(got) == text


@SETTINGS
@given(st.text(max_size=20))
@example("ppp0 ")
@example("ppp0\n")
def test_a_device_is_accepted_exactly_when_it_is_one_safe_token(text):
    safe = (text.isascii() and 1 <= len(text) <= 15 and text not in (".", "..")
            and all(ch in string.ascii_letters + string.digits + "_.+@-" for ch in text))
    try:
        assert parse_device(text) == text and safe
    except InputError as exc:
        one_line(exc)
        assert not safe


@SETTINGS
@given(st.one_of(st.integers(-5, 2**33).map(str), st.text(max_size=12)))
def test_metric_and_table_accept_only_plain_numbers_in_range(text):
    plain = text.isascii() and text.isdigit() and 0 < len(text) <= 10
    try:
        assert parse_metric(text) == int(text) and plain and int(text) < 2**32
    except InputError as exc:
        one_line(exc)
        assert not plain or int(text) >= 2**32
    try:
        table = parse_table(text)
    except InputError as exc:
        one_line(exc)
    else:
        assert table == text.lstrip("0") or table == str(int(text))
        assert " " not in table and "\n" not in table


@SETTINGS
@given(routes, ifnames)
def test_whatever_validation_accepts_becomes_safe_ip_tokens(route, link):
    """No accepted value can become a second argument or a second `ip -batch` line."""
    kernel = KernelRoute(dst=route.dst, dev=route.dev or link, gw=route.gw if route.family == 4 else None,
                         metric=route.metric, table=route.table)
    for verb in ("add", "replace", "del"):
        tokens = change_tokens(Change(verb, kernel))
        assert all(token and not any(ch.isspace() or ch in "#;'\"\\" for ch in token) for token in tokens)
        assert tokens[tokens.index("proto") + 1] == str(C.RT_PROTO)


# -- the command line ------------------------------------------------------------------------

words = st.one_of(near_ipv4, st.sampled_from(["add", "del", "list", "apply", "--peer", "--dst", "--gw", "--dev",
                                              "--metric", "--table", "--json", "--dry-run", "--force", "all",
                                              "10.255.10.2", "10.9.0.0/24", "ppp0", "--peer=", "--", "-h"]),
                  st.text(max_size=12))


@SETTINGS
@given(st.lists(words, max_size=8))
def test_any_command_line_exits_0_1_or_2_with_one_error_line_and_never_a_traceback(tmp_path_factory, argv):
    """In-process, with every `ip` pointed at a namespace that does not exist: nothing can touch a kernel."""
    assume("--netns" not in argv and not any(a.startswith("--netns") for a in argv) and "--help" not in argv
           and "-h" not in argv and "--user" not in argv)
    store = tmp_path_factory.mktemp("store")
    argv = argv + ["--netns", "l2t-no-such-namespace"] if argv and argv[0] in ("add", "del", "apply") else argv
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace") for _ in range(2))
    os.environ[C.STORE_DIR_ENV] = str(store)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.run(argv)
    finally:
        del os.environ[C.STORE_DIR_ENV]
    err.flush()
    err_text = err.buffer.getvalue().decode("utf-8")
    errors = [line for line in err_text.splitlines() if not line.startswith(f"{C.PROG}: warning: ")]
    assert code in (0, 1, 2), (argv, code)
    assert "Traceback" not in err_text and "internal error" not in err_text, err_text
    if code != 0:
        assert len(errors) == 1 and errors[0].startswith(f"{C.PROG}: error: "), (argv, err_text)
        assert errors[0].isprintable() and len(errors[0]) < 600
    if code == 2 and argv[:1] != ["list"]:
        assert [n for n in os.listdir(store) if n.endswith(C.ROUTE_FILE_SUFFIX)] == [], argv
