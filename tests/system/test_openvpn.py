"""The per-user routes over the real OpenVPN server: see tests/support/openvpnworld.py for the world."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import time

import pytest
from conftest import run_routectl
from openvpnworld import openvpn_world

from l2tproute.core import constants as C
from l2tproute.system.netns import named


@pytest.fixture
def world():
    with openvpn_world() as w:
        yield w


@pytest.mark.iproute2_versions  # the worker and the commands read the kernel through each ip
def test_openvpn_user_gets_its_routes_and_loses_exactly_them(world):
    # Without the hook: the user's LAN is unreachable through the tunnel.
    world.start_server(hooks=False)
    world.start_client("user1", "c1")
    assert not world.ping("192.168.20.2")
    world.stop("client-user1-c1")
    world.stop("server")

    world.start_server(hooks=True)
    a1 = world.start_client("user1", "c1")
    a2 = world.start_client("user2", "c2")
    names = world.wait_spool(lambda n: sum(",vpn-up," in x for x in n) == 2)
    assert sorted(n.split(",", 3)[3] for n in names) == [f"vpn-up,{a1},10.255.10.1", f"vpn-up,{a2},10.255.10.2"]
    # The hook ran as the server's user and group: its events belong to nobody:www-data.
    owners = {(os.stat(world.run / "spool" / n).st_uid, os.stat(world.run / "spool" / n).st_gid) for n in names}
    assert owners == {(pwd.getpwnam("nobody").pw_uid, grp.getgrnam("www-data").gr_gid)}
    world.work()

    r1, r2 = world.routes_via(a1), world.routes_via(a2)
    assert [(r["dst"], r["dev"], r["protocol"]) for r in r1] == [("192.168.20.0/24", "tun0", str(C.RT_PROTO))]
    assert [(r["dst"], r["dev"], r["protocol"]) for r in r2] == [("192.168.21.0/24", "tun0", str(C.RT_PROTO))]
    sessions = sorted(os.listdir(world.sessions))
    assert sessions == sorted([f"tun0,{a1}", f"tun0,{a2}"])
    assert (world.sessions / f"tun0,{a1}").read_text() == "10.255.10.1\n"
    assert world.ping("192.168.20.2")

    # The timer's apply leaves live OpenVPN routes alone and removes one of an ended session.
    world.ns["s"].ip("route", "add", "192.168.99.0/24", "via", "10.10.30.99", "dev", "tun0", "proto", str(C.RT_PROTO))
    env = {C.STORE_DIR_ENV: str(world.store), C.RUN_DIR_ENV: str(world.run), C.CHAP_SECRETS_ENV: str(world.chap)}
    result = run_routectl("apply", ns=world.ns["s"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert world.routes_via("10.10.30.99") == []
    assert world.routes_via(a1) == r1 and world.routes_via(a2) == r2
    assert world.ping("192.168.20.2")

    # One user's commands while it is on OpenVPN only: add installs via its client at once and
    # says OpenVPN itself routes it from the next reconnect on; apply --peer and the timer put a
    # lost route back; del takes exactly that route out; a line with its own dev is not routed there.
    def routectl(*args):
        result = run_routectl(*args, ns=s, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    s = world.ns["s"]
    out = routectl("add", "--peer", "10.255.10.1", "--dst", "192.168.40.0/24", "--metric", "7")
    assert f"Installed over OpenVPN on tun0 via {a1}" in out and "next reconnect" in out
    assert sorted((r["dst"], r.get("metric")) for r in world.routes_via(a1)) == [
        ("192.168.20.0/24", None), ("192.168.40.0/24", 7)]
    out = routectl("add", "--peer", "10.255.10.1", "--dst", "192.168.41.0/24", "--dev", "s-c1")
    assert "connected over OpenVPN on tun0, where this line is not routed: it has its own dev s-c1" in out
    s.ip("route", "del", "192.168.40.0/24", "via", a1, "dev", "tun0", "metric", "7")
    out = routectl("apply", "--peer", "10.255.10.1")
    assert "Installed route for peer 10.255.10.1: 192.168.40.0/24 via 10.255.10.1 metric 7 (over OpenVPN on tun0)" \
        in out, out
    assert "Applied routes for peer 10.255.10.1 on tun0 (OpenVPN): 1 installed" in out
    s.ip("route", "del", "192.168.40.0/24", "via", a1, "dev", "tun0", "metric", "7")
    out = routectl("apply")
    assert "Applied routes: 2 peers connected, 0 offline; 1 installed" in out, out
    assert sorted(r["dst"] for r in world.routes_via(a1)) == ["192.168.20.0/24", "192.168.40.0/24"]
    routectl("del", "--peer", "10.255.10.1", "--dst", "192.168.40.0/24")
    assert world.routes_via(a1) == r1 and world.routes_via(a2) == r2
    routectl("del", "--peer", "10.255.10.1", "--dst", "192.168.41.0/24")
    assert world.ping("192.168.20.2")

    # Disconnect: exactly that client's routes and record go.
    world.stop("client-user1-c1")
    world.wait_spool(lambda n: any(x.endswith(f",vpn-down,{a1}") for x in n))
    world.work()
    assert world.routes_via(a1) == []
    assert world.routes_via(a2) == r2
    assert os.listdir(world.sessions) == [f"tun0,{a2}"]
    assert not world.ping("192.168.20.2")


def test_forged_spool_events_route_nothing(world):
    world.start_server(hooks=True)
    a2 = world.start_client("user2", "c2")
    world.wait_spool(lambda n: len(n) == 1)
    world.work()
    before = json.loads(world.ns["s"].ip("-j", "route", "show", "table", "all").stdout)
    seq = time.time_ns()
    here = named(world.ns["s"].name)  # the server's namespace, where the worker runs
    forged = [
        f"{here},tun0,{seq},vpn-up,10.10.30.77,10.255.10.1",  # no such client is connected
        f"{here},tun0,{seq + 1},vpn-up,{a2},10.255.10.1",  # user2's address for user1's routes
        f"{here},s-c1,{seq + 2},vpn-up,172.31.1.9,10.255.10.1",  # not a tun
        f"{here},tun9,{seq + 3},vpn-up,10.10.30.5,10.255.10.1",  # no such link
        f"{here},tun0,{seq + 4},vpn-up,10.10.31.5,10.255.10.1",  # outside the tun's subnet
        f"{here},tun0,{seq + 5},vpn-up,10.10.30.1,10.255.10.1",  # the server's own address
        f"{here},tun0,{seq + 6},vpn-down,10.10.30.88",  # no session there
        f"{here},tun0,{seq + 7},vpn-up,10.10.30.5,10.255.10.1;ip",  # not an event at all
    ]
    for name in forged:
        fd = os.open(world.run / "spool" / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
        os.close(fd)
    world.work()
    after = json.loads(world.ns["s"].ip("-j", "route", "show", "table", "all").stdout)
    # The kernel's own routes come and go by themselves (a veth's IPv6 link-local address
    # arrives once duplicate address detection ends); a forged event could only add ours or a static.
    assert [r for r in after if r not in before and r.get("protocol") != "kernel"] == []
    assert [r["dst"] for r in world.routes_via(a2)] == ["192.168.21.0/24"]
    assert os.listdir(world.sessions) == [f"tun0,{a2}"]

    # OpenVPN serves one management client at a time: while another program holds it, the worker
    # cannot check a connecting client. It keeps the client pending (no route yet) and the timer's
    # apply asks OpenVPN again and installs the routes once it answers.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as holder:
        holder.connect(str(world.run / "openvpn.sock"))
        a1 = world.start_client("user1", "c1")
        world.wait_spool(lambda n: len(n) == 1)
        world.work(L2TP_OPENVPN_CLIENT_WAIT="1")
        assert world.routes_via(a1) == []
        assert os.listdir(world.pending) == [f"tun0,{a1}"]
        env = {C.STORE_DIR_ENV: str(world.store), C.RUN_DIR_ENV: str(world.run), C.CHAP_SECRETS_ENV: str(world.chap)}
        waiting = run_routectl("apply", ns=world.ns["s"], env=env, timeout=120)
        assert "1 OpenVPN clients wait to be checked" in waiting.stderr, waiting.stderr
    result = run_routectl("apply", ns=world.ns["s"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Installed route for peer 10.255.10.1: 192.168.20.0/24 via 10.255.10.1 (over OpenVPN on tun0)" \
        in result.stdout, result.stdout
    assert sorted(os.listdir(world.sessions)) == sorted([f"tun0,{a1}", f"tun0,{a2}"])
    assert os.listdir(world.pending) == []
    assert world.ping("192.168.20.2")


def test_sessions_of_one_user_and_of_both_vpns_and_server_stop(world):
    s = world.ns["s"]
    env = {C.STORE_DIR_ENV: str(world.store), C.RUN_DIR_ENV: str(world.run), C.CHAP_SECRETS_ENV: str(world.chap)}
    # user2 is on L2TP first: its route goes via its pppd link.
    s.add_ppp("ppp0", "10.255.10.2")
    assert run_routectl("apply", ns=s, env=env).returncode == 0
    l2tp = world.routes_via("10.255.10.2")
    assert [(r["dst"], r["dev"]) for r in l2tp] == [("192.168.21.0/24", "ppp0")]

    world.start_server(hooks=True)
    a1 = world.start_client("user1", "c1")
    a3 = world.start_client("user2", "c3")  # the L2TP user over OpenVPN too: first come wins
    world.wait_spool(lambda n: len(n) == 2)
    world.work()
    assert [r["dst"] for r in world.routes_via(a1)] == ["192.168.20.0/24"]
    assert world.routes_via(a3) == []
    assert world.routes_via("10.255.10.2") == l2tp
    assert world.ping("192.168.20.2")

    # status says over which VPN each user is connected, and the live OpenVPN routes are no drift.
    text = run_routectl("status", ns=s, env=env).stdout.splitlines()
    assert f"Peer 10.255.10.1: connected over OpenVPN on tun0 as {a1}" in text
    assert f"Peer 10.255.10.2: connected on ppp0, also over OpenVPN on tun0 as {a3}" in text
    assert text[0].startswith("OK: 2 peers (2 connected); 2 installed"), text
    doc = json.loads(run_routectl("status", "--json", ns=s, env=env).stdout)
    assert [p["openvpn"] for p in doc["peers"]] == [[{"tun": "tun0", "address": a1}], [{"tun": "tun0", "address": a3}]]

    # user1 comes over L2TP as well: the timer's apply keeps the OpenVPN route, the first, and says so.
    tagged_before = s.tagged()
    s.add_ppp("ppp1", "10.255.10.1")
    result = run_routectl("apply", ns=s, env=env)
    assert (f"peer 10.255.10.1: not installed: 192.168.20.0/24 via 10.255.10.1: the destination is held by our "
            f"route via {a1} dev tun0; the first one stays") in result.stderr, result.stderr
    assert world.routes_via("10.255.10.1") == []
    assert s.tagged() == tagged_before
    assert world.ping("192.168.20.2")

    # A second session of user1 (duplicate-cn; a router reconnecting before its old session timed
    # out): OpenVPN gives the iroute to the newest, and the kernel route follows it.
    a1b = world.start_client("user1", "c2")
    world.wait_spool(lambda n: len(n) == 1)
    world.work()
    assert world.routes_via(a1) == []
    assert [(r["dst"], r["dev"]) for r in world.routes_via(a1b)] == [("192.168.20.0/24", "tun0")]
    # The old session ends: its record goes, the newer session's route stays.
    world.stop("client-user1-c1")
    world.wait_spool(lambda n: any(x.endswith(f",vpn-down,{a1}") for x in n))
    world.work()
    assert [r["dst"] for r in world.routes_via(a1b)] == ["192.168.20.0/24"]
    assert sorted(os.listdir(world.sessions)) == sorted([f"tun0,{a1b}", f"tun0,{a3}"])

    # user2 leaves L2TP (pppd's ip-down, as its hook spools it) and stays on OpenVPN: the lines
    # the L2TP link held go via its OpenVPN client now, at once, and the worker says so.
    s.ip("link", "del", "ppp0")
    down = world.run / "spool" / f"{named(s.name)},ppp0,1,down,10.255.10.2"
    fd = os.open(down, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.close(fd)
    world.work()
    assert [(r["dst"], r["dev"]) for r in world.routes_via(a3)] == [("192.168.21.0/24", "tun0")]
    assert world.routes_via("10.255.10.2") == []

    # The server stops: every client's disconnect runs, the worker removes all their routes.
    world.stop("server")
    world.wait_spool(lambda n: sum(",vpn-down," in x for x in n) == 2)
    world.work()
    assert [r for r in s.tagged() if r.get("dev") == "tun0"] == []
    assert os.listdir(world.sessions) == []
    # user1 is still on L2TP (ppp1): its line, held by OpenVPN until now, goes onto ppp1 at once.
    assert [(r["dst"], r["dev"]) for r in world.routes_via("10.255.10.1")] == [("192.168.20.0/24", "ppp1")]


def test_a_pool_address_given_again_routes_only_the_new_users_networks(world):
    """user1 connects and leaves, user2 connects (OpenVPN may give it the same address), and the
    worker sees the three events only then, in one pass: only user2's routes, via user2's address."""
    world.start_server(hooks=True)
    a1 = world.start_client("user1", "c1")
    world.wait_spool(lambda n: len(n) == 1)
    world.stop("client-user1-c1")
    world.wait_spool(lambda n: len(n) == 2)
    a2 = world.start_client("user2", "c2")
    world.wait_spool(lambda n: len(n) == 3)
    world.work()
    assert world.routes_via(a1) == [] or a1 == a2
    assert [(r["dst"], r["dev"]) for r in world.routes_via(a2)] == [("192.168.21.0/24", "tun0")]
    assert [r for r in world.ns["s"].tagged() if r.get("dst") == "192.168.20.0/24"] == []
    assert os.listdir(world.sessions) == [f"tun0,{a2}"]
    assert (world.sessions / f"tun0,{a2}").read_text() == "10.255.10.2\n"

    # The server is killed (no client-disconnect runs) and started again with a fresh pool: the
    # records of its sessions are stale. A client of another user at a recorded address gets its
    # own routes only; the timer's apply forgets the sessions OpenVPN no longer has.
    a3 = world.start_client("user1", "c3")
    world.wait_spool(lambda n: len(n) == 1)
    world.work()
    assert sorted(os.listdir(world.sessions)) == sorted([f"tun0,{a2}", f"tun0,{a3}"])
    server = world.procs.pop("server")
    server.kill()
    server.wait(timeout=30)
    for name in ("client-user2-c2", "client-user1-c3"):
        world.stop(name)
    world.start_server(hooks=True)
    b1 = world.start_client("user1", "c1")
    world.wait_spool(lambda n: len(n) == 1)
    world.work()
    assert [(r["dst"], r["dev"]) for r in world.routes_via(b1)] == [("192.168.20.0/24", "tun0")]
    assert [r for r in world.ns["s"].tagged() if r.get("dst") == "192.168.21.0/24"] == []
    env = {C.STORE_DIR_ENV: str(world.store), C.RUN_DIR_ENV: str(world.run), C.CHAP_SECRETS_ENV: str(world.chap)}
    result = run_routectl("apply", ns=world.ns["s"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    stale = {a2, a3} - {b1}
    for address in stale:
        assert f"at {address} on tun0 ended without a client-disconnect" in result.stderr, result.stderr
    assert os.listdir(world.sessions) == [f"tun0,{b1}"]
    assert [r["dst"] for r in world.routes_via(b1)] == ["192.168.20.0/24"]
    assert world.ping("192.168.20.2")


def test_the_hook_works_with_nothing_but_openvpns_variables_as_nobody_www_data(world):
    """OpenVPN gives its hooks no PATH and runs them as the server's user and group: the hook,
    run exactly so (env -i, nobody:www-data), copies the precomputed iroute into the client's
    dynamic config and spools both events; it can write nothing of the precompute."""
    world.precompute()
    work = world.root / "openvpn-tmp"  # OpenVPN's tmp-dir, its own
    work.mkdir()
    shutil.chown(work, "nobody", "www-data")
    config = work / "cc.tmp"
    config.write_text("")
    shutil.chown(config, "nobody", "www-data")
    common = [f"{C.STORE_DIR_ENV}={world.store}", f"{C.RUN_DIR_ENV}={world.run}",
              f"{C.CHAP_SECRETS_ENV}={world.chap}", "dev=tun0", "ifconfig_pool_remote_ip=10.10.30.9"]
    as_server = ["setpriv", "--reuid", "nobody", "--regid", "www-data", "--clear-groups", "env", "-i"]
    connect = subprocess.run([*as_server, *common, "script_type=client-connect", "username=user1",
                              str(world.hook), str(config)], capture_output=True, text=True, timeout=30)
    assert connect.returncode == 0 and connect.stdout == connect.stderr == ""
    assert config.read_text() == "iroute 192.168.20.0 255.255.255.0\n"
    assert [n.split(",", 3)[3] for n in world.spooled()] == ["vpn-up,10.10.30.9,10.255.10.1"]
    disconnect = subprocess.run([*as_server, *common, "script_type=client-disconnect", str(world.hook)],
                                capture_output=True, text=True, timeout=30)
    assert disconnect.returncode == 0
    names = world.wait_spool(lambda n: len(n) == 2)
    assert sorted(n.split(",", 3)[3] for n in names) == ["vpn-down,10.10.30.9", "vpn-up,10.10.30.9,10.255.10.1"]
    assert {(os.stat(world.run / "spool" / n).st_uid, os.stat(world.run / "spool" / n).st_gid) for n in names} == {
        (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("www-data").gr_gid)}
    # The precompute: the server's group reads it, only root writes it.
    iroutes = world.run / "openvpn-iroutes"
    for path in (iroutes / "users" / "user1", iroutes / "peers" / "10.255.10.1"):
        write = subprocess.run([*as_server, "/bin/sh", "-c", f"cat {path} >/dev/null && : >>{path}"],
                               capture_output=True, text=True, timeout=30)
        assert write.returncode != 0 and "Permission denied" in write.stderr, write
        assert os.stat(path).st_uid == 0 and os.stat(path).st_mode & 0o777 == 0o640
