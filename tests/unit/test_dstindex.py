"""The destination index (l2tproute/system/dstindex.py) against a plain read of every file, under hand edits.

Whatever an admin or the old tool does to the route files between two uses (a new file, an
in-place edit, a rename over, a removal, a broken file, an mtime set back, the index itself
torn or removed), the index must answer exactly what parsing every file answers.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from support.scenarios import PEER1, PEER2, World

from l2tproute.core import constants as C
from l2tproute.core.model import parse_peer
from l2tproute.core.routefile import routes as routes_of
from l2tproute.system import dstindex
from l2tproute.system.store import Store, StoreError

TICK = 0.02  # longer than a clock tick of file times: each edit gets a time of its own


def brute(store: Store) -> tuple[dict, set]:
    """Every file parsed, each route's slot as (destination, table, metric): nothing of dstindex."""
    peers, _ = store.peers()
    keys, broken = {}, set()
    for peer in peers:
        try:
            lines = store.read(peer) or []
        except StoreError:
            broken.add(str(peer))
            continue
        keys[str(peer)] = frozenset((str(r.dst), r.table_key, r.metric) for r in routes_of(lines))
    return keys, broken


def _slot(key: str) -> tuple:
    dst, table, metric = key.split(" ")
    return dst, None if table == "None" else table, None if metric == "None" else int(metric)


def indexed(store: Store) -> tuple[dict, set]:
    found = dstindex.read(store)
    dstindex.save(store, found)
    return {peer: frozenset(_slot(key) for key in keys) for peer, keys in found.keys.items()}, set(found.broken)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """This test's own cache directory (L2TP_CACHE_DIR), where every Store made here keeps its index."""
    path = tmp_path / "cache"
    monkeypatch.setenv(C.CACHE_DIR_ENV, str(path))
    return path


@pytest.fixture
def settled(monkeypatch):
    """Every file counts as settled (older than SETTLE_NS): the recorded identities are used."""
    monkeypatch.setattr(dstindex, "SETTLE_NS", -10**12)


def _path(store: Store, i: int) -> str:
    return store.path(parse_peer(f"10.255.12.{i}"))


def _edit(store: Store, rng: random.Random) -> str:
    i = rng.randrange(1, 12)
    path = _path(store, i)
    data = "".join(f"10.{rng.randrange(0, 4)}.{rng.randrange(0, 4)}.0/24 via 10.255.12.{i}\n"
                   for _ in range(rng.randrange(1, 4))).encode()
    kind = rng.choice(["write", "inplace_same_size", "rename", "remove", "broken", "append", "mtime_back"])
    exists = os.path.exists(path)
    if kind == "write" or not exists:
        with open(path, "wb") as handle:
            handle.write(data)
    elif kind == "inplace_same_size":
        with open(path, "rb") as handle:
            old = handle.read()
        flipped = old.replace(b"10.0.", b"10.3.", 1) if b"10.0." in old else old.replace(b"10.3.", b"10.0.", 1)
        stat = os.stat(path)
        with open(path, "r+b") as handle:  # as an editor that writes in place, then the mtime put back
            handle.write(flipped)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif kind == "rename":
        with open(path + ".new", "wb") as handle:
            handle.write(data)
        os.rename(path + ".new", path)
    elif kind == "remove":
        os.unlink(path)
    elif kind == "broken":
        with open(path, "wb") as handle:
            handle.write(b"x" * (C.MAX_ROUTE_FILE_BYTES + 1))
    elif kind == "append":
        with open(path, "ab") as handle:
            handle.write(data)
    else:
        stat = os.stat(path)
        with open(path, "ab") as handle:
            handle.write(b"# note\n")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))
    return kind


def test_the_index_answers_as_reading_every_file_under_hand_edits(tmp_path, settled, cache):
    store = Store(str(tmp_path / "routes.d"))
    os.mkdir(store.directory)
    rng = random.Random(16)
    seen = set()
    for _ in range(300):
        for _ in range(rng.randrange(0, 3)):
            seen.add(_edit(store, rng))
        time.sleep(TICK)
        assert indexed(store) == brute(store)
        if rng.random() < 0.05:
            with open(cache / dstindex.INDEX_NAME, "r+b") as handle:
                handle.truncate(rng.randrange(0, 40))  # torn: rebuilt
        if rng.random() < 0.05:
            os.unlink(cache / dstindex.INDEX_NAME)
    assert seen >= {"write", "inplace_same_size", "rename", "remove", "broken", "append", "mtime_back"}


def test_the_index_parses_only_changed_files(tmp_path, settled, monkeypatch):
    store = Store(str(tmp_path))
    for i in range(1, 6):
        with open(_path(store, i), "wb") as handle:
            handle.write(f"10.0.{i}.0/24 via 10.255.12.{i}\n".encode())
    dstindex.save(store, dstindex.read(store))
    parsed = []
    real_read = Store.read

    def counting(self, peer):
        parsed.append(str(peer))
        return real_read(self, peer)

    monkeypatch.setattr(Store, "read", counting)
    assert len(dstindex.read(store).keys) == 5 and parsed == []  # every file from the index
    time.sleep(TICK)
    with open(_path(store, 3), "ab") as handle:
        handle.write(b"10.9.9.0/24 via 10.255.12.3\n")
    assert "10.9.9.0/24 None None" in dstindex.read(store).keys["10.255.12.3"]
    assert parsed == ["10.255.12.3"]


def test_a_file_changed_within_the_settle_time_is_not_recorded(tmp_path):
    """A clock tick could give an edit right after a read the same times: such a file is read each time."""
    store = Store(str(tmp_path))
    with open(_path(store, 1), "wb") as handle:
        handle.write(b"10.0.1.0/24 via 10.255.12.1\n")
    found = dstindex.read(store)
    assert found.pending is None  # nothing to record: the only file is too young
    with open(_path(store, 1), "r+b") as handle:  # same size, same inode, maybe the same tick
        handle.write(b"10.0.2.0/24 via 10.255.12.1\n")
    assert dstindex.read(store).keys["10.255.12.1"] == ["10.0.2.0/24 None None"]


def test_add_refuses_a_destination_a_hand_edit_gave_another_peer(tmp_path, settled):
    w = World.in_memory(tmp_path)
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_ppp("ppp1", PEER2)
    assert w.add("first", PEER1, "10.1.0.0/24").ok
    time.sleep(TICK)
    w.write(PEER2, b"10.7.0.0/24 via 10.255.10.2\n")  # by hand, while the index holds PEER2 as empty
    assert w.add("taken", PEER1, "10.7.0.0/24").error.startswith(
        "Refused: 10.7.0.0/24 is already routed to peer 10.255.10.2")
    time.sleep(TICK)
    path = w.store_dir / f"{PEER2}{C.ROUTE_FILE_SUFFIX}"
    stat = path.stat()
    with open(path, "r+b") as handle:  # in place, the same size, the mtime put back
        handle.write(b"10.8.0.0/24 via 10.255.10.2\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert w.add("free", PEER1, "10.7.0.0/24").ok
    assert w.add("moved", PEER1, "10.8.0.0/24").error.startswith(
        "Refused: 10.8.0.0/24 is already routed to peer 10.255.10.2")
    assert sorted(p.name for p in w.store_dir.iterdir()) == [
        C.LOCK_FILE_NAME, f"{PEER1}{C.ROUTE_FILE_SUFFIX}", f"{PEER2}{C.ROUTE_FILE_SUFFIX}"]
    assert (Path(w.store.cache_dir) / dstindex.INDEX_NAME).is_file()


def test_a_refused_add_leaves_the_store_as_it_was(tmp_path, settled):
    w = World.in_memory(tmp_path)
    w.kernel.add_ppp("ppp0", PEER1)
    w.write(PEER2, b"10.7.0.0/24 via 10.255.10.2\n")
    assert w.add("taken", PEER1, "10.7.0.0/24").error.startswith("Refused:")
    assert sorted(p.name for p in w.store_dir.iterdir()) == [C.LOCK_FILE_NAME, f"{PEER2}{C.ROUTE_FILE_SUFFIX}"]


def test_a_broken_file_is_warned_about_and_skipped_as_before(tmp_path, settled):
    w = World.in_memory(tmp_path)
    w.kernel.add_ppp("ppp0", PEER1)
    w.write("10.255.10.9", b"x" * (C.MAX_ROUTE_FILE_BYTES + 1))
    for number in (1, 2):  # parsed once, then from the index: the same warning
        done = w.add(f"add{number}", PEER1, f"10.{number}.0.0/24")
        assert done.ok
        assert done.warnings == (f"STORE/10.255.10.9.routes is larger than {C.MAX_ROUTE_FILE_BYTES} bytes; "
                                 f"that is not a route file; not checked for 10.{number}.0.0/24",)


def test_a_dry_run_writes_no_index(tmp_path, settled, cache):
    from l2tproute.fronts.invocation import DryRunStore

    os.mkdir(tmp_path / "routes.d")
    store = DryRunStore(str(tmp_path / "routes.d"))
    with open(_path(store, 1), "wb") as handle:
        handle.write(b"10.0.1.0/24 via 10.255.12.1\n")
    found = dstindex.read(store)
    assert found.pending is not None
    dstindex.save(store, found)
    assert sorted(os.listdir(store.directory)) == ["10.255.12.1.routes"] and not cache.exists()


def test_a_read_ahead_of_the_lock_is_confirmed_or_read_again(tmp_path, settled, monkeypatch):
    from l2tproute.core.routefile import parse

    store = Store(str(tmp_path))
    with open(_path(store, 1), "wb") as handle:
        handle.write(b"10.0.1.0/24 via 10.255.12.1\n")
    # A directory changed within DIR_SETTLE_NS is not trusted: set the window, do not race it.
    monkeypatch.setattr(dstindex, "DIR_SETTLE_NS", 10**15)
    assert dstindex.read_ahead(store).directory is None
    monkeypatch.setattr(dstindex, "DIR_SETTLE_NS", -10**12)
    ahead = dstindex.read_ahead(store)
    assert ahead.directory is not None and dstindex.confirm(store, ahead) is ahead  # nothing written since
    with store.locked():  # another l2tp-routectl writes between the read ahead and our lock
        store.write(parse_peer("10.255.12.2"), parse(b"10.0.2.0/24 via 10.255.12.2\n"))
    confirmed = dstindex.confirm(store, ahead)
    assert confirmed is not ahead and confirmed.keys["10.255.12.2"] == ["10.0.2.0/24 None None"]


# -- issue 28: the index is a cache under /var/cache, never in the store, never trusted over the files --

def _only_route_files_and_the_lock(store_dir: Path) -> bool:
    return all(p.name == C.LOCK_FILE_NAME or p.name.endswith(C.ROUTE_FILE_SUFFIX) for p in store_dir.iterdir())


def test_the_store_holds_only_route_files_and_the_lock_after_every_operation(tmp_path, settled, cache):
    w = World.in_memory(tmp_path)
    w.kernel.add_ppp("ppp0", PEER1)
    w.kernel.add_ppp("ppp1", PEER2)
    w.write(PEER2, b"10.7.0.0/24 via 10.255.10.2\n")
    steps = [lambda: w.add("add", PEER1, "10.1.0.0/24"), lambda: w.add("taken", PEER1, "10.7.0.0/24"),
             lambda: w.add("forced", PEER1, "10.7.0.0/24", force=True), lambda: w.apply("apply"),
             lambda: w.apply("apply peer", PEER1), lambda: w.status("status"), lambda: w.status("status peer", PEER2),
             lambda: w.delete("del", PEER1, "10.1.0.0/24"), lambda: w.delete("del all", PEER2, "all")]
    for step in steps:
        step()
        assert _only_route_files_and_the_lock(w.store_dir), sorted(p.name for p in w.store_dir.iterdir())
    assert (cache / dstindex.INDEX_NAME).is_file() and sorted(p.name for p in cache.iterdir()) == [dstindex.INDEX_NAME]


def _lying_index(store: Store, cache: Path) -> bytes:
    """The store's own index, with every peer's slots swapped for one nobody has: trusted, it would say so."""
    import json

    dstindex.save(store, dstindex.read(store))
    doc = json.loads((cache / dstindex.INDEX_NAME).read_bytes())
    for entry in doc["files"].values():
        entry[1] = ["10.99.0.0/24 None None"]
    return json.dumps(doc).encode()


@pytest.fixture
def three_peers(tmp_path, settled) -> Store:
    store = Store(str(tmp_path / "routes.d"))
    os.mkdir(store.directory)
    for i in range(1, 4):
        with open(_path(store, i), "wb") as handle:
            handle.write(f"10.0.{i}.0/24 via 10.255.12.{i}\n".encode())
    return store


def test_the_lie_is_believed_when_it_is_a_regular_index_of_this_store(three_peers, cache):
    """The premise of the tests below: _lying_index is an index the store would use as it is."""
    (cache / dstindex.INDEX_NAME).write_bytes(_lying_index(three_peers, cache))
    assert indexed(three_peers)[0] == {f"10.255.12.{i}": {("10.99.0.0/24", None, None)} for i in range(1, 4)}


def _owned_by_another_uid(path, monkeypatch) -> None:
    """`path` owned by another uid: chown as root; unprivileged (the unit layer runs as nobody
    too), os.fstat reports another owner for that file, as a chown would."""
    if os.geteuid() == 0:
        os.chown(path, 12345, -1)
        return
    target = os.stat(path)
    real = os.fstat

    def fstat(fd):
        info = real(fd)
        if (info.st_dev, info.st_ino) != (target.st_dev, target.st_ino):
            return info
        fields = list(info[:10])
        fields[4] = os.geteuid() + 1
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", fstat)


@pytest.mark.parametrize("kind", ["symlink", "huge", "other owner", "writable by others", "another store",
                                  "the same path, another directory"])
def test_an_index_not_made_for_this_store_by_this_user_is_not_trusted(three_peers, cache, kind, monkeypatch):
    lie = _lying_index(three_peers, cache)
    index = cache / dstindex.INDEX_NAME
    index.unlink()
    if kind == "symlink":
        (cache / "elsewhere").write_bytes(lie)
        index.symlink_to(cache / "elsewhere")
    elif kind == "huge":
        index.write_bytes(lie + b" " * 4096)
        monkeypatch.setattr(C, "MAX_CACHE_BYTES", len(lie) + 100)
    elif kind in ("other owner", "writable by others"):
        index.write_bytes(lie)
        if kind == "other owner":
            _owned_by_another_uid(index, monkeypatch)
        else:
            os.chmod(index, 0o666)
    elif kind == "another store":
        index.write_bytes(lie.replace(three_peers.directory.encode(), (three_peers.directory + "-old").encode()))
    else:
        moved = three_peers.directory + "-moved"
        os.rename(three_peers.directory, moved)
        os.mkdir(three_peers.directory)  # the store made anew, same name, other inode
        for name in os.listdir(moved):
            os.link(os.path.join(moved, name), os.path.join(three_peers.directory, name))
        index.write_bytes(lie)
    assert indexed(three_peers) == brute(three_peers)
    assert index.is_file() and not index.is_symlink() and index.read_bytes() != lie  # rebuilt in its place


def test_an_old_copy_of_the_index_put_back_after_an_edit_is_not_trusted(three_peers, cache):
    dstindex.save(three_peers, dstindex.read(three_peers))
    old = (cache / dstindex.INDEX_NAME).read_bytes()
    path = _path(three_peers, 2)
    with open(path + ".new", "wb") as handle:  # the same size, as an editor writes it: a new inode
        handle.write(b"10.0.9.0/24 via 10.255.12.2\n")
    os.rename(path + ".new", path)
    (cache / dstindex.INDEX_NAME).write_bytes(old)
    keys, _ = indexed(three_peers)
    assert keys["10.255.12.2"] == {("10.0.9.0/24", None, None)} and indexed(three_peers) == brute(three_peers)


@pytest.mark.parametrize("kind", ["missing", "torn", "not json", "an older version", "empty directory",
                                  "directory with a file", "fifo", "unreadable directory"])
def test_an_index_that_cannot_be_used_is_rebuilt(three_peers, cache, kind):
    import json

    dstindex.save(three_peers, dstindex.read(three_peers))
    index = cache / dstindex.INDEX_NAME
    good = index.read_bytes()
    index.unlink()
    if kind == "torn":
        index.write_bytes(good[: len(good) // 2])
    elif kind == "not json":
        index.write_bytes(b"\x00\xff" * 10)
    elif kind == "an older version":
        doc = json.loads(good)
        index.write_bytes(json.dumps({"version": 1, "files": doc["files"]}).encode())
    elif kind == "empty directory":
        index.mkdir()
    elif kind == "directory with a file":
        index.mkdir()
        (index / "keep").write_bytes(b"x")
    elif kind == "fifo":
        os.mkfifo(index)  # never opened for a wait: a reader would hang on it
    elif kind == "unreadable directory":
        os.rmdir(cache)
        cache.write_bytes(b"a file where the cache directory should be")
    assert indexed(three_peers) == brute(three_peers)
    if kind == "directory with a file":
        assert (index / "keep").read_bytes() == b"x"  # somebody's directory is never emptied
    elif kind == "unreadable directory":
        assert cache.read_bytes().startswith(b"a file")
    else:
        assert index.is_file() and json.loads(index.read_bytes())["version"] == dstindex.VERSION


def test_the_cache_directory_moves_for_tests_but_never_under_sudo():
    from l2tproute.system.store import cache_dir_from_environment

    assert cache_dir_from_environment({}) == C.DEFAULT_CACHE_DIR == "/var/cache/l2tproute"
    assert cache_dir_from_environment({C.CACHE_DIR_ENV: "/tmp/x"}) == "/tmp/x"
    for sudo in ({"SUDO_UID": "33"}, {"SUDO_USER": "www-data"}):
        assert cache_dir_from_environment({C.CACHE_DIR_ENV: "/tmp/x", **sudo}) == C.DEFAULT_CACHE_DIR
        assert Store.from_environment({C.CACHE_DIR_ENV: "/tmp/x", **sudo}).cache_dir == C.DEFAULT_CACHE_DIR
    assert Store.from_environment({C.CACHE_DIR_ENV: "/tmp/x"}).cache_dir == "/tmp/x"


def test_a_temporary_index_left_by_a_killed_writer_goes_with_the_next_save(three_peers, cache):
    cache.mkdir()
    leftover = cache / f"{C.TEMP_FILE_PREFIX}{dstindex.INDEX_NAME}.abc123"
    leftover.write_bytes(b"half")
    dstindex.save(three_peers, dstindex.read(three_peers))
    assert sorted(p.name for p in cache.iterdir()) == [dstindex.INDEX_NAME]
