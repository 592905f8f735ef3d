"""Routes l2tp-routectl did not install are never replaced or deleted, whatever command or
hook runs; each conflict is reported once, clearly; `--force` is the only way past it.

The namespace holds a default route, a connected network, and `proto static`, `proto
bird` and `proto boot` routes for destinations that users also ask for (in their files,
written by hand, and through `add`). Two users are online, one offline.
"""

from __future__ import annotations

import json
import os
import syslog
from pathlib import Path

import forkcli
import pytest

from l2tproute.core import constants as C
from l2tproute.fronts import link_events as hook
from l2tproute.system.iproute2 import IpRoute2
from l2tproute.system.store import Store

P, Q, R = "10.255.10.2", "10.255.10.3", "10.255.10.4"  # P on ppp0, Q on ppp1, R offline
LAN = "192.168.50.0/24"
FOREIGN = {  # destination: (protocol as `ip -j -N` shows it, name in our messages, how it is added)
    "172.30.0.0/24": ("4", "static", ["via", "192.168.50.2", "proto", "static"]),
    "172.31.0.0/24": ("12", "bird", ["via", "192.168.50.3", "proto", "bird"]),
    "172.29.0.0/24": ("3", "boot", ["via", "192.168.50.4"]),
}
OURS = "10.9.0.0/24"


class Log:
    def __init__(self):
        self.records: list[tuple[int, str]] = []

    def __call__(self, priority: int, message: str) -> None:
        self.records.append((priority, message))

    def text(self) -> str:
        return "\n".join(m for _, m in self.records)


@pytest.fixture
def server(netns, store_dir, monkeypatch):
    for name in ("SUDO_UID", "SUDO_USER"):
        monkeypatch.delenv(name, raising=False)
    netns.add_lan("lan0", "192.168.50.1/24")
    netns.ip("route", "add", "default", "via", "192.168.50.254", "proto", "static")
    for dst, (_num, _name, how) in FOREIGN.items():
        netns.ip("route", "add", dst, *how)
    netns.add_ppp("ppp0", P)
    netns.add_ppp("ppp1", Q)
    return netns


def foreign(ns) -> list:
    """Every route but ours, both families, exactly as the kernel shows it."""
    return sorted(json.dumps(r, sort_keys=True) for fam in (4, 6) for r in ns.routes(fam)
                  if r.get("protocol") != str(C.RT_PROTO))


def cli(ns, *args: str) -> forkcli.Result:
    argv = list(args)
    if argv[0] in ("add", "del", "apply", "status"):
        argv[1:1] = ["--netns", ns.name]
    return forkcli.run(argv)


def write(store_dir: Path, peer: str, *dsts: str) -> None:
    (store_dir / f"{peer}{C.ROUTE_FILE_SUFFIX}").write_text("".join(f"{d} via {peer}\n" for d in dsts))


def run_hook(direction: str, ns, store_dir: Path, iface: str, peer: str) -> Log:
    log = Log()
    assert hook.main(direction, ["l2tp-routes", iface, "/dev/pts/1", "0", "10.254.0.1", peer, ""], {}, log=log,
                     store=Store(str(store_dir)), runner=IpRoute2(ns.name), proc_sys="/nonexistent") == 0
    return log


# -- add ------------------------------------------------------------------------------------

@pytest.mark.parametrize("peer", [P, R], ids=["online", "offline"])
@pytest.mark.parametrize("dst", list(FOREIGN))
def test_add_refuses_a_destination_held_by_a_foreign_route_and_names_it(server, store_dir, dst, peer):
    before = foreign(server)
    result = cli(server, "add", "--peer", peer, "--dst", dst)
    assert result.returncode == C.EXIT_USAGE, result
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{C.PROG}: error: "), result.err
    assert f"proto {FOREIGN[dst][1]}" in lines[0] and "did not install" in lines[0] and "--force" in lines[0]
    assert foreign(server) == before and server.tagged() == []
    assert os.listdir(store_dir) in ([], [C.LOCK_FILE_NAME])


@pytest.mark.parametrize("dst, why", [("0.0.0.0/0", "every address"), (LAN, "covers 192.168.50.0/24"),
                                       ("192.168.0.0/16", "covers 192.168.50.0/24")])
def test_add_refuses_the_default_route_and_the_servers_own_networks(server, store_dir, dst, why):
    before = foreign(server)
    result = cli(server, "add", "--peer", P, "--dst", dst)
    assert result.returncode == C.EXIT_USAGE and why in result.err and len(result.err.splitlines()) == 1, result
    assert foreign(server) == before and server.tagged() == []


# -- every command and hook over files that ask for foreign destinations ----------------------

def test_no_command_or_hook_touches_foreign_routes_and_each_conflict_is_reported_once(server, store_dir):
    hand = [*FOREIGN, OURS]
    write(store_dir, P, *hand)
    # Written by hand (add refuses them): the default route and the LAN itself.
    (store_dir / f"{Q}{C.ROUTE_FILE_SUFFIX}").write_text(f"0.0.0.0/0 via {Q}\n{LAN} via {Q}\n10.8.0.0/24 via {Q}\n")
    write(store_dir, R, "172.30.0.0/24")
    before = foreign(server)

    steps = {}
    steps["apply"] = cli(server, "apply")
    steps["apply again"] = cli(server, "apply")
    steps["apply --peer"] = cli(server, "apply", "--peer", P)
    steps["status"] = cli(server, "status")
    steps["list"] = cli(server, "list")
    assert foreign(server) == before
    assert server.tagged_set() == {(OURS, P, "ppp0", "main"), ("10.8.0.0/24", Q, "ppp1", "main")}

    for name in ("apply", "apply again", "apply --peer"):
        result = steps[name]
        assert result.returncode == 0, (name, result)
        for dst, (_num, proto, _how) in FOREIGN.items():
            said = [line for line in result.err.splitlines() if dst in line]
            assert len(said) == 1, (name, dst, result.err)  # once, not once per line or per pass
            assert f"proto {proto}" in said[0] and "did not install" in said[0] and "--force" in said[0], said
        for dst in ("0.0.0.0/0", LAN) if name != "apply --peer" else ():  # Q's lines: refused the same way
            said = [line for line in result.err.splitlines() if f"{dst} via" in line]
            assert len(said) == 1 and "did not install" in said[0], (name, dst, result.err)
    assert steps["status"].returncode == 1 and "blocked" in steps["status"].out  # drift is reported, not fixed

    up = run_hook("up", server, store_dir, "ppp0", P)
    assert foreign(server) == before
    for dst in FOREIGN:
        said = [m for p, m in up.records if dst in m]
        assert len(said) == 1 and "did not install" in said[0] and said[0] and \
            all(p == syslog.LOG_WARNING for p, m in up.records if dst in m), up.text()
    run_hook("up", server, store_dir, "ppp1", Q)
    assert foreign(server) == before

    # Deleting a user's line for a foreign destination removes the line, never the route.
    result = cli(server, "del", "--peer", P, "--dst", "172.30.0.0/24")
    assert result.returncode == 0 and result.err == "", result
    assert foreign(server) == before
    assert "172.30.0.0/24" not in (store_dir / f"{P}{C.ROUTE_FILE_SUFFIX}").read_text()

    down = run_hook("down", server, store_dir, "ppp0", P)
    assert foreign(server) == before, down.text()
    assert server.tagged_set() == {("10.8.0.0/24", Q, "ppp1", "main")}
    for peer in (P, Q, R):
        result = cli(server, "del", "--peer", peer, "--dst", "all")
        assert result.returncode == 0 and result.err == "", result
        assert foreign(server) == before
    run_hook("down", server, store_dir, "ppp1", Q)
    result = cli(server, "apply")
    assert result.returncode == 0 and result.err == "", result
    assert foreign(server) == before and server.tagged() == []


def test_a_link_going_down_leaves_a_foreign_route_via_that_peer_alone(server, store_dir):
    server.ip("route", "add", "172.28.0.0/24", "via", P, "dev", "ppp0", "proto", "static")
    write(store_dir, P, OURS)
    assert cli(server, "apply").returncode == 0
    before = foreign(server)
    run_hook("down", server, store_dir, "ppp0", P)
    assert foreign(server) == before and server.tagged() == []


# -- --force ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dst", list(FOREIGN))
def test_force_is_the_only_way_past_a_foreign_route(server, store_dir, dst):
    write(store_dir, P, dst)
    untouched = [r for r in foreign(server) if dst not in r]
    for argv in (["apply"], ["apply", "--peer", P], ["add", "--peer", P, "--dst", dst]):
        cli(server, *argv)
        assert any(dst in r for r in foreign(server)), argv
    run_hook("up", server, store_dir, "ppp0", P)
    assert any(dst in r for r in foreign(server))

    result = cli(server, "apply", "--force")
    assert result.returncode == 0, result
    assert server.tagged_set() == {(dst, P, "ppp0", "main")}
    assert foreign(server) == untouched  # only that one route was taken over
    (store_dir / f"{P}{C.ROUTE_FILE_SUFFIX}").unlink()
    server.ip("route", "add", "172.27.0.0/24", "via", "192.168.50.5", "proto", "static")
    untouched = foreign(server)
    result = cli(server, "add", "--peer", P, "--dst", "172.27.0.0/24", "--force")
    assert result.returncode == 0, result
    assert ("172.27.0.0/24", P, "ppp0", "main") in server.tagged_set()
    assert foreign(server) == [r for r in untouched if "172.27.0.0/24" not in r]
