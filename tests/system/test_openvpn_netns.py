"""OpenVPN sessions belong to the namespace their server and tun are in: a real OpenVPN 2.6 server in
namespace S with a connected client (tests/openvpnworld.py), and applies for another namespace that
share its run dir (as the installer's demo shares /run/l2tproute with the host's server).

Before the records were keyed by namespace, an apply for another namespace judged S's records
against that namespace's links, found no tun0 there, and dropped them: the next apply in S then
removed the live client's routes until it reconnected.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import in_namespace, routectl_env, routectl_path, run_routectl
from openvpnworld import openvpn_world

from l2tproute.core import constants as C


def routectl_in(ns, env: dict, *args: str) -> subprocess.CompletedProcess:
    """The console script with exactly `args`, started inside `ns` (None: this test's namespace)."""
    return subprocess.run(in_namespace([routectl_path(), *args], ns), capture_output=True, text=True,
                          env=routectl_env(env), timeout=60)


@pytest.fixture
def world():
    with openvpn_world() as w:
        yield w


def test_a_live_clients_route_survives_applies_for_another_namespace_then_the_timers(world, netns):
    world.start_server(hooks=True)
    a1 = world.start_client("user1", "c1")
    world.wait_spool(lambda n: len(n) == 1)
    world.work()
    route = world.routes_via(a1)
    assert [(r["dst"], r["dev"]) for r in route] == [("192.168.20.0/24", "tun0")]
    assert os.listdir(world.sessions) == [f"tun0,{a1}"]
    env = {C.STORE_DIR_ENV: str(world.store), C.RUN_DIR_ENV: str(world.run), C.CHAP_SECRETS_ENV: str(world.chap)}
    # Another namespace (empty: no tun0, nobody connected), asked from outside S and from inside it.
    for inside in (None, world.ns["s"]):
        other = routectl_in(inside, env, "apply", "--netns", netns.name)
        assert other.returncode == 0, other.stdout + other.stderr
        assert "ended without a client-disconnect" not in other.stderr
        assert os.listdir(world.sessions) == [f"tun0,{a1}"]
        status = routectl_in(inside, env, "status", "--json", "--netns", netns.name)
        assert status.returncode in (0, 1) and '"openvpn": [{' not in status.stdout, status.stdout
    assert netns.tagged_set() == set()
    # The timer's apply, in S: the session is still live, its route stays.
    timer = run_routectl("apply", ns=world.ns["s"], env=env)
    assert timer.returncode == 0, timer.stdout + timer.stderr
    assert "ended without a client-disconnect" not in timer.stderr
    assert world.routes_via(a1) == route
    assert os.listdir(world.sessions) == [f"tun0,{a1}"]
    assert world.ping("192.168.20.2")
