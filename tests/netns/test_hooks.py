"""The pppd hooks through the library (l2tproute.fronts.link_events) and as scripts (bin/), in namespaces.

The real dispatcher (/etc/ppp/ip-up, run-parts) is exercised in test_hooks_dispatcher.py.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import syslog
import threading
from pathlib import Path

import pytest
from fronts import Fronts, holds_for, run_hook_script, spooled, wait_for_worker, wait_worker_running
from support.iproute2s import ip_env

from l2tproute import transports
from l2tproute.core import constants as C
from l2tproute.core.model import InputError
from l2tproute.fronts import link_events as hook
from l2tproute.fronts import worker
from l2tproute.system import netns
from l2tproute.system.iproute2 import IpRoute2
from l2tproute.system.spool import Spool
from l2tproute.system.store import Store
from l2tproute.transports.l2tp.events import LinkEvent, parse_event

PEER1, PEER11, PEER2 = "10.255.10.1", "10.255.10.11", "10.255.10.2"


class Recorder:
    """Stands in for syslog: keeps (priority, message) pairs."""

    def __init__(self):
        self.records: list[tuple[int, str]] = []

    def __call__(self, priority: int, message: str) -> None:
        self.records.append((priority, message))

    @property
    def text(self) -> str:
        return "\n".join(message for _, message in self.records)

    def errors(self) -> list[str]:
        return [m for p, m in self.records if p <= syslog.LOG_ERR]


def pppd_args(iface: str, peer: str, local: str = "10.254.0.1") -> list[str]:
    return ["l2tp-routes", iface, "/dev/pts/3", "0", local, peer, ""]


def write_routes(store_dir: Path, peer: str, *lines: str) -> None:
    (store_dir / f"{peer}.routes").write_text("".join(line + "\n" for line in lines))


def run_hook(direction: str, ns, store_dir: Path, args: list[str], environ: dict | None = None,
             proc_sys: Path | None = None) -> Recorder:
    log = Recorder()
    code = hook.main(direction, args, environ or {}, log=log, store=Store(str(store_dir)),
                     runner=IpRoute2(ns.name), proc_sys=str(proc_sys or "/nonexistent"))
    assert code == 0
    return log


@pytest.fixture
def sessions(netns):
    """Three users online; two of them have addresses sharing a prefix."""
    netns.add_ppp("ppp1", PEER1)
    netns.add_ppp("ppp11", PEER11)
    netns.add_ppp("ppp2", PEER2)
    return netns


# -- parsing ------------------------------------------------------------------

def test_event_comes_from_pppd_arguments():
    event = parse_event("up", ["ppp3", "/dev/pts/3", "0", "10.254.0.1", PEER11, "l2tp"], {})
    assert event == LinkEvent("up", "ppp3", ipaddress.IPv4Address(PEER11), ipaddress.IPv4Address("10.254.0.1"),
                              "/dev/pts/3", "l2tp")


def test_event_falls_back_to_the_dispatchers_variables():
    env = {"PPP_IFACE": "ppp7", "PPP_REMOTE": PEER1, "PPP_LOCAL": "10.254.0.1", "PPP_TTY": "/dev/pts/1"}
    event = parse_event("down", [], env)
    assert (event.direction, event.iface, str(event.peer), event.tty) == ("down", "ppp7", PEER1, "/dev/pts/1")


def test_arguments_win_over_variables():
    env = {"PPP_IFACE": "ppp7", "PPP_REMOTE": PEER1}
    event = parse_event("up", ["ppp3", "", "", "", PEER2, ""], env)
    assert (event.iface, str(event.peer)) == ("ppp3", PEER2)


@pytest.mark.parametrize("args, env", [
    ([], {}),
    (["ppp3"], {}),
    (["../../etc", "tty", "0", "1.2.3.4", PEER1, ""], {}),
    (["ppp3", "tty", "0", "1.2.3.4", "10.255.10", ""], {}),
    (["ppp3", "tty", "0", "1.2.3.4", "10.255.10.1/32", ""], {}),
    (["ppp3", "tty", "0", "1.2.3.4", "127.0.0.1", ""], {}),
    (["ppp 3", "tty", "0", "1.2.3.4", PEER1, ""], {}),
    ([], {"PPP_IFACE": "ppp3"}),
    ([], {"PPP_IFACE": "ppp3", "PPP_REMOTE": "10.255.10.1\n"}),
    ([], {"PPP_IFACE": "ppp3;reboot", "PPP_REMOTE": PEER1}),
])
def test_a_wrong_event_is_refused_with_a_reason(args, env):
    with pytest.raises(InputError):
        parse_event("up", args, env)


def test_a_bad_local_address_does_not_stop_the_routes():
    event = parse_event("up", ["ppp3", "tty", "0", "garbage", PEER1, ""], {})
    assert event.local is None and str(event.peer) == PEER1


# -- up -----------------------------------------------------------------------

@pytest.mark.iproute2_versions
def test_up_installs_exactly_that_peers_routes_on_that_link(sessions, tmp_path):
    write_routes(tmp_path, PEER1, f"192.168.50.0/24 via {PEER1}", f"10.9.0.0/16 via {PEER1}")
    write_routes(tmp_path, PEER11, f"192.168.111.0/24 via {PEER11}")
    untouched = sessions.snapshot()
    log = run_hook("up", sessions, tmp_path, pppd_args("ppp1", PEER1))
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main"), ("10.9.0.0/16", PEER1, "ppp1", "main")}
    added = set(sessions.snapshot()) - set(untouched)
    assert len(added) == 2 and not set(untouched) - set(sessions.snapshot())
    assert not log.errors()
    assert f"ip-up ppp1 peer {PEER1}: Installed route for peer {PEER1}: 192.168.50.0/24 via {PEER1}" in log.text
    assert f"Applied routes for peer {PEER1} on ppp1: 2 installed, 0 updated, 0 removed, 0 unchanged" in log.text


def test_up_twice_changes_nothing_the_second_time(sessions, tmp_path):
    write_routes(tmp_path, PEER1, f"192.168.50.0/24 via {PEER1}")
    run_hook("up", sessions, tmp_path, pppd_args("ppp1", PEER1))
    before = sessions.snapshot()
    log = run_hook("up", sessions, tmp_path, pppd_args("ppp1", PEER1))
    assert sessions.snapshot() == before
    assert "0 installed, 0 updated, 0 removed, 1 unchanged" in log.text


@pytest.mark.iproute2_versions
def test_up_honours_the_dev_and_table_of_a_line(sessions, tmp_path):
    write_routes(tmp_path, PEER2, f"172.20.0.0/16 via {PEER2} dev ppp2 table 100")
    run_hook("up", sessions, tmp_path, pppd_args("ppp2", PEER2))
    assert sessions.tagged_set() == {("172.20.0.0/16", PEER2, "ppp2", "100")}


def test_up_for_a_peer_without_routes_installs_nothing(sessions, tmp_path):
    before = sessions.snapshot()
    log = run_hook("up", sessions, tmp_path, pppd_args("ppp2", PEER2))
    assert sessions.snapshot() == before
    assert "nothing to install" in log.text and not log.errors()


def test_up_leaves_a_route_of_somebody_else_alone_and_says_so(sessions, tmp_path):
    sessions.ip("route", "add", "192.168.50.0/24", "via", PEER11, "dev", "ppp11", "proto", "static")
    write_routes(tmp_path, PEER1, f"192.168.50.0/24 via {PEER1}", f"10.9.0.0/16 via {PEER1}")
    log = run_hook("up", sessions, tmp_path, pppd_args("ppp1", PEER1))
    held = [r for r in sessions.routes(4, "exact", "192.168.50.0/24")]
    assert [(r["dev"], r["gateway"], r["protocol"]) for r in held] == [("ppp11", PEER11, "4")]
    assert sessions.tagged_set() == {("10.9.0.0/16", PEER1, "ppp1", "main")}
    assert "not installed: 192.168.50.0/24" in log.text and "held by a proto static route" in log.text
    assert "1 installed, 0 updated, 0 removed, 0 unchanged, 1 blocked" in log.text


@pytest.mark.iproute2_versions
def test_up_takes_over_our_own_route_from_another_link(sessions, tmp_path):
    """A tagged route for the destination on another link (a stale session) is ours to replace."""
    sessions.ip("route", "add", "192.168.50.0/24", "via", PEER11, "dev", "ppp11", "proto", str(C.RT_PROTO))
    write_routes(tmp_path, PEER1, f"192.168.50.0/24 via {PEER1}")
    log = run_hook("up", sessions, tmp_path, pppd_args("ppp1", PEER1))
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main")}
    assert "Updated route for peer 10.255.10.1: 192.168.50.0/24" in log.text and not log.errors()


@pytest.mark.iproute2_versions
def test_up_removes_our_routes_on_that_link_that_the_file_no_longer_wants(sessions, tmp_path):
    sessions.ip("route", "add", "10.77.0.0/16", "via", PEER1, "dev", "ppp1", "proto", str(C.RT_PROTO))
    sessions.ip("route", "add", "10.78.0.0/16", "via", PEER1, "dev", "ppp1", "proto", "static")
    write_routes(tmp_path, PEER1, f"192.168.50.0/24 via {PEER1}")
    log = run_hook("up", sessions, tmp_path, pppd_args("ppp1", PEER1))
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main")}
    assert sessions.routes(4, "exact", "10.78.0.0/16"), "an untagged route was removed"
    assert "Removed stale route: 10.77.0.0/16 dev ppp1" in log.text


def test_up_sets_rp_filter_loose_on_that_link(sessions, tmp_path):
    proc = tmp_path / "proc"
    conf = proc / "net" / "ipv4" / "conf"
    for name in ("ppp1", "ppp11"):
        (conf / name).mkdir(parents=True)
        (conf / name / "rp_filter").write_text("1\n")
    log = run_hook("up", sessions, tmp_path, pppd_args("ppp1", PEER1), proc_sys=proc)
    assert (conf / "ppp1" / "rp_filter").read_text().strip() == "2"
    assert (conf / "ppp11" / "rp_filter").read_text().strip() == "1"
    assert "rp_filter set to 2 (loose) on ppp1" in log.text


def test_the_hook_returns_while_the_store_is_locked_and_the_worker_finishes_after(sessions, tmp_path):
    """pppd never waits for the store: the hook only spools; the worker waits for the lock."""
    store, run_dir = tmp_path / "routes.d", tmp_path / "run"
    store.mkdir()
    write_routes(store, PEER1, f"192.168.50.0/24 via {PEER1}")
    fronts = Fronts(tmp_path / "fronts")
    env = {C.STORE_DIR_ENV: str(store), C.RUN_DIR_ENV: str(run_dir)}
    with Store(str(store)).locked():
        result = run_hook_script(fronts, "up", pppd_args("ppp1", PEER1)[1:], ns=sessions, env=env)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
        # A worker runs (it holds the spool's worker lock) and, while the store is locked, routes nothing.
        wait_worker_running(run_dir)
        assert holds_for(lambda: sessions.tagged_set() == set()), "the worker did not wait for the store lock"
        assert spooled(run_dir), "the worker consumed the event while the store was locked"
    wait_for_worker(run_dir)
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main")}


def test_up_logs_a_broken_file_and_installs_the_good_lines(sessions, tmp_path):
    (tmp_path / f"{PEER1}.routes").write_bytes(b"# hand edit\r\n192.168.50.0/24 via 10.255.10.1\r\nnonsense\n")
    log = run_hook("up", sessions, tmp_path, pppd_args("ppp1", PEER1))
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main")}
    assert "line 3: not understood" in log.text and "CRLF" in log.text


# -- down ---------------------------------------------------------------------

@pytest.mark.iproute2_versions
def test_down_removes_only_our_routes_of_that_link_and_peer(sessions, tmp_path):
    sessions.add_lan("lan0", "192.0.2.1/24")
    tag = ("proto", str(C.RT_PROTO))
    sessions.ip("route", "add", "192.168.50.0/24", "via", PEER1, "dev", "ppp1", *tag)
    sessions.ip("route", "add", "10.9.0.0/16", "dev", "ppp1", *tag)
    sessions.ip("route", "add", "172.16.1.0/24", "via", PEER1, "dev", "lan0", "onlink", *tag)  # explicit dev
    sessions.ip("route", "add", "192.168.111.0/24", "via", PEER11, "dev", "ppp11", *tag)  # the .11 user
    sessions.ip("route", "add", "172.16.11.0/24", "via", PEER11, "dev", "lan0", "onlink", *tag)
    sessions.ip("route", "add", "10.78.0.0/16", "via", PEER1, "dev", "ppp1", "proto", "static")  # not ours
    sessions.ip("route", "add", "10.79.0.0/16", "via", PEER1, "dev", "lan0", "onlink")  # not ours
    sessions.ip("-6", "route", "add", "2001:db8:1::/48", "dev", "ppp1", *tag)
    sessions.ip("-6", "route", "add", "2001:db8:11::/48", "dev", "ppp11", *tag)
    before = set(sessions.snapshot())
    log = run_hook("down", sessions, tmp_path, pppd_args("ppp1", PEER1))
    after = set(sessions.snapshot())
    assert not after - before
    assert sorted(json.loads(r)["dst"] for r in before - after) == [
        "10.9.0.0/16", "172.16.1.0/24", "192.168.50.0/24", "2001:db8:1::/48"]
    assert f"Released ppp1 of peer {PEER1}: 4 removed, 0 failed." in log.text and not log.errors()


@pytest.mark.iproute2_versions
def test_down_keeps_the_routes_of_a_peer_that_is_back_on_another_link(sessions, tmp_path):
    sessions.add_ppp("ppp5", PEER1)  # the user reconnected before the old session's ip-down ran
    tag = ("proto", str(C.RT_PROTO))
    sessions.ip("route", "add", "192.168.50.0/24", "via", PEER1, "dev", "ppp5", *tag)
    sessions.ip("route", "add", "10.9.0.0/16", "via", PEER1, "dev", "ppp1", *tag)
    log = run_hook("down", sessions, tmp_path, pppd_args("ppp1", PEER1))
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp5", "main")}
    assert "connected again on ppp5" in log.text


def test_down_after_the_link_is_gone_is_quiet(sessions, tmp_path):
    sessions.del_link("ppp2")
    log = run_hook("down", sessions, tmp_path, pppd_args("ppp2", PEER2))
    assert f"Released ppp2 of peer {PEER2}: 0 removed, 0 failed." in log.text and not log.errors()


def test_down_from_the_dispatchers_variables(sessions, tmp_path):
    sessions.ip("route", "add", "192.168.50.0/24", "via", PEER1, "dev", "ppp1", "proto", str(C.RT_PROTO))
    run_hook("down", sessions, tmp_path, ["l2tp-routes"], {"PPP_IFACE": "ppp1", "PPP_REMOTE": PEER1})
    assert sessions.tagged_set() == set()


# -- always 0, always bounded, always logged -----------------------------------

class HangingRunner(IpRoute2):
    def __init__(self, ns):
        super().__init__(ns.name)  # whatever it does not override acts in the scratch namespace
        self.release = threading.Event()

    def read_routes(self, family, **kwargs):
        self.release.wait(60)  # an `ip` that never answers
        return []


def test_the_hook_gives_up_at_its_deadline_and_returns_0(netns, tmp_path):
    log = Recorder()
    runner = HangingRunner(netns)
    code = hook.main("down", pppd_args("ppp1", PEER1), {}, log=log, store=Store(str(tmp_path)), runner=runner,
                     deadline=0.3)
    runner.release.set()
    assert code == 0
    assert log.errors() == [f"ip-down ppp1 peer {PEER1}: gave up after 0.3 s (ip did not answer in time); "
                            "run l2tp-routectl apply to finish, the timer does it within a minute"]


class BrokenRunner(IpRoute2):
    def read_routes(self, family, **kwargs):
        raise ZeroDivisionError("boom")


def test_an_internal_error_is_logged_and_returns_0(netns, tmp_path):
    log = Recorder()
    code = hook.main("down", pppd_args("ppp1", PEER1), {}, log=log, store=Store(str(tmp_path)),
                     runner=BrokenRunner(netns.name))
    assert code == 0
    assert log.errors() == [f"ip-down ppp1 peer {PEER1}: internal error (ZeroDivisionError): boom; please report this"]


def test_garbage_is_logged_with_what_was_wrong():
    log = Recorder()
    assert hook.main("up", ["x", "ppp1", "t", "0", "l", "not-an-ip"], {}, log=log) == 0
    assert len(log.errors()) == 1 and "ip-up: ignored: invalid peer not-an-ip" in log.errors()[0]


# -- the installed hooks: the sh front and its worker -----------------------------

GARBAGE = [
    [],
    ["ppp1"],
    ["ppp1", "/dev/pts/3", "0", "10.254.0.1"],
    ["../../../etc/passwd", "x", "0", "10.254.0.1", PEER1, ""],
    ["ppp1", "x", "0", "10.254.0.1", "10.255.10.1; reboot", ""],
    ["ppp1", "x", "0", "10.254.0.1", "999.1.1.1", ""],
    ["ppp1", "x", "0", "10.254.0.1", "::1", ""],
    ["-h"],
    ["--help", "x", "x", "x", "x", "x", "x", "x"],
    ["ppp1\n", "x", "0", "10.254.0.1", PEER1, ""],
    [b"\xff\xfe", "x", "0", "10.254.0.1", PEER1, ""],
    ["p" * 5000, "x", "0", "10.254.0.1", PEER1, ""],
    ["ppp1,2,up,10.255.10.1", "x", "0", "10.254.0.1", PEER1, ""],
]


@pytest.mark.parametrize("direction", ["up", "down"])
def test_hooks_exit_0_print_nothing_and_spool_nothing_on_garbage(tmp_path, direction):
    fronts = Fronts(tmp_path / "fronts", worker="/bin/false")
    run_dir = tmp_path / "run"
    env = {"PPP_IFACE": "x y", "PPP_REMOTE": "nope", C.RUN_DIR_ENV: str(run_dir)}
    for args in GARBAGE:
        result = run_hook_script(fronts, direction, args, env=env)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), args
        assert spooled(run_dir) == [], args


@pytest.mark.iproute2_versions
def test_hooks_install_and_remove_in_a_namespace_and_print_nothing(sessions, tmp_path):
    store, run_dir = tmp_path / "routes.d", tmp_path / "run"
    store.mkdir()
    write_routes(store, PEER1, f"192.168.50.0/24 via {PEER1}")
    write_routes(store, PEER11, f"192.168.111.0/24 via {PEER11}")
    fronts = Fronts(tmp_path / "fronts")
    env = {C.STORE_DIR_ENV: str(store), C.RUN_DIR_ENV: str(run_dir), **ip_env()}
    for peer, iface in ((PEER1, "ppp1"), (PEER11, "ppp11")):
        result = run_hook_script(fronts, "up", pppd_args(iface, peer)[1:], ns=sessions, env=env)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    wait_for_worker(run_dir)
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main"),
                                     ("192.168.111.0/24", PEER11, "ppp11", "main")}
    rp = subprocess.run(["ip", "netns", "exec", sessions.name, "cat", "/proc/sys/net/ipv4/conf/ppp1/rp_filter"],
                        capture_output=True, text=True, check=True)
    assert rp.stdout.split() == ["2"]
    result = run_hook_script(fronts, "down", pppd_args("ppp1", PEER1)[1:], ns=sessions, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    wait_for_worker(run_dir)
    assert sessions.tagged_set() == {("192.168.111.0/24", PEER11, "ppp11", "main")}


def test_a_worker_whose_ip_hangs_kills_it_and_finishes(sessions, tmp_path):
    """An `ip` that never answers holds up the worker, never pppd; the worker kills it after its timeout."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    started = tmp_path / "ip-pids"
    (fake / "ip").write_text(f"#!/bin/sh\necho $$ >>{started}\nexec sleep 587\n")
    (fake / "ip").chmod(0o755)
    run_dir = tmp_path / "run"
    env = {C.RUN_DIR_ENV: str(run_dir), C.STORE_DIR_ENV: str(tmp_path)}
    spooler = Fronts(tmp_path / "spooler", worker="/bin/false")
    result = run_hook_script(spooler, "down", pppd_args("ppp1", PEER1)[1:], ns=sessions, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    event = f"{netns.named(sessions.name)},ppp1,1,down,{PEER1}"
    assert spooled(run_dir) == [event]
    worker = Fronts(tmp_path / "fronts").worker
    done = subprocess.run(["ip", "netns", "exec", sessions.name, "env", f"PATH={fake}:/usr/sbin:/usr/bin",
                           *[f"{k}={v}" for k, v in env.items()], worker], capture_output=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    # This test's own hung ip by its pid (another run's may be sleeping on this machine too).
    pids = [int(pid) for pid in started.read_text().split()]
    assert pids and not any(Path(f"/proc/{pid}").exists() for pid in pids), "the hung ip was not killed"
    assert spooled(run_dir) == [event], "an event that failed must stay for the next worker"


def test_a_link_event_not_written_by_root_is_refused_and_removed(sessions, tmp_path):
    """The spool is writable by OpenVPN's group: a pppd event another user wrote is forged."""
    run_dir = tmp_path / "run"
    (run_dir / "spool").mkdir(parents=True)
    tag = ("proto", str(C.RT_PROTO))
    sessions.ip("route", "add", "192.168.50.0/24", "via", PEER1, "dev", "ppp1", *tag)
    here = netns.named(sessions.name)  # the worker runs these events in the sessions' namespace
    forged = run_dir / "spool" / f"{here},ppp1,1,down,{PEER1}"
    forged.touch()
    os.chown(forged, 33, 33)
    genuine = run_dir / "spool" / f"{here},ppp2,1,up,{PEER2}"
    genuine.touch()
    log = Recorder()
    store = tmp_path / "routes.d"
    store.mkdir()
    write_routes(store, PEER2, f"172.20.0.0/16 via {PEER2}")
    ctx = transports.context(Store(str(store)), IpRoute2(sessions.name))
    assert worker.drain(Spool(str(run_dir)), ctx, log, "/nonexistent").handled == 1
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main"),
                                     ("172.20.0.0/16", PEER2, "ppp2", "main")}
    assert any("written by uid 33, not by the pppd hook" in m for m in log.errors()), log.text
    assert spooled(run_dir) == []
