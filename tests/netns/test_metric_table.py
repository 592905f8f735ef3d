"""`--metric N` and `--table ID|NAME`: written at the end of the line, applied and removed like any route."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import routectl_argv

from l2tproute.core import constants as C

PEER = "10.255.10.2"
FILE = f"{PEER}.routes"


def tagged(netns, family: int = 4) -> set:
    return {(r["dst"], r.get("gateway"), r["dev"], r.get("table", "main"), r.get("metric", 0))
            for r in netns.tagged(family)}


def test_metric_and_table_go_at_the_end_of_the_line_and_into_the_kernel(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    for extra in ([], ["--metric", "50"], ["--table", "100"], ["--metric", "7", "--table", "101"]):
        result = routectl("add", "--peer", PEER, "--dst", "192.168.20.0/24", *extra, ns=netns)
        assert result.returncode == 0 and "Installed on ppp0." in result.stdout, result.stderr
    assert (store_dir / FILE).read_bytes() == (b"192.168.20.0/24 via 10.255.10.2\n"  # no extras: unchanged format
                                               b"192.168.20.0/24 via 10.255.10.2 metric 50\n"
                                               b"192.168.20.0/24 via 10.255.10.2 table 100\n"
                                               b"192.168.20.0/24 via 10.255.10.2 metric 7 table 101\n")
    assert tagged(netns) == {("192.168.20.0/24", PEER, "ppp0", "main", 0),
                             ("192.168.20.0/24", PEER, "ppp0", "main", 50),
                             ("192.168.20.0/24", PEER, "ppp0", "100", 0),
                             ("192.168.20.0/24", PEER, "ppp0", "101", 7)}
    listed = routectl("list", "--peer", PEER)
    assert listed.stdout.splitlines()[1:] == (store_dir / FILE).read_text().splitlines()


def test_apply_reinstalls_and_del_removes_every_slot_of_the_destination(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    assert routectl("add", "--peer", PEER, "--dst", "192.168.20.0/24", "--metric", "50", ns=netns).returncode == 0
    assert routectl("add", "--peer", PEER, "--dst", "192.168.20.0/24", "--table", "100", ns=netns).returncode == 0
    assert routectl("add", "--peer", PEER, "--dst", "192.168.21.0/24", "--table", "100", ns=netns).returncode == 0
    netns.ip("route", "flush", "table", "all", "proto", str(C.RT_PROTO))
    assert routectl("apply", ns=netns).returncode == 0
    assert len(tagged(netns)) == 3
    again = routectl("apply", ns=netns)
    assert again.returncode == 0 and "0 installed, 0 updated, 0 removed, 3 unchanged" in again.stdout
    deleted = routectl("del", "--peer", PEER, "--dst", "192.168.20.0/24", ns=netns)
    assert deleted.returncode == 0
    assert tagged(netns) == {("192.168.21.0/24", PEER, "ppp0", "100", 0)}
    assert (store_dir / FILE).read_bytes() == b"192.168.21.0/24 via 10.255.10.2 table 100\n"


def test_a_changed_metric_moves_the_route_to_its_new_slot(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    assert routectl("add", "--peer", PEER, "--dst", "192.168.20.0/24", "--metric", "50", ns=netns).returncode == 0
    (store_dir / FILE).write_bytes(b"192.168.20.0/24 via 10.255.10.2 metric 60\n")  # edited by hand
    result = routectl("apply", ns=netns)
    assert result.returncode == 0 and "1 installed" in result.stdout and "1 removed" in result.stdout
    assert tagged(netns) == {("192.168.20.0/24", PEER, "ppp0", "main", 60)}


def test_the_same_destination_in_another_slot_is_a_second_route_not_an_update(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    assert routectl("add", "--peer", PEER, "--dst", "10.1.0.0/16", ns=netns).returncode == 0
    second = routectl("add", "--peer", PEER, "--dst", "10.1.0.0/16", "--metric", "10", ns=netns)
    assert second.stdout.startswith("Added route: 10.1.0.0/16 via 10.255.10.2 metric 10")
    same = routectl("add", "--peer", PEER, "--dst", "10.1.0.0/16", "--metric", "10", ns=netns)
    assert same.returncode == 0 and same.stdout.startswith("Route already exists")
    assert (store_dir / FILE).read_bytes().count(b"\n") == 2


@pytest.mark.parametrize("args, message", [
    (["--metric", "-1"], "invalid metric"),
    (["--metric", "4294967296"], "invalid metric"),
    (["--metric", "1e3"], "invalid metric"),
    (["--table", "255"], "invalid table"),
    (["--table", "local"], "invalid table"),
    (["--table", "0"], "invalid table"),
    (["--table", "a b"], "invalid table"),
    (["--table", "nosuchtable"], "unknown routing table nosuchtable"),
])
def test_wrong_metric_or_table_is_refused_and_nothing_is_stored(routectl, store_dir, netns, args, message):
    result = routectl("add", "--peer", PEER, "--dst", "10.1.0.0/16", *args, ns=netns)
    assert result.returncode == 2 and message in result.stderr
    assert [p.name for p in store_dir.iterdir() if p.name != C.LOCK_FILE_NAME] == []


def run_with_table_names(tables_d: Path, *args, ns=None):
    """The installed command where /etc/iproute2/rt_tables.d is `tables_d` (private mount namespace)."""
    argv = routectl_argv(*args, ns=ns)
    script = 'mount --bind "$1" /etc/iproute2/rt_tables.d && shift && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           str(tables_d), *argv], capture_output=True, text=True, timeout=60, env=dict(os.environ))


def test_a_table_name_from_rt_tables_d_is_stored_as_written_and_installed_by_number(store_dir, netns, tmp_path):
    if not os.path.isdir("/etc/iproute2/rt_tables.d"):
        pytest.fail("/etc/iproute2/rt_tables.d is missing: iproute2 is not installed as Debian ships it")
    tables_d = tmp_path / "rt_tables.d"
    tables_d.mkdir()
    (tables_d / "l2tp.conf").write_text("# users' own table\n200\tl2tpusers\n")
    netns.add_ppp("ppp0", PEER)
    added = run_with_table_names(tables_d, "add", "--peer", PEER, "--dst", "10.2.0.0/16", "--table", "l2tpusers",
                                 ns=netns)
    assert added.returncode == 0, added.stderr
    assert (store_dir / FILE).read_bytes() == b"10.2.0.0/16 via 10.255.10.2 table l2tpusers\n"
    assert tagged(netns) == {("10.2.0.0/16", PEER, "ppp0", "200", 0)}
    state = run_with_table_names(tables_d, "status", "--peer", PEER, ns=netns)
    assert state.returncode == 0 and "installed 10.2.0.0/16 via 10.255.10.2 table l2tpusers" in state.stdout
    deleted = run_with_table_names(tables_d, "del", "--peer", PEER, "--dst", "10.2.0.0/16", ns=netns)
    assert deleted.returncode == 0 and tagged(netns) == set()


def test_a_line_whose_table_name_is_gone_spoils_neither_apply_nor_del(routectl, store_dir, netns):
    netns.add_ppp("ppp0", PEER)
    netns.add_ppp("ppp1", "10.255.10.3")
    (store_dir / FILE).write_bytes(b"10.78.0.0/16 via 10.255.10.2 table nosuch\n10.79.0.0/16 via 10.255.10.2\n")
    (store_dir / "10.255.10.3.routes").write_bytes(b"10.80.0.0/16 via 10.255.10.3\n")
    applied = routectl("apply", ns=netns)
    assert applied.returncode == 1 and "unknown routing table nosuch" in applied.stderr
    assert {r[0] for r in tagged(netns)} == {"10.79.0.0/16", "10.80.0.0/16"}
    deleted = routectl("del", "--peer", PEER, "--dst", "10.78.0.0/16", ns=netns)
    assert deleted.returncode == 0 and "Deleted route: 10.78.0.0/16 via 10.255.10.2 table nosuch" in deleted.stdout
    assert (store_dir / FILE).read_bytes() == b"10.79.0.0/16 via 10.255.10.2\n"
    assert routectl("apply", ns=netns).returncode == 0
