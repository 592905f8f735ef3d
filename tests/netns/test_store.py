"""The store: atomic replacement, mode and owner, one file per peer, no symlinks followed."""

import os
import stat
import time

import pytest

from l2tproute.core import constants as C
from l2tproute.core.model import make_route, parse_destination, parse_peer
from l2tproute.core.routefile import parse, route_line
from l2tproute.system import dstindex
from l2tproute.system.store import Store, StoreError, store_dir_from_environment

PEER = parse_peer("10.255.10.1")


def test_write_is_mode_0644_and_leaves_no_temporary_file(tmp_path):
    store = Store(str(tmp_path))
    with store.locked():
        store.write(PEER, [route_line(make_route(PEER, parse_destination("10.0.0.0/24")))])
    path = tmp_path / "10.255.10.1.routes"
    assert path.read_bytes() == b"10.0.0.0/24 via 10.255.10.1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [C.LOCK_FILE_NAME, "10.255.10.1.routes"]


def test_rewrite_keeps_the_owner_of_the_file(tmp_path):
    path = tmp_path / "10.255.10.1.routes"
    path.write_bytes(b"10.0.0.0/24 via 10.255.10.1\n")
    os.chown(path, 33, 33)
    store = Store(str(tmp_path))
    with store.locked():
        store.write(PEER, parse(path.read_bytes()) + [route_line(make_route(PEER, parse_destination("10.1.0.0/24")))])
    assert (path.stat().st_uid, path.stat().st_gid) == (33, 33)
    assert path.read_bytes().count(b"\n") == 2


def test_file_is_removed_when_its_last_route_goes(tmp_path):
    path = tmp_path / "10.255.10.1.routes"
    path.write_bytes(b"# comment\n10.0.0.0/24 via 10.255.10.1\n")
    store = Store(str(tmp_path))
    with store.locked():
        store.write(PEER, [line for line in parse(path.read_bytes()) if line.route is None])
    assert not path.exists()


def test_stale_temporary_files_are_swept_under_the_lock(tmp_path):
    junk = tmp_path / f"{C.TEMP_FILE_PREFIX}10.255.10.1.abc"
    junk.write_bytes(b"10.0.0.0/24 via")
    store = Store(str(tmp_path))
    assert store.peers() == ([], [])
    with store.locked():
        pass
    assert not junk.exists()


def test_symlink_named_like_a_route_file_is_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:x:0:0\n")
    (tmp_path / "routes.d").mkdir()
    os.symlink(secret, tmp_path / "routes.d" / "10.255.10.1.routes")
    store = Store(str(tmp_path / "routes.d"))
    with pytest.raises(StoreError, match="symbolic link") as err:
        store.read_bytes(PEER)
    assert "root:x" not in str(err.value)
    peers, warnings = store.peers()
    assert peers == [] and "symbolic link" in warnings[0]


def test_directory_named_like_a_route_file_is_an_error_not_a_crash(tmp_path):
    (tmp_path / "10.255.10.1.routes").mkdir()
    with pytest.raises(StoreError, match="not a regular file|directory"):
        Store(str(tmp_path)).read_bytes(PEER)


def test_peers_come_in_address_order_and_odd_names_are_reported(tmp_path):
    for name in ["10.255.10.11.routes", "10.255.10.2.routes", "10.255.10.1.routes", "bogus.routes", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    peers, warnings = Store(str(tmp_path)).peers()
    assert [str(p) for p in peers] == ["10.255.10.1", "10.255.10.2", "10.255.10.11"]
    assert len(warnings) == 1 and "bogus.routes" in warnings[0]


def test_store_directory_comes_from_the_environment_except_under_sudo():
    assert store_dir_from_environment({C.STORE_DIR_ENV: "/tmp/x"}) == "/tmp/x"
    assert store_dir_from_environment({C.STORE_DIR_ENV: "/tmp/x", "SUDO_UID": "33"}) == C.DEFAULT_STORE_DIR
    assert store_dir_from_environment({}) == C.DEFAULT_STORE_DIR


def test_every_command_leaves_only_route_files_and_the_lock_in_the_store(netns, store_dir, tmp_path, monkeypatch):
    """The destination index is a cache: it goes to L2TP_CACHE_DIR (/var/cache/l2tproute), never into
    the store, whichever front answers (the sh `list --peer`, the lean `apply`, the full CLI)."""
    from conftest import run_routectl

    cache = tmp_path / "cache"
    monkeypatch.setenv(C.CACHE_DIR_ENV, str(cache))
    netns.add_ppp("ppp0", "10.255.10.1")
    netns.add_ppp("ppp1", "10.255.10.2")
    other = store_dir / "10.255.10.2.routes"
    other.write_bytes(b"10.7.0.0/24 via 10.255.10.2\n")
    commands = [["list"], ["list", "--peer", "10.255.10.2"], ["apply"], ["apply", "--peer", "10.255.10.2"],
                ["status"], ["add", "--peer", "10.255.10.1", "--dst", "10.1.0.0/24"],
                ["add", "--peer", "10.255.10.1", "--dst", "10.7.0.0/24"],  # refused: another peer has it
                ["add", "--peer", "10.255.10.1", "--dst", "10.2.0.0/24", "--dry-run"],
                ["list", "--peer", "10.255.10.1"], ["del", "--peer", "10.255.10.1", "--dst", "10.1.0.0/24"],
                ["del", "--peer", "10.255.10.2", "--dst", "all"]]
    for argv in commands:
        if argv[0] == "add":
            # The index records only files unchanged for dstindex.SETTLE_NS (a clock tick could hide an edit).
            time.sleep(max(0.0, other.stat().st_ctime + dstindex.SETTLE_NS / 1e9 + 0.1 - time.time()))
        done = run_routectl(*argv, ns=netns if argv[0] in ("add", "apply", "status", "del") else None)
        assert done.returncode in (0, 2), (argv, done.stderr)
        left = sorted(p.name for p in store_dir.iterdir() if not p.name.endswith(C.ROUTE_FILE_SUFFIX))
        assert left in ([], [C.LOCK_FILE_NAME]), (argv, left)
    assert sorted(p.name for p in cache.iterdir()) == [C.INDEX_FILE_NAME]
