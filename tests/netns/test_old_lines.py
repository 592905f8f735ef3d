"""Route files written by the old tool on a server that was upgraded: lines today's rules refuse
(host bits, a multicast or otherwise invalid gateway, 0.0.0.0/0, an unknown word) stay listable
and removable with the panel's own call, `del --peer P --dst DESTINATION-AS-WRITTEN`; a destination
that is no valid network and matches no stored line is refused as before; `status` tells the
admin, one line per peer, what to do about such lines.

    namespace: ppp0 = peer P (10.255.10.1), ppp1 = peer Q (10.255.10.2), lan0 = 192.168.50.0/24
"""

from __future__ import annotations

import json

import forkcli
import pytest
from conftest import OLD_SERVER_PEERS

from l2tproute.core import constants as C
from l2tproute.core.text import is_clean

P, Q = OLD_SERVER_PEERS
HEAD = b"# written by the old tool\n"
TAIL = (b"10.0.0.0/24 via 10.255.10.1\n"  # a longer prefix of 10.0.0.0/2: never touched by it
        b"10.20.0.0/16 via 10.255.10.1\r\n")
KEEP = HEAD + TAIL
OLD_LINES = {  # the line as the old tool stored it: what today's rules say about it
    "host bits": (b"192.168.1.5/24 via 10.255.10.1\n", "host bits are set"),
    "host bits, prefix of a kept line": (b"10.0.0.0/2 via 10.255.10.1\n", "host bits are set"),
    "multicast gateway": (b"10.30.0.0/16 via 224.0.0.5\n", "not a unicast host address"),
    "broadcast gateway": (b"10.31.0.0/16 via 255.255.255.255\n", "not a unicast host address"),
    "gateway with a leading zero": (b"10.32.0.0/16 via 10.255.10.01\n", "invalid gateway"),
    "unknown extra word": (b"10.33.0.0/16 via 10.255.10.1 onlink\n", "onlink"),
    "no gateway": (b"10.34.0.0/16\n", "expected DST via GATEWAY"),
}


@pytest.fixture
def server(old_server):
    return old_server


def cli(ns, *args: str) -> forkcli.Result:
    argv = list(args)
    if argv[0] in ("add", "del", "apply", "status"):
        argv[1:1] = ["--netns", ns.name]
    return forkcli.run(argv)


def path_of(store_dir, peer: str):
    return store_dir / f"{peer}{C.ROUTE_FILE_SUFFIX}"


def store_entries(store_dir) -> dict:
    return {p.name: p.read_bytes() for p in store_dir.iterdir()}


@pytest.mark.parametrize("kind", list(OLD_LINES))
def test_del_removes_an_old_line_todays_rules_refuse_by_its_destination_as_written(server, store_dir, kind):
    line, why = OLD_LINES[kind]
    dst = line.split()[0].decode()
    path = path_of(store_dir, P)
    path.write_bytes(HEAD + line + TAIL)
    assert cli(server, "apply").returncode == 0
    kernel = server.snapshot()

    listed = cli(server, "list", "--peer", P)  # the panel shows the line, so it can offer to delete it
    assert line.decode().rstrip("\n") in listed.out.splitlines()

    result = cli(server, "del", "--peer", P, "--dst", dst)
    assert result.returncode == 0, result
    assert result.out == f"Deleted route: {line.decode().rstrip()}\n"
    warnings = result.err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"{C.PROG}: warning: {path} line 2 was not a valid route")
    assert why in warnings[0] and is_clean(result.err)
    assert path.read_bytes() == KEEP  # every other line byte for byte, the longer prefix included
    assert server.snapshot() == kernel  # nothing of ours was installed for it; nothing else is touched

    again = cli(server, "del", "--peer", P, "--dst", dst)
    if kind.startswith("host bits"):  # no such network, and no line left: refused as a wrong argument
        assert again.returncode == C.EXIT_USAGE and len(again.err.splitlines()) == 1, again
    else:
        assert again.returncode == 0 and again.out == f"Route not found for peer {P}: {dst}\n", again
    assert path.read_bytes() == KEEP


def test_del_removes_every_line_with_that_text_and_our_route_for_it_never_a_route_not_ours(server, store_dir):
    path = path_of(store_dir, P)
    path.write_bytes(b"10.30.0.0/16 via 10.255.10.1\n10.30.0.0/16 via 224.0.0.5\n10.3.0.0/16 via 10.255.10.1\n"
                     b"10.30.0.0/16 via 10.255.10.1 dev ppp0 weight 5\n")
    path_of(store_dir, Q).write_bytes(b"10.31.0.0/16 via 224.0.0.6\n")
    assert cli(server, "apply").returncode == 0
    assert ("10.30.0.0/16", P, "ppp0", "main") in server.tagged_set()
    # Ours for the same destination in another table (from an earlier, since edited line) goes
    # too; another user's for it, and one we did not install, stay.
    server.ip("route", "add", "10.30.0.0/16", "via", P, "dev", "ppp0", "table", "100", "proto", str(C.RT_PROTO))
    server.ip("route", "add", "10.30.0.0/16", "via", Q, "dev", "ppp1", "metric", "5", "proto", str(C.RT_PROTO))
    server.ip("route", "add", "10.30.0.0/16", "via", P, "dev", "ppp0", "metric", "7", "proto", "static")
    before = server.snapshot()
    mine = [r for r in before if '"dst": "10.30.0.0/16"' in r and '"dev": "ppp0"' in r and '"protocol": "157"' in r]
    assert len(mine) == 2, before

    result = cli(server, "del", "--peer", P, "--dst", "10.30.0.0/16")
    assert result.returncode == 0, result
    assert result.out.splitlines() == ["Deleted route: 10.30.0.0/16 via 10.255.10.1",
                                       "Deleted route: 10.30.0.0/16 via 224.0.0.5",
                                       "Deleted route: 10.30.0.0/16 via 10.255.10.1 dev ppp0 weight 5"]
    assert [w.split(" line ")[1][:2] for w in result.err.splitlines()] == ["2 ", "4 "], result.err
    assert path.read_bytes() == b"10.3.0.0/16 via 10.255.10.1\n"
    assert server.snapshot() == [r for r in before if r not in mine]


def test_a_destination_that_is_invalid_and_matches_no_line_is_refused_and_changes_nothing(server, store_dir):
    path_of(store_dir, P).write_bytes(b"192.168.1.5/24 via 10.255.10.1\n10.0.0.0/24 via 10.255.10.1\n")
    assert cli(server, "apply").returncode == 0
    before, kernel = store_entries(store_dir), server.snapshot()
    for dst in ("192.168.1.7/24", "192.168.1.5/2", "192.168.1.5", "10.0.0.0/24 ", "192.168.1.5/24x", "x'y"):
        for peer in (P, Q):
            result = cli(server, "del", "--peer", peer, "--dst", dst)
            assert result.returncode == C.EXIT_USAGE and result.out == "", (dst, result)
            lines = result.err.splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"{C.PROG}: error: invalid destination"), result.err
            assert is_clean(result.err)
    assert store_entries(store_dir) == before and server.snapshot() == kernel


def test_del_all_still_removes_the_whole_file_old_lines_included(server, store_dir):
    path = path_of(store_dir, P)
    path.write_bytes(KEEP + b"".join(line for line, _ in OLD_LINES.values()))
    assert cli(server, "apply").returncode == 0
    result = cli(server, "del", "--peer", P, "--dst", "all")
    assert result.returncode == 0 and result.err == "", result
    assert not path.exists() and server.tagged_set() == set()


def test_a_del_that_exits_0_leaves_no_line_it_was_asked_to_remove(server, store_dir):
    path = path_of(store_dir, P)
    old = b"".join(line for line, _ in OLD_LINES.values())
    path.write_bytes(KEEP + old + b"10.33.0.0/16 via 10.255.10.1\n" + old)
    for line in sorted({raw.split()[0].decode() for raw in (KEEP + old).splitlines() if not raw.startswith(b"#")}):
        result = cli(server, "del", "--peer", P, "--dst", line)
        assert result.returncode == 0, result
        rest = path.read_bytes() if path.exists() else b""
        assert not [raw for raw in rest.splitlines() if raw.split()[:1] == [line.encode()]], (line, rest)
    assert not path.exists()  # only the comment was left: a file without routes goes


def test_deleting_the_last_valid_route_keeps_the_old_lines_and_their_file(server, store_dir):
    path = path_of(store_dir, P)
    path.write_bytes(b"10.0.0.0/24 via 10.255.10.1\n192.168.1.5/24 via 10.255.10.1\n# note\n")
    result = cli(server, "del", "--peer", P, "--dst", "10.0.0.0/24")
    assert result.returncode == 0 and result.err == "", result
    assert path.read_bytes() == b"192.168.1.5/24 via 10.255.10.1\n# note\n"  # the panel still lists it
    assert cli(server, "del", "--peer", P, "--dst", "192.168.1.5/24").returncode == 0
    assert not path.exists()


# -- status --------------------------------------------------------------------------------------

def test_status_says_once_per_peer_which_old_lines_are_refused_and_what_to_do(server, store_dir):
    path_of(store_dir, P).write_bytes(KEEP + b"".join(line for line, _ in OLD_LINES.values()))
    path_of(store_dir, Q).write_bytes(b"10.50.0.0/16 via 10.255.10.2\n")
    assert cli(server, "apply").returncode == 0
    result = cli(server, "status")
    assert result.returncode == 0, result  # the valid lines are all installed: no drift
    old = [line for line in result.out.splitlines() if "not valid routes" in line]
    assert len(old) == 1, result.out
    assert f"lines 4, 5, 6, 7, 8, 9, 10 of {P}{C.ROUTE_FILE_SUFFIX} are not valid routes" in old[0]
    assert f"del --peer {P} --dst" in old[0] and f"list --peer {P}" in old[0]
    peer_lines = result.out.splitlines()
    assert peer_lines.index(old[0]) == peer_lines.index(f"Peer {P}: connected on ppp0") + 1
    assert "line 4" not in result.err and is_clean(result.out + result.err)  # said once, not once per line

    doc = json.loads(cli(server, "status", "--json").out)
    mine = next(p for p in doc["peers"] if p["peer"] == P)
    assert [item["line"] for item in mine["invalid_lines"]] == [4, 5, 6, 7, 8, 9, 10]
    assert next(p for p in doc["peers"] if p["peer"] == Q)["invalid_lines"] == []
