"""Property-based tests (hypothesis): the file format round trip and argument validation.

Each property is checked against an independent oracle (the ipaddress module, or a
plain re-implementation), not against the code it tests.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import re
import string

from conftest import NOWHERE
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from l2tproute.core import constants as C
from l2tproute.core.model import (
    Change,
    InputError,
    KernelRoute,
    Route,
    parse_destination,
    parse_device,
    parse_gateway,
    parse_metric,
    parse_peer,
    parse_table,
)
from l2tproute.core.routefile import BLANK, COMMENT, INVALID, LOOSE, ROUTE, format_route, parse, parse_line, serialize
from l2tproute.fronts import cli
from l2tproute.system.iproute2 import IpRoute2, change_tokens
from l2tproute.system.store import Store

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
    # The lowest bit set, not `+ 1`: 255.255.255.255 + 1 does not exist.
    st.builds(lambda net, plen: f"{ipaddress.IPv4Address(int(net.network_address) | 1)}/{plen}",
              v4_networks, st.integers(0, 31))))
@example("255.255.255.255/31")
@example("10.0.0.1/24")
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


# Text a caller could type where a number or a table goes: boundaries, leading zeros,
# what strtoul(base 0) would read as hex or octal, signs, blanks, non-ASCII digits, names.
numberish = st.one_of(
    st.integers(0, 2**32 + 5).map(str),
    st.builds(lambda zeros, n: "0" * zeros + str(n), st.integers(1, 3), st.integers(0, 2**32 + 5)),
    st.sampled_from(["0", "1", "253", "254", "255", str(2**32 - 1), str(2**32), "010", "0x10", "+5", "-1", " 5",
                     "5 ", "5\n", "1e3", "\u0661", "\uff15", "", "main", "local", "default", "unspec", "all",
                     "users", "a b", "x;y"]),
    st.text(max_size=12),
)


def decimal(text: str) -> int | None:
    """What an admin means by the text, if it is a plain decimal number (never hex or octal)
    of at most 10 digits (the most 2**32-1 needs; longer text is refused unread)."""
    return int(text, 10) if text.isascii() and text.isdigit() and len(text) <= 10 else None


@SETTINGS
@given(numberish)
@example("010")
@example(str(2**32 - 1))
@example(str(2**32))
def test_a_metric_is_a_decimal_number_the_kernel_then_holds_as_written(netns, text):
    """The oracle is the kernel: an accepted metric, sent as the library sends it, is the
    decimal number written (010 is ten, not strtoul's eight); a refused one is not a plain
    decimal number or is out of the kernel's 32-bit range."""
    number = decimal(text)
    try:
        metric = parse_metric(text)
    except InputError as exc:
        one_line(exc)
        assert number is None or number > 2**32 - 1, text
        return
    assert number is not None and metric == number, text
    route = KernelRoute(dst=ipaddress.IPv4Network("10.77.0.0/16"), dev="lo", metric=metric)
    runner = netns.runner()
    runner.change(Change("replace", route))
    try:
        assert [r.get("metric", 0) for r in netns.tagged()] == [number], text
    finally:
        runner.change(Change("del", route))


@SETTINGS
@given(numberish)
@example("0254")
@example("253")
@example("255")
@example("0")
@example(str(2**32 - 1))
@example(str(2**32))
def test_a_table_is_a_usable_number_or_one_name_token_and_a_number_reaches_the_kernel_as_written(netns, text):
    """Numbers: 1 to 2**32-1 but not the kernel's default (253) and local (255) tables, and
    the kernel holds the route in exactly that table; names: kept as written, one safe token."""
    number = decimal(text)
    try:
        table = parse_table(text)
    except InputError as exc:
        one_line(exc)
        if number is not None:
            assert number in (0, 253, 255) or number > 2**32 - 1, text
        return
    if number is None:
        assert table == text and re.fullmatch(r"[A-Za-z0-9_.-]+", table) and table not in ("local", "default"), text
        return
    assert number not in (0, 253, 255) and number <= 2**32 - 1 and table == str(number), text
    route = KernelRoute(dst=ipaddress.IPv4Network("10.77.0.0/16"), dev="lo", table=table)
    runner = netns.runner()
    runner.change(Change("replace", route))
    try:
        assert [r.get("table", "254") for r in netns.tagged()] == [str(number)], text
    finally:
        runner.change(Change("del", route))


hostile_words = st.sampled_from(["ppp0 table 255", "ppp0\nroute flush", "a;b", "ppp0#", "x'y", 'x"y', "a\\b",
                                 "10.9.0.0/24 dev lo", "-n", "--", "\u0661", "ppp0\x00", " ", ""])


@SETTINGS
@given(dst=st.one_of(v4_networks.map(str), v6_networks.map(str), hostile_words, st.text(max_size=40)),
       gw=st.one_of(unicast.map(str), near_ipv4, hostile_words),
       dev=st.one_of(ifnames, hostile_words, st.text(max_size=20)),
       metric=st.one_of(st.none(), numberish, hostile_words),
       table=st.one_of(st.none(), table_names, numberish, hostile_words))
def test_whatever_validation_accepts_becomes_safe_ip_tokens(dst, gw, dev, metric, table):
    """Text as a caller types it goes through the validators; whatever they let through
    becomes tokens that can be neither a second argument nor a second `ip -batch` line."""
    def accepted(parse, text):
        try:
            return parse(text) if text is not None else None
        except InputError:
            return None

    network = accepted(parse_destination, dst)
    link = accepted(parse_device, dev)
    assume(network is not None and link is not None)
    kernel = KernelRoute(dst=network, dev=link, gw=accepted(parse_gateway, gw) if network.version == 4 else None,
                         metric=accepted(parse_metric, metric), table=accepted(parse_table, table))
    for verb in ("add", "replace", "del"):
        tokens = change_tokens(Change(verb, kernel))
        assert all(token and not any(ch.isspace() or ch in "#;'\"\\" for ch in token) for token in tokens), tokens
        assert tokens[tokens.index("proto") + 1] == str(C.RT_PROTO)
        assert tokens[2] == dst and tokens[tokens.index("dev") + 1] == dev, tokens


# -- the command line ------------------------------------------------------------------------

words = st.one_of(near_ipv4, st.sampled_from(["add", "del", "list", "apply", "--peer", "--dst", "--gw", "--dev",
                                              "--metric", "--table", "--json", "--dry-run", "--force", "all",
                                              "10.255.10.2", "10.9.0.0/24", "ppp0", "--peer=", "--", "-h"]),
                  st.text(max_size=12))


@SETTINGS
@given(st.lists(words, max_size=8))
@example(["--", "apply"])
@example(["--", "del", "--peer", "10.255.10.2", "--dst", "all"])
def test_any_command_line_exits_0_1_or_2_with_one_error_line_and_never_a_traceback(tmp_path_factory, argv):
    """In-process, whatever the words (`-- apply` runs apply too): every `ip` goes to a namespace
    that does not exist (conftest binds every runner made without one), so nothing can touch a kernel."""
    assert IpRoute2().netns == NOWHERE, "a runner without a namespace would run ip on this machine"
    assume("--netns" not in argv and not any(a.startswith("--netns") for a in argv) and "--help" not in argv
           and "-h" not in argv and "--user" not in argv)
    store = tmp_path_factory.mktemp("store")
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace") for _ in range(2))
    outer = os.environ[C.STORE_DIR_ENV]
    os.environ[C.STORE_DIR_ENV] = str(store)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.run(argv)
    finally:
        os.environ[C.STORE_DIR_ENV] = outer
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
