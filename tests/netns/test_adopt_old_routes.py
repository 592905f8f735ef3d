"""After an upgrade, the kernel still holds the routes the old bash tool installed, exactly as it
did: `ip route add DST via GW dev pppN` (no tag: `proto boot`, table main). apply (all, and
--peer) takes over exactly those whose destination, gateway and link are those of a line stored
for the peer of that link; every look-alike stays as it is and is reported as today.

    ppp0 = peer P 10.255.10.1      ppp1 = peer Q 10.255.10.2      lan0 = 192.168.50.1/24

    P's file                      the kernel before the first apply         expected
    10.1.0.0/16 via P             10.1.0.0/16 via P dev ppp0 (boot)         adopted
    10.2.0.0/16 via P dev ppp0    10.2.0.0/16 via P dev ppp0 (boot)         adopted
    10.3.0.0/16 via P             10.3.0.0/16 via Q dev ppp1 (boot)         other link: blocked
    10.4.0.0/16 via P             10.4.0.0/16 via P dev ppp0 proto static   blocked
    10.5.0.0/16 via P             10.5.0.0/16 via 10.255.10.9 dev ppp0      other gateway: blocked
    10.6.0.0/16 via P             10.6.0.0/16 via P dev ppp0 table 100      other table: left, ours added
    10.11.0.0/16 via Q dev ppp1   10.11.0.0/16 via Q dev ppp1 (boot)        the link of Q, not P: blocked
    (no line)                     10.10.0.0/16 via P dev ppp0 (boot)        nobody wants it: left
    Q's file: 10.8.0.0/16 via Q   10.8.0.0/16 via Q dev ppp1 (boot)         adopted by apply (all)
"""

from __future__ import annotations

import json

import forkcli
import pytest
from conftest import OLD_SERVER_PEERS

from l2tproute import transports
from l2tproute.core import constants as C
from l2tproute.core.model import parse_peer
from l2tproute.core.text import is_clean
from l2tproute.fronts import link_events as hook
from l2tproute.ops import applying
from l2tproute.system.iproute2 import IpRoute2
from l2tproute.system.store import Store

#: Reads the kernel: also against the built iproute2 4.15.0 and 5.5.0 (tests/support/iproute2s.py).
pytestmark = pytest.mark.iproute2_versions

P, Q = OLD_SERVER_PEERS
P_FILE = (f"10.1.0.0/16 via {P}\n10.2.0.0/16 via {P} dev ppp0\n10.3.0.0/16 via {P}\n10.4.0.0/16 via {P}\n"
          f"10.5.0.0/16 via {P}\n10.6.0.0/16 via {P}\n10.11.0.0/16 via {Q} dev ppp1\n")
OLD_TOOL = [  # what the old tool ran (and what an admin did by hand next to it)
    ["10.1.0.0/16", "via", P, "dev", "ppp0"],
    ["10.2.0.0/16", "via", P, "dev", "ppp0"],
    ["10.3.0.0/16", "via", Q, "dev", "ppp1"],
    ["10.4.0.0/16", "via", P, "dev", "ppp0", "proto", "static"],
    ["10.5.0.0/16", "via", "10.255.10.9", "dev", "ppp0", "onlink"],
    ["10.6.0.0/16", "via", P, "dev", "ppp0", "table", "100"],
    ["10.11.0.0/16", "via", Q, "dev", "ppp1"],
    ["10.10.0.0/16", "via", P, "dev", "ppp0"],
    ["10.8.0.0/16", "via", Q, "dev", "ppp1"],
]
ADOPTED_P = {("10.1.0.0/16", P, "ppp0", "main"), ("10.2.0.0/16", P, "ppp0", "main")}
LOOK_ALIKES = ("10.3.0.0/16", "10.4.0.0/16", "10.5.0.0/16", "10.6.0.0/16", "10.11.0.0/16", "10.10.0.0/16")


@pytest.fixture
def upgraded(old_server, store_dir):
    """A server right after the installer replaced the old tool: its files and its kernel routes."""
    for args in OLD_TOOL:
        old_server.ip("route", "add", *args)
    (store_dir / f"{P}{C.ROUTE_FILE_SUFFIX}").write_text(P_FILE)
    (store_dir / f"{Q}{C.ROUTE_FILE_SUFFIX}").write_text(f"10.8.0.0/16 via {Q}\n")
    return old_server


def cli(ns, *args: str) -> forkcli.Result:
    argv = list(args)
    if argv[0] in ("add", "del", "apply", "status"):
        argv[1:1] = ["--netns", ns.name]
    return forkcli.run(argv)


def rows_for(ns, *dsts: str) -> list:
    """The kernel rows (every table) of these destinations, exactly as `ip -j` shows them."""
    return sorted(json.dumps(r, sort_keys=True) for r in ns.routes(4) if r["dst"] in dsts)


def test_apply_for_a_peer_takes_over_exactly_the_old_tools_routes_of_its_lines(upgraded, store_dir):
    look_alikes, q_route = rows_for(upgraded, *LOOK_ALIKES), rows_for(upgraded, "10.8.0.0/16")
    result = cli(upgraded, "apply", "--peer", P)
    assert result.returncode == 0, result
    out = result.out.splitlines()
    assert out[1:3] == [f"Adopted route for peer {P}: 10.1.0.0/16 via {P} (installed by the old tool, now tagged "
                        f"proto {C.RT_PROTO})",
                        f"Adopted route for peer {P}: 10.2.0.0/16 via {P} dev ppp0 (installed by the old tool, now "
                        f"tagged proto {C.RT_PROTO})"], result.out
    assert out[-1] == (f"Applied routes for peer {P} on ppp0: 1 installed, 0 updated, 2 adopted, 0 removed, "
                       "0 unchanged, 4 blocked, 0 failed.")
    # The two are ours now, in place (same destination, gateway, link, table), and no boot copy is left.
    assert upgraded.tagged_set() == ADOPTED_P | {("10.6.0.0/16", P, "ppp0", "main")}
    both = ("10.1.0.0/16", "10.2.0.0/16")
    rows = [r for r in upgraded.routes(4) if r["dst"] in both]
    assert [(r["dst"], r["gateway"], r["dev"], r["protocol"], r.get("table", "main"), r.get("metric", 0))
            for r in rows] == [(d, P, "ppp0", str(C.RT_PROTO), "main", 0) for d in both]
    # Every look-alike is as it was (10.6.0.0/16 table 100 too: ours went to main beside it).
    assert [r for r in rows_for(upgraded, *LOOK_ALIKES) if '"protocol": "157"' not in r] == look_alikes
    assert rows_for(upgraded, "10.8.0.0/16") == q_route  # another peer: not in this scope
    blocked = result.err.splitlines()
    assert len(blocked) == 4 and is_clean(result.err), result.err
    for dst in ("10.3.0.0/16", "10.4.0.0/16", "10.5.0.0/16", "10.11.0.0/16"):
        said = [line for line in blocked if f": {dst} via" in line]
        assert len(said) == 1 and "did not install" in said[0] and "--force" in said[0], (dst, result.err)

    again = cli(upgraded, "apply", "--peer", P)
    assert again.returncode == 0 and "adopted" not in again.out and "Adopted" not in again.out, again
    assert "3 unchanged, 4 blocked" in again.out


def test_apply_for_all_takes_over_every_peers_old_routes_and_then_has_nothing_to_do(upgraded, store_dir):
    look_alikes = rows_for(upgraded, *LOOK_ALIKES)
    result = cli(upgraded, "apply")
    assert result.returncode == 0, result
    assert f"Adopted route for peer {Q}: 10.8.0.0/16 via {Q} (installed by the old tool, now tagged proto 157)" \
        in result.out.splitlines()
    assert "1 installed, 0 updated, 3 adopted, 0 removed" in result.out.splitlines()[-1]
    assert upgraded.tagged_set() == ADOPTED_P | {("10.6.0.0/16", P, "ppp0", "main"), ("10.8.0.0/16", Q, "ppp1", "main")}
    assert [r for r in rows_for(upgraded, *LOOK_ALIKES) if '"protocol": "157"' not in r] == look_alikes
    again = cli(upgraded, "apply")
    assert again.returncode == 0 and "dopted" not in again.out, again
    assert "0 installed, 0 updated, 0 removed, 4 unchanged, 4 blocked, 0 failed." in again.out


def test_status_says_apply_takes_the_old_tools_routes_over_and_blocks_the_look_alikes(upgraded, store_dir):
    result = cli(upgraded, "status", "--peer", P)
    assert result.returncode == 1 and is_clean(result.out + result.err), result
    states = {line.split()[1]: line.split()[0] for line in result.out.splitlines() if line.startswith("  ")}
    assert states == {"10.1.0.0/16": "missing", "10.2.0.0/16": "missing", "10.3.0.0/16": "blocked",
                      "10.4.0.0/16": "blocked", "10.5.0.0/16": "blocked", "10.6.0.0/16": "missing",
                      "10.11.0.0/16": "blocked"}, result.out
    assert "installed by the old tool; apply takes it over" in result.out
    assert result.out.count("apply takes it over") == 2
    cli(upgraded, "apply", "--peer", P)
    after = cli(upgraded, "status", "--peer", P)
    assert "apply takes it over" not in after.out and after.out.count("  installed") == 3, after.out


def test_the_library_apply_for_one_peer_adopts_as_the_command_does(upgraded, store_dir):
    """What a hook or worker that calls the library's apply for one peer's link gets."""
    ctx = transports.context(Store(str(store_dir)), IpRoute2(upgraded.name))
    report = applying.apply(ctx, parse_peer(P))
    assert sorted(r.line for r in report.adopted) == ["10.1.0.0/16 via 10.255.10.1",
                                                          "10.2.0.0/16 via 10.255.10.1 dev ppp0"]
    assert upgraded.tagged_set() == ADOPTED_P | {("10.6.0.0/16", P, "ppp0", "main")}


def test_deleting_an_adopted_route_removes_it_from_the_kernel_and_never_a_look_alike(upgraded, store_dir):
    assert cli(upgraded, "apply").returncode == 0
    look_alikes = [r for r in rows_for(upgraded, *LOOK_ALIKES) if '"protocol": "157"' not in r]
    result = cli(upgraded, "del", "--peer", P, "--dst", "10.1.0.0/16")  # what the panel runs
    assert result.returncode == 0 and result.out == f"Deleted route: 10.1.0.0/16 via {P}\n", result
    assert rows_for(upgraded, "10.1.0.0/16") == []
    for dst in ("10.3.0.0/16", "10.4.0.0/16", "10.5.0.0/16", "10.11.0.0/16"):
        assert cli(upgraded, "del", "--peer", P, "--dst", dst).returncode == 0
    assert [r for r in rows_for(upgraded, *LOOK_ALIKES) if '"protocol": "157"' not in r] == look_alikes


def test_without_a_stored_line_an_old_route_is_never_adopted_nor_removed(upgraded, store_dir):
    (store_dir / f"{P}{C.ROUTE_FILE_SUFFIX}").unlink()
    (store_dir / f"{Q}{C.ROUTE_FILE_SUFFIX}").unlink()
    before = upgraded.snapshot()
    for argv in (["apply"], ["apply", "--peer", P], ["del", "--peer", P, "--dst", "all"]):
        assert cli(upgraded, *argv).returncode == 0
    assert upgraded.snapshot() == before and upgraded.tagged() == []


def test_deleting_a_line_before_any_apply_takes_the_old_tools_route_with_it_and_no_look_alike(upgraded, store_dir):
    """The panel may delete a line in the minute between the upgrade and the first apply."""
    before = [r for r in upgraded.routes(4) if r["dst"] != "10.2.0.0/16"]
    result = cli(upgraded, "del", "--peer", P, "--dst", "10.2.0.0/16")
    assert result.returncode == 0 and result.err == "", result
    assert rows_for(upgraded, "10.2.0.0/16") == [] and upgraded.tagged() == []
    for dst in LOOK_ALIKES[:5]:  # the stored lines whose kernel routes are not the old tool's
        assert cli(upgraded, "del", "--peer", P, "--dst", dst).returncode == 0
    assert [r for r in upgraded.routes(4) if r["dst"] != "10.2.0.0/16"] == before
    assert upgraded.tagged() == []


def test_the_up_hook_takes_over_the_old_tools_routes_on_that_link_only(upgraded, store_dir):
    """The up path (the hook's library call, as the worker runs it) adopts by the same rule."""
    look_alikes, q_route = rows_for(upgraded, *LOOK_ALIKES), rows_for(upgraded, "10.8.0.0/16")
    said: list[str] = []
    assert hook.main("up", ["l2tp-routes", "ppp0", "/dev/pts/3", "0", "10.254.0.1", P, ""], {},
                     log=lambda priority, message: said.append(message), store=Store(str(store_dir)),
                     runner=IpRoute2(upgraded.name), proc_sys="/nonexistent") == 0
    assert upgraded.tagged_set() == ADOPTED_P | {("10.6.0.0/16", P, "ppp0", "main")}, said
    assert [r for r in rows_for(upgraded, *LOOK_ALIKES) if '"protocol": "157"' not in r] == look_alikes
    assert rows_for(upgraded, "10.8.0.0/16") == q_route  # the link of another peer: not this event's
    assert [m for m in said if "dopted" in m and "10.1.0.0/16" in m], said


def down_hook(upgraded, store_dir, link: str, peer: str) -> list[str]:
    said: list[str] = []
    assert hook.main("down", ["l2tp-routes", link, "/dev/pts/3", "0", "10.254.0.1", peer, ""], {},
                     log=lambda priority, message: said.append(message), store=Store(str(store_dir)),
                     runner=IpRoute2(upgraded.name), proc_sys="/nonexistent") == 0
    return said


def test_the_down_hook_before_any_apply_removes_exactly_the_old_tools_routes_of_that_peers_lines(upgraded, store_dir):
    """pppd's persist or demand keeps the link and its peer when the user goes: the old tool's routes
    of the lines stored for that peer on that link go, by the rule adoption uses; nothing else does."""
    others = [r for r in upgraded.routes(4) if r["dst"] not in ("10.1.0.0/16", "10.2.0.0/16")]
    said = down_hook(upgraded, store_dir, "ppp0", P)
    assert rows_for(upgraded, "10.1.0.0/16", "10.2.0.0/16") == [], said
    assert upgraded.routes(4) == others  # look-alikes, the route nobody stored, the other peer's link
    assert upgraded.tagged() == []
    assert said[-1] == f"ip-down ppp0 peer {P}: Released ppp0 of peer {P}: 2 removed, 0 failed.", said
    assert {m for m in said if "Removed route" in m} == {f"ip-down ppp0 peer {P}: Removed route: {d} dev ppp0"
                                                         for d in ("10.1.0.0/16", "10.2.0.0/16")}, said
    again = down_hook(upgraded, store_dir, "ppp0", P)
    assert upgraded.routes(4) == others and again[-1].endswith(": 0 removed, 0 failed."), again


def test_the_down_hook_leaves_the_old_tools_routes_of_a_peer_without_lines(upgraded, store_dir):
    (store_dir / f"{Q}{C.ROUTE_FILE_SUFFIX}").unlink()
    before = upgraded.snapshot()
    said = down_hook(upgraded, store_dir, "ppp1", Q)
    assert upgraded.snapshot() == before, said
