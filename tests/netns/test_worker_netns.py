"""pppd's hooks in network namespaces, without systemd: each event is applied in the namespace its
hook ran in, whichever namespace the worker was started from; an event of a namespace the worker
cannot enter is refused, never applied elsewhere (docs/namespaces.md).

Every namespace here is a scratch one; the namespace `home` stands for the host (the worker is
started inside it), so this machine's own routes are never involved.
"""

from __future__ import annotations

import os
import subprocess
import syslog
from contextlib import contextmanager

import pytest
from conftest import Netns, _ip
from fronts import Fronts, run_hook_script, spooled, wait_for_worker

from l2tproute import transports
from l2tproute.core import constants as C
from l2tproute.core.kernel import Links
from l2tproute.core.model import parse_peer
from l2tproute.fronts import worker
from l2tproute.system import netns
from l2tproute.system.iproute2 import IpRoute2
from l2tproute.system.spool import Spool
from l2tproute.system.store import Store
from l2tproute.transports.openvpn.carrier import OpenVpnTransport
from l2tproute.transports.openvpn.sessions import PENDING, Session, SessionRecords, live_next_hops

PEERS = {"home": "10.255.20.1", "a": "10.255.20.2", "b": "10.255.20.3"}
LANS = {"home": "192.168.70.0/24", "a": "192.168.71.0/24", "b": "192.168.72.0/24"}


class Recorder:
    def __init__(self):
        self.records: list[tuple[int, str]] = []

    def __call__(self, priority: int, message: str) -> None:
        self.records.append((priority, message))

    def errors(self) -> list[str]:
        return [m for p, m in self.records if p <= syslog.LOG_ERR]


@contextmanager
def scratch_namespaces(*roles: str):
    made = {role: Netns(f"l2t-{os.getpid()}-w{role}") for role in roles}
    try:
        for ns in made.values():
            _ip("netns", "add", ns.name)
            ns.ip("link", "set", "lo", "up")
        yield made
    finally:
        for ns in made.values():
            _ip("netns", "del", ns.name, check=False)


@pytest.fixture
def spaces():
    with scratch_namespaces("home", "a", "b") as made:
        yield made


@pytest.fixture
def world(tmp_path):
    store, run_dir = tmp_path / "routes.d", tmp_path / "run"
    store.mkdir()
    for role, peer in PEERS.items():
        (store / f"{peer}.routes").write_text(f"{LANS[role]} via {peer}\n")
    env = {C.STORE_DIR_ENV: str(store), C.RUN_DIR_ENV: str(run_dir)}
    return store, run_dir, env


def hook(fronts: Fronts, direction: str, ns: Netns, peer: str, env: dict) -> None:
    result = run_hook_script(fronts, direction, ["ppp0", "/dev/pts/1", "0", "10.254.0.1", peer, ""], ns=ns, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_the_sh_front_names_a_named_namespace_as_python_does(spaces):
    lib = os.path.join(os.path.dirname(__file__), "..", "..", "lib", "l2tproute.sh")
    result = subprocess.run(["ip", "netns", "exec", spaces["a"].name, "sh", "-c",
                             '. "$0"; l2t_get_netns; printf %s "$l2t_netns"', lib],
                            capture_output=True, text=True, timeout=30, check=True)
    assert netns.parse_id(result.stdout) == netns.named(spaces["a"].name) != netns.current()


def test_a_burst_of_three_namespaces_is_applied_each_in_its_own(spaces, world, tmp_path):
    """ppp0 in every namespace, each with its own peer: one worker, started by the hook in `a`,
    applies every event in the namespace it happened in."""
    store, run_dir, env = world
    for role, ns in spaces.items():
        ns.add_ppp("ppp0", PEERS[role])
    spooler = Fronts(tmp_path / "spooler", worker="/bin/false")  # spools, starts nobody
    hook(spooler, "up", spaces["home"], PEERS["home"], env)
    hook(spooler, "up", spaces["b"], PEERS["b"], env)
    assert len(spooled(run_dir)) == 2
    hook(Fronts(tmp_path / "fronts"), "up", spaces["a"], PEERS["a"], env)
    wait_for_worker(run_dir)
    for role, ns in spaces.items():
        assert ns.tagged_set() == {(LANS[role], PEERS[role], "ppp0", "main")}, role
        # rp_filter loosened on that namespace's ppp0: /proc/sys/net is the entered namespace's.
        value = subprocess.run(["ip", "netns", "exec", ns.name, "cat", "/proc/sys/net/ipv4/conf/ppp0/rp_filter"],
                               capture_output=True, text=True, check=True).stdout.split()
        assert value == ["2"], role
    # ip-down in b only: b's routes go, home's and a's stay.
    hook(Fronts(tmp_path / "fronts"), "down", spaces["b"], PEERS["b"], env)
    wait_for_worker(run_dir)
    assert spaces["b"].tagged_set() == set()
    assert spaces["home"].tagged_set() == {(LANS["home"], PEERS["home"], "ppp0", "main")}
    assert spaces["a"].tagged_set() == {(LANS["a"], PEERS["a"], "ppp0", "main")}


@pytest.fixture
def unnamed():
    """A namespace with no name, kept alive by a process in it."""
    holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        for _ in range(200):
            if os.path.exists(path) and netns.of_path(path) != netns.current():
                break
            subprocess.run(["sleep", "0.05"], check=True)
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def in_unnamed(pid: int, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


def test_an_event_of_a_namespace_without_a_name_is_refused_by_another_worker(unnamed, spaces, world, tmp_path):
    store, run_dir, env = world
    for argv in (["ip", "link", "set", "lo", "up"], ["ip", "tuntap", "add", "dev", "ppp0", "mode", "tun"],
                 ["ip", "addr", "add", "10.254.0.1", "peer", PEERS["a"], "dev", "ppp0"],
                 ["ip", "link", "set", "ppp0", "up"]):
        assert in_unnamed(unnamed, *argv).returncode == 0
    spooler = Fronts(tmp_path / "spooler", worker="/bin/false")
    done = in_unnamed(unnamed, str(spooler.hooks["up"]), "ppp0", "/dev/pts/1", "0", "10.254.0.1", PEERS["a"], "",
                      env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env})
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    [name] = spooled(run_dir)
    assert name.startswith(f"{netns.of_path(f'/proc/{unnamed}/ns/net')},ppp0,")
    # A worker elsewhere (here this test, in the host's namespace, with its runner in `a`, which
    # also has a ppp0 with that peer): refused, logged, removed; nothing routed anywhere.
    spaces["a"].add_ppp("ppp0", PEERS["a"])
    log = Recorder()
    ctx = transports.context(Store(str(store)), IpRoute2(spaces["a"].name), run_dir=str(run_dir))
    assert worker.drain(Spool(str(run_dir)), ctx, log, "/nonexistent").stuck is False
    assert spooled(run_dir) == []
    assert len(log.errors()) == 1 and "refused: it happened in network namespace" in log.errors()[0], log.records
    assert spaces["a"].tagged_set() == set()
    assert "proto 157" not in in_unnamed(unnamed, "ip", "route", "show", "proto", "157").stdout
    # The hook there starting its own worker (no other runs): that namespace is the worker's own.
    fronts = Fronts(tmp_path / "fronts")
    done = in_unnamed(unnamed, str(fronts.hooks["up"]), "ppp0", "/dev/pts/1", "0", "10.254.0.1", PEERS["a"], "",
                      env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env})
    assert done.returncode == 0
    wait_for_worker(run_dir)
    routes = in_unnamed(unnamed, "ip", "-4", "route", "show", "proto", "157").stdout
    assert routes.split()[:5] == [LANS["a"], "via", PEERS["a"], "dev", "ppp0"], routes
    assert spaces["a"].tagged_set() == set()


def test_a_namespace_is_found_by_its_identity_and_a_stale_name_is_none(spaces):
    found = netns.find(netns.named(spaces["a"].name))
    assert found is not None and found.what == spaces["a"].name
    found.close()
    home = netns.find(netns.current())
    assert home is not None and home.what == "this worker's"
    home.close()
    assert netns.find(netns.NetnsId(netns.current().dev, 1)) is None
    with pytest.raises(netns.NamespaceError):
        netns.named("l2t-no-such-namespace")


def test_session_records_are_kept_per_namespace(spaces, tmp_path):
    mine = Session("tun0", parse_peer("10.10.30.2"), parse_peer("10.255.10.1"))
    SessionRecords(str(tmp_path), netns=spaces["a"].name).write(mine)
    assert SessionRecords(str(tmp_path), netns=spaces["a"].name).all() == [mine]
    assert SessionRecords(str(tmp_path), netns=spaces["b"].name).all() == []
    assert SessionRecords(str(tmp_path)).all() == []  # this test's own namespace
    assert live_next_hops(str(tmp_path), {"tun0"}, spaces["a"].name) == mine.next_hops
    assert live_next_hops(str(tmp_path), {"tun0"}, spaces["b"].name) == set()
    in_a, in_b = (OpenVpnTransport(IpRoute2(spaces[r].name), str(tmp_path)) for r in "ab")
    assert [c.peer for c in in_a.carriers(Links(names={"tun0"}))] == [mine.peer]
    assert in_b.carriers(Links(names={"tun0"})) == []
    assert (tmp_path / "openvpn" / str(netns.named(spaces["a"].name)) / "tun0,10.10.30.2").read_text() == \
        "10.255.10.1\n"
    with pytest.raises(netns.NamespaceError):
        SessionRecords(str(tmp_path), netns="l2t-no-such-namespace")


def test_the_records_of_the_version_before_are_the_hosts(spaces, tmp_path, monkeypatch):
    for kind in ("openvpn", PENDING):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "tun0,10.10.30.2").write_text("10.255.10.1\n")
    old = Session("tun0", parse_peer("10.10.30.2"), parse_peer("10.255.10.1"))
    # A reader in another namespace leaves them where they are ...
    monkeypatch.setattr(netns, "host", lambda: netns.current())
    assert SessionRecords(str(tmp_path), netns=spaces["a"].name).all() == []
    assert (tmp_path / "openvpn" / "tun0,10.10.30.2").exists()
    # ... one that cannot tell which namespace is the host's too ...
    monkeypatch.setattr(netns, "host", lambda: None)
    assert SessionRecords(str(tmp_path)).all() == []
    # ... and the host's takes them in.
    monkeypatch.setattr(netns, "host", lambda: netns.current())
    assert SessionRecords(str(tmp_path)).all() == [old]
    assert SessionRecords(str(tmp_path), PENDING).all() == [old]
    assert sorted(p.name for p in (tmp_path / "openvpn").iterdir()) == [str(netns.current())]
