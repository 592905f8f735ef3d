"""The OpenVPN connector's queue: records as the sh hook writes them, parsed and checked as
untrusted (the queue is writable by the server's group), and a burst served with one read of
chap-secrets and of each route file (tests/system/test_openvpn_connect.py runs the real server)."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import pwd
import subprocess

import pytest
from conftest import REPO

from l2tproute.core.model import InputError
from l2tproute.system.spool import parse_vpn_name
from l2tproute.transports.openvpn import connect as openvpnconnect
from l2tproute.transports.openvpn.connect import LOCK, QUEUE, Queue, parse_record, serve_pending
from l2tproute.transports.openvpn.hook import Lookup


def _fields(**change) -> dict[str, str]:
    values = {"username": "user1", "common_name": "user1", "dev": "tun0", "ifconfig_pool_remote_ip": "10.10.30.2",
              "ifconfig_pool_remote_ip6": "", "client_connect_deferred_file": "/tmp/d", "config": "/tmp/c"}
    values.update(change)
    return values


def _record(values: dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in values.items())


def test_a_record_holds_every_value_as_given_whatever_it_contains():
    odd = "us=er\nwith a line break, a comma and 'quotes'"
    record = parse_record("1796031891586711515-4242", _record(_fields(username=odd)))
    assert record.values["username"] == odd and record.config == "/tmp/c" and record.deferred == "/tmp/d"


def test_the_sh_hook_writes_records_the_connector_reads(tmp_path):
    """The same printf as bin/l2tp-routes-openvpn, run by dash, read back field by field."""
    hook = (REPO / "bin" / "l2tp-routes-openvpn").read_text()
    start = hook.index("printf '%s\\000'")
    command = hook[start:hook.index(' >"$QUEUE/.$record"', start)]
    env = {**_fields(username="a b\nc=d"), "client_connect_deferred_file": "/tmp/d"}
    out = subprocess.run(["dash", "-c", f'deferred=$client_connect_deferred_file; {command}', "hook", "/tmp/c"],
                         env=env, capture_output=True, check=True).stdout
    assert parse_record("1-1", out).values == _fields(username="a b\nc=d")


@pytest.mark.parametrize("name, data", [
    ("1-1;x", _record(_fields())),  # not SEQ-PID
    ("../1-1", _record(_fields())),
    ("1-1", _record(_fields())[:-1]),  # cut short
    ("1-1", _record(_fields()) + b"PATH=/x\0"),  # a field it has no use for
    ("1-1", _record(_fields()) + b"dev=tun1\0"),  # one field twice
    ("1-1", _record({k: v for k, v in _fields().items() if k != "dev"})),
    ("1-1", _record(_fields(config=""))),
    ("1-1", _record(_fields(username="x" * (64 << 10)))),
    ("1-1", b"\0"),
])
def test_a_broken_record_is_refused_with_one_line(name, data):
    with pytest.raises(InputError) as info:
        parse_record(name, data)
    assert "\n" not in str(info.value) and not set("'\"<>&") & set(str(info.value))


def _world(tmp_path):
    store = tmp_path / "routes.d"
    store.mkdir()
    (store / "10.255.10.1.routes").write_text(
        "192.168.20.0/24 via 10.255.10.1\n10.1.0.0/16 via 10.255.10.1 dev eth1\n2001:db8:20::/48 via 10.255.10.1\n")
    (store / "10.255.10.2.routes").write_text("192.168.21.0/24 via 10.255.10.2\n")
    chap = tmp_path / "chap-secrets"
    chap.write_text("user1 * p1 10.255.10.1\nuser2 * p2 10.255.10.2\nroaming * p3 *\n")
    run = tmp_path / "run"
    (run / "spool").mkdir(parents=True)
    (run / QUEUE).mkdir()
    env = {"L2TP_ROUTES_DIR": str(store), "L2TP_RUN_DIR": str(run), "L2TP_CHAP_SECRETS": str(chap)}
    return env, Queue(str(run / QUEUE)), run


def _queue(tmp_path, queue: Queue, n: int, **change) -> tuple:
    """Record n for its own client: its config file, its deferred file (holding 2), its record."""
    config, deferred = tmp_path / f"cc{n}", tmp_path / f"acf{n}"
    config.write_text("")
    deferred.write_text("2")
    values = _fields(client_connect_deferred_file=str(deferred), config=str(config),
                     ifconfig_pool_remote_ip=f"10.10.30.{n + 2}")
    values.update(change)
    (tmp_path / "run" / QUEUE / f"{1000 + n}-{n}").write_bytes(_record(values))
    return config, deferred


def test_a_burst_is_served_with_one_read_of_chap_secrets_and_of_each_route_file(tmp_path):
    env, queue, run = _world(tmp_path)
    lookup, logged = Lookup.from_environment(env), []
    first = [_queue(tmp_path, queue, 0), _queue(tmp_path, queue, 1, username="user2", common_name="user2")]
    assert serve_pending(queue, lookup, str(run), lambda p, m: logged.append(m)) == 2
    # The files go away; the same burst still knows them.
    os.unlink(env["L2TP_CHAP_SECRETS"])
    for name in os.listdir(env["L2TP_ROUTES_DIR"]):
        os.unlink(os.path.join(env["L2TP_ROUTES_DIR"], name))
    later = [_queue(tmp_path, queue, 2), _queue(tmp_path, queue, 3, common_name="user2", username="")]
    assert serve_pending(queue, lookup, str(run), lambda p, m: logged.append(m)) == 2
    one, two = "iroute 192.168.20.0 255.255.255.0\n", "iroute 192.168.21.0 255.255.255.0\n"
    assert [c.read_text() for c, _ in first + later] == [one, two, one, two]
    assert [d.read_text() for _, d in first + later] == ["1"] * 4
    events = sorted((str(e.address), str(e.peer), e.address6) for e in map(parse_vpn_name, os.listdir(run / "spool")))
    assert events == [("10.10.30.2", "10.255.10.1", None), ("10.10.30.3", "10.255.10.2", None),
                      ("10.10.30.4", "10.255.10.1", None), ("10.10.30.5", "10.255.10.2", None)]
    assert queue.names() == []
    assert sum("2001:db8:20::/48 is IPv6; skipped" in m for m in logged) == 2


def test_with_an_ipv6_pool_address_ipv6_lines_become_iroute_ipv6_and_the_event_carries_it(tmp_path):
    env, queue, run = _world(tmp_path)
    config, deferred = _queue(tmp_path, queue, 0, ifconfig_pool_remote_ip6="fd00:10:30::1000")
    serve_pending(queue, Lookup.from_environment(env), str(run), lambda p, m: None)
    assert config.read_text() == "iroute 192.168.20.0 255.255.255.0\niroute-ipv6 2001:db8:20::/48\n"
    [event] = [parse_vpn_name(n) for n in os.listdir(run / "spool")]
    assert event.address6 == ipaddress.IPv6Address("fd00:10:30::1000") and deferred.read_text() == "1"


@pytest.mark.parametrize("change", [{"ifconfig_pool_remote_ip6": "fe80::1"}, {"dev": "tun0 x"},
                                    {"ifconfig_pool_remote_ip": "10.10.30.2.1"}, {"username": "roaming"}])
def test_unusable_or_unroutable_values_let_the_client_in_with_nothing(tmp_path, change):
    env, queue, run = _world(tmp_path)
    config, deferred = _queue(tmp_path, queue, 0, **change)
    serve_pending(queue, Lookup.from_environment(env), str(run), lambda p, m: None)
    assert (config.read_text(), deferred.read_text(), os.listdir(run / "spool")) == ("", "1", [])


def test_files_named_by_a_record_are_written_only_when_they_are_this_uids_own(tmp_path):
    env, queue, run = _world(tmp_path)
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    config, deferred = _queue(tmp_path, queue, 0)
    config.unlink()
    config.symlink_to(target)
    serve_pending(queue, Lookup.from_environment(env), str(run), lambda p, m: None)
    assert target.read_text() == "keep\n" and os.listdir(run / "spool") == [] and deferred.read_text() == "1"

    config, deferred = _queue(tmp_path, queue, 1)
    os.chown(deferred, pwd.getpwnam("nobody").pw_uid, -1)
    serve_pending(queue, Lookup.from_environment(env), str(run), lambda p, m: None)
    assert deferred.read_text() == "2"  # not ours: not written


def test_a_record_written_by_another_uid_is_dropped_unserved(tmp_path):
    env, queue, run = _world(tmp_path)
    config, deferred = _queue(tmp_path, queue, 0)
    record = tmp_path / "run" / QUEUE / "1000-0"
    os.chown(record, pwd.getpwnam("nobody").pw_uid, -1)
    logged = []
    serve_pending(queue, Lookup.from_environment(env), str(run), lambda p, m: logged.append(m))
    assert (config.read_text(), deferred.read_text(), queue.names()) == ("", "2", [])
    assert any("not a regular file written by uid 0" in m for m in logged)


def test_run_serves_everything_queued_and_lets_go_of_the_lock(tmp_path):
    env, queue, run = _world(tmp_path)
    configs = [_queue(tmp_path, queue, n)[0] for n in range(3)]
    fd = os.open(os.path.join(queue.directory, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert openvpnconnect.run(queue, fd, env, lambda p, m: None, linger=0) == 3
    assert all(c.read_text() for c in configs) and queue.names() == []
    other = os.open(os.path.join(queue.directory, LOCK), os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    os.close(other)


def test_main_without_its_lock_descriptor_does_nothing(tmp_path):
    env, queue, run = _world(tmp_path)
    _queue(tmp_path, queue, 0)
    assert openvpnconnect.main(["--lock-fd"], env) == 0 and openvpnconnect.main(["x", "y"], env) == 0
    assert len(queue.names()) == 1
