"""A burst of OpenVPN clients served by the sh hook from root's precompute, within the tasks
Debian's openvpn@.service allows, with the IPv6 half (`server-ipv6`); the root worker's kick.
The real server and clients: tests/openvpnworld.py."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from conftest import REPO, require
from openvpnworld import OWN, openvpn_world, pids_cgroup_root

from l2tproute.core import constants as C

#: Debian 12's /lib/systemd/system/openvpn@.service: TasksMax=10.
TASKS_MAX = 10
BURST = {f"user{i}": (f"pass{i}", f"10.255.10.{i}",
                      f"192.168.{20 + i}.0/24 via 10.255.10.{i}\nfd00:{20 + i}::/64 via 10.255.10.{i}\n"
                      f"10.{i}.0.0/16 via 10.255.10.{i} dev eth1\n") for i in range(3, 9)}


@pytest.fixture
def world():
    with openvpn_world() as w:
        w.add_users(BURST)
        yield w


def _internal_routes(world) -> set[tuple[str, str]]:
    """(network, user) of every iroute OpenVPN took from a client's dynamic config file."""
    found = set()
    for line in (world.root / "server.log").read_text(errors="replace").splitlines():
        if " MULTI: internal route " in line:
            network, _, owner = line.split(" MULTI: internal route ", 1)[1].partition(" -> ")
            found.add((network, owner.split("/", 1)[0]))
    return found


def test_a_burst_of_clients_gets_its_iroutes_within_tasksmax_with_ipv6(world):
    # The limit is what this test is about: a machine without a pids cgroup fails it, never skips it.
    require(pids_cgroup_root() is not None, "a pids cgroup (cgroup v2 with the pids controller, or v1 pids)")
    world.start_server(hooks=True, ipv6=True, pids_max=TASKS_MAX)
    users = list(BURST)
    names = world.start_clients(users[:3], "c2") + world.start_clients(users[3:], "c3")
    # Every client is in, and its hook spooled its event before it returned.
    clients = [(world.logged_address(n), BURST[u][1], world.logged_address(n, 6), u) for n, u in zip(names, users)]
    events = [name.split(",")[1:] for name in world.spooled()]  # without the namespace
    assert sorted((a, p, a6) for _, _, kind, a, p, a6 in events if kind == "vpn-up") == sorted(c[:3] for c in clients)
    assert len(events) == len(users)
    routes = _internal_routes(world)
    for user in users:
        i = int(user[4:])
        assert {(f"192.168.{20 + i}.0/24", user), (f"fd00:{20 + i}::/64", user)} <= routes
    assert not [r for r in routes if r[0].startswith("10.")]  # lines with their own dev
    # No fork was refused in the server's cgroup (v1 and v2 alike count them as max), and the
    # limit was the one set.
    assert (world.cgroup / "pids.max").read_text().split() == [str(TASKS_MAX)]
    assert (world.cgroup / "pids.events").read_text().split() == ["max", "0"]
    world.work()
    six = json.loads(world.ns["s"].ip("-6", "-j", "-N", "route", "show", "proto", str(C.RT_PROTO)).stdout)
    for address, _, address6, user in clients:
        assert [r["dst"] for r in world.routes_via(address)] == [f"192.168.{20 + int(user[4:])}.0/24"]
        # IPv6 lines via the client's IPv6 pool address, on the tun.
        assert [(r["dst"], r["dev"]) for r in six if r.get("gateway") == address6] == [
            (f"fd00:{20 + int(user[4:])}::/64", "tun0")]
    records = {name: (world.sessions / name).read_text() for name in os.listdir(world.sessions)}
    assert records == {f"tun0,{a}": f"{p}\n{a6}\n" for a, p, a6, _ in clients}


def test_without_server_ipv6_the_ipv6_lines_are_skipped(world):
    world.start_server(hooks=True)
    address = world.start_client("user3", "c1")
    [event] = world.wait_spool(lambda n: len(n) == 1)
    assert event.split(",")[3:] == ["vpn-up", address, "10.255.10.3"]
    assert _internal_routes(world) == {("192.168.23.0/24", "user3")}
    world.work()
    assert [r["dst"] for r in world.routes_via(address)] == ["192.168.23.0/24"]


def test_the_worker_is_kicked_after_every_disconnect_one_kick_at_a_time(tmp_path):
    """The hook as root (sudo -n needs no sudoers entry then) with a kick that records what it
    sees in the spool: after the last hook returned, a kick still starts and sees every event."""
    run = tmp_path / "run"
    (run / "spool").mkdir(parents=True)
    (run / OWN).mkdir()
    seen = tmp_path / "kicks"
    kick = tmp_path / "kick"
    kick.write_text(f"#!/bin/sh\nsleep 0.2\nls {run / 'spool'} | wc -l >>{seen}\n")
    hook = tmp_path / "hook"
    text = (REPO / "bin" / "l2tp-routes-openvpn").read_text()
    for old, new in {"LIB=/opt/l2tproute/libexec/l2tproute.sh": f"LIB={REPO / 'lib' / 'l2tproute.sh'}",
                     "KICK=/opt/l2tproute/libexec/l2tp-routes-kick": f"KICK={kick}"}.items():
        assert old in text
        text = text.replace(old, new)
    hook.write_text(text)
    hook.chmod(0o755)
    env = {"script_type": "client-disconnect", "dev": "tun0", "L2TP_RUN_DIR": str(run)}

    def disconnect(n: int) -> None:
        subprocess.run([str(hook)], env={**env, "ifconfig_pool_remote_ip": f"10.10.30.{n}"}, check=True, timeout=10)

    disconnect(2)  # the kick is not executable yet: nothing, and no error
    assert not seen.exists() and len(os.listdir(run / "spool")) == 1
    kick.chmod(0o755)
    for n in range(3, 9):
        disconnect(n)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (run / OWN / ".kick-wanted").exists():
        time.sleep(0.05)
    # The last kick runs after the flag went: wait for the kick lock to be free.
    subprocess.run(["flock", str(run / OWN / "kick.lock"), "true"], check=True, timeout=20)
    counts = [int(x) for x in seen.read_text().split()]
    assert counts[-1] == 7 and 1 <= len(counts) <= 6
