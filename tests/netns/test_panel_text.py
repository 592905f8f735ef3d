"""Every line the command prints of its own words reads cleanly in the panel: none contains
`'`, `"`, `<`, `>` or `&` (the panel HTML-escapes the output and its page script escapes it
again, so a quote reaches the admin as `&#039;`). Only `list` prints a route file's lines as
they are, and `--json` prints JSON; everything else is checked here, over every path that
produces a message: help and usage errors (click's own included), each validator with
hostile values, add, del, list, apply and status in each of their outcomes, warnings about
broken files and odd store entries, the kernel's own refusals (`ip` quotes device names),
names the kernel reports (a link whose name holds a quote), and the dry run.
(tests/robustness/test_hostile_input.py checks the same over its corpus of 271 cases.)

    namespace: ppp0 = P (10.255.10.1), ppp1 = Q (10.255.10.2), lan0 = 192.168.50.1/24,
               and a link named a'b<c> holding a static route a user also wants
"""

from __future__ import annotations

import forkcli
import pytest

from l2tproute.core import constants as C
from l2tproute.core.text import FORBIDDEN, clean, is_clean, show

P, Q, R = "10.255.10.1", "10.255.10.2", "10.255.10.3"  # R is offline
ODD_LINK = "a'b<c>"
HOSTILE = ["x'y", 'x"y', "a<b>", "a&b", "it's", "10.0.0.0/8'; reboot; echo '", "", " ", "\u202e10.0.0.0/8"]


def dirty_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not is_clean(line)]


def check(result: forkcli.Result, argv: list[str]) -> None:
    assert "Traceback" not in result.err, (argv, result.err)
    assert dirty_lines(result.err) == [], (argv, result.err)
    if argv[:1] != ["list"] and "--json" not in argv:
        assert dirty_lines(result.out) == [], (argv, result.out)


@pytest.fixture
def server(netns, store_dir):
    netns.add_ppp("ppp0", P)
    netns.add_ppp("ppp1", Q)
    netns.add_lan("lan0", "192.168.50.1/24")
    netns.ip("tuntap", "add", "dev", ODD_LINK, "mode", "tun")
    netns.ip("addr", "add", "192.168.60.1/24", "dev", ODD_LINK)
    netns.ip("link", "set", ODD_LINK, "up")
    netns.ip("route", "add", "172.30.0.0/24", "dev", ODD_LINK, "proto", "static")
    netns.ip("route", "add", "172.31.0.0/24", "via", "192.168.50.2", "proto", "bird")
    netns.ip("route", "add", "10.7.0.0/16", "via", P, "dev", "ppp0")  # the old tool's, for a stored line
    return netns


def cli(ns, *args: str) -> forkcli.Result:
    argv = list(args)
    if argv and argv[0] in ("add", "del", "apply", "status") and "--netns" not in argv:
        argv[1:1] = ["--netns", ns.name]
    result = forkcli.run(argv)
    check(result, argv)
    return result


def test_show_and_clean_never_leave_a_character_the_panel_mangles():
    for value in HOSTILE + ["plain", "10.0.0.0/8", "ppp0", "a" * 500]:
        assert is_clean(show(value)) and show(value).isprintable(), value
    assert show("192.168.1.5/24") == "192.168.1.5/24"  # one plain word: bare
    assert show("x'y") == "[x\\x27y]" and show("") == "[]"
    assert clean("Missing option '--dst'.") == "Missing option --dst."  # click quotes option names
    assert clean('Cannot find device "ppp9"') == "Cannot find device ppp9"  # ip quotes device names
    assert clean("it's <b> & \"x y\"") == "it\\x27s \\x3cb\\x3e \\x26 \\x22x y\\x22"
    assert all(not is_clean(ch) for ch in FORBIDDEN)


@pytest.mark.parametrize("argv", [
    ["--help"], ["-h"], ["add", "--help"], ["del", "--help"], ["list", "--help"], ["apply", "--help"],
    ["status", "--help"], ["--version"], [],
    ["add"], ["add", "--peer"], ["add", "--peer", P], ["add", "--bogus"], ["frob"], ["frob'x<y>"],
    ["add", "--json=3", "--peer", P, "--dst", "10.9.0.0/24"], ["del", "--peer", P, "--dst", "x", "y'z&"],
    ["add", "--peer", P, "--peer", Q, "--dst", "10.9.0.0/24"], ["add", "--peer", P, "--user", "u", "--dst", "x"],
    ["del", "--dst", "all"], ["list", "--peer", P, "extra'word"], ["status", "--user", "no'body"],
    ["--install-completion"],
], ids=repr)
def test_help_and_usage_errors_read_cleanly(server, argv):
    result = cli(server, *argv)
    assert result.out or result.err, argv


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_every_validator_shows_a_hostile_value_without_those_characters(server, value):
    for argv in (["add", "--peer", value, "--dst", "10.9.0.0/24"], ["add", "--peer", P, "--dst", value],
                 ["add", "--peer", P, "--dst", "10.9.0.0/24", "--gw", value],
                 ["add", "--peer", P, "--dst", "10.9.0.0/24", "--dev", value],
                 ["add", "--peer", P, "--dst", "10.9.0.0/24", "--metric", value],
                 ["add", "--peer", P, "--dst", "10.9.0.0/24", "--table", value],
                 ["del", "--peer", P, "--dst", value], ["list", "--peer", value], ["apply", "--peer", value],
                 ["status", "--peer", value], ["list", "--netns", value],
                 ["add", "--user", value, "--dst", "10.9.0.0/24"]):
        result = cli(server, *argv)
        assert result.returncode == C.EXIT_USAGE and len(result.err.splitlines()) == 1, (argv, result)
    assert server.tagged() == []


def test_every_command_in_each_of_its_outcomes_reads_cleanly(server, store_dir):
    store = store_dir
    (store / f"{P}{C.ROUTE_FILE_SUFFIX}").write_bytes(
        b"10.7.0.0/16 via 10.255.10.1\n"  # adopted
        b"172.30.0.0/24 via 10.255.10.1\n"  # blocked by the static route on the odd link
        b"172.31.0.0/24 via 10.255.10.1\n"  # blocked by bird
        b"192.168.1.5/24 via 10.255.10.1\n"  # the old tool's host bits
        b"10.30.0.0/16 via 224.0.0.5\n"
        b"10.31.0.0/16 via 10.255.10.1 it's <b>&\n"  # words a file may hold
        b"10.32.0.0/16 via 10.255.10.1\r\n"
        b"10.33.0.0/16 via 10.255.10.1 dev ppp9\n")  # the kernel refuses: Cannot find device "ppp9"
    (store / f"{Q}{C.ROUTE_FILE_SUFFIX}").write_bytes(b"10.7.0.0/16 via 10.255.10.2\n10.40.0.0/16 via 10.255.10.2\n")
    (store / f"{R}{C.ROUTE_FILE_SUFFIX}").write_bytes(b"10.50.0.0/16 via 10.255.10.3\n")
    (store / "x'y&.routes").write_bytes(b"10.60.0.0/16 via 10.255.10.9\n")  # an odd name in the store
    server.ip("route", "add", "10.99.0.0/16", "via", Q, "dev", "ppp1", "proto", str(C.RT_PROTO))  # extra

    steps = [
        ["status"], ["status", "--peer", P], ["list"], ["list", "--peer", P],
        ["apply", "--dry-run"], ["apply", "--peer", P], ["apply"], ["apply"], ["apply", "--peer", R],
        ["status"],
        ["add", "--peer", P, "--dst", "10.8.0.0/16"], ["add", "--peer", P, "--dst", "10.8.0.0/16"],
        ["add", "--peer", P, "--dst", "10.8.0.0/16", "--dev", "ppp0"],
        ["add", "--peer", R, "--dst", "10.51.0.0/16"], ["add", "--peer", P, "--dst", "10.40.0.0/16"],
        ["add", "--peer", P, "--dst", "0.0.0.0/0"], ["add", "--peer", P, "--dst", "192.168.0.0/16"],
        ["add", "--peer", P, "--dst", "172.30.0.0/24"], ["add", "--peer", R, "--dst", "172.31.0.0/24"],
        ["add", "--peer", P, "--dst", "10.9.0.0/16", "--dev", "ppp9"],
        ["add", "--peer", P, "--dst", "10.9.0.0/16", "--table", "nosuch"],
        ["add", "--peer", P, "--dst", "2001:db8::/32", "--gw", P],
        ["add", "--peer", P, "--dst", "10.9.0.0/16", "--dry-run"],
        ["del", "--peer", P, "--dst", "10.8.0.0/16", "--dry-run"],
        ["del", "--peer", P, "--dst", "10.8.0.0/16"], ["del", "--peer", P, "--dst", "10.8.0.0/16"],
        ["del", "--peer", P, "--dst", "192.168.1.5/24"], ["del", "--peer", P, "--dst", "10.30.0.0/16"],
        ["del", "--peer", P, "--dst", "10.31.0.0/16"], ["del", "--peer", P, "--dst", "192.168.1.7/24"],
        ["del", "--peer", "10.255.10.77", "--dst", "all"], ["del", "--peer", Q, "--dst", "all"],
        ["status", "--json"], ["apply", "--json"], ["list", "--json"],
    ]
    results = {" ".join(argv): cli(server, *argv) for argv in steps}  # cli() checks every line
    # The paths this test means to reach were reached (each said what it is about):
    said = "\n".join(r.out + r.err for r in results.values())
    for needle in ("Adopted route", "blocked", "not valid routes", "was not a valid route", "Cannot find device ppp9",
                   f"dev {clean(ODD_LINK)}", "ignoring", "Dry run", "Route not found", "Route already exists",
                   "is not connected", "cut the server off", "already routed to peer", "did not install",
                   "unknown routing table nosuch", "--gw is for IPv4", "extra", "CRLF line ending",
                   "unknown word", "invalid destination 192.168.1.7/24", "No routes found for peer"):
        assert needle in said, needle
