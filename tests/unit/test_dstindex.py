"""The destination index (l2tproute/system/dstindex.py) against a plain read of every file, under hand edits.

Whatever an admin or the old tool does to the route files between two uses (a new file, an
in-place edit, a rename over, a removal, a broken file, an mtime set back, the index itself
torn or removed), the index must answer exactly what parsing every file answers.
"""

from __future__ import annotations

import os
import random
import time

import pytest
from support.scenarios import PEER1, PEER2, World

from l2tproute.core import constants as C
from l2tproute.core.model import parse_peer
from l2tproute.core.routefile import routes as routes_of
from l2tproute.system import dstindex
from l2tproute.system.store import Store, StoreError

TICK = 0.02  # longer than a clock tick of file times: each edit gets a time of its own


def brute(store: Store) -> tuple[dict, set]:
    peers, _ = store.peers()
    keys, broken = {}, set()
    for peer in peers:
        try:
            lines = store.read(peer) or []
        except StoreError:
            broken.add(str(peer))
            continue
        keys[str(peer)] = frozenset(dstindex.key_of(r) for r in routes_of(lines))
    return keys, broken


def indexed(store: Store) -> tuple[dict, set]:
    found = dstindex.read(store)
    dstindex.save(store, found)
    return {peer: frozenset(keys) for peer, keys in found.keys.items()}, set(found.broken)


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


def test_the_index_answers_as_reading_every_file_under_hand_edits(tmp_path, settled):
    store = Store(str(tmp_path))
    rng = random.Random(16)
    seen = set()
    for _ in range(300):
        for _ in range(rng.randrange(0, 3)):
            seen.add(_edit(store, rng))
        time.sleep(TICK)
        assert indexed(store) == brute(store)
        if rng.random() < 0.05:
            with open(os.path.join(str(tmp_path), dstindex.INDEX_NAME), "r+b") as handle:
                handle.truncate(rng.randrange(0, 40))  # torn: rebuilt
        if rng.random() < 0.05:
            os.unlink(os.path.join(str(tmp_path), dstindex.INDEX_NAME))
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
    assert sorted(p.name for p in w.store_dir.iterdir() if not p.name.startswith(".")) == [
        f"{PEER1}{C.ROUTE_FILE_SUFFIX}", f"{PEER2}{C.ROUTE_FILE_SUFFIX}"]
    assert (w.store_dir / dstindex.INDEX_NAME).is_file()


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


def test_a_dry_run_writes_no_index(tmp_path, settled):
    from l2tproute.fronts.invocation import DryRunStore

    store = DryRunStore(str(tmp_path))
    with open(_path(store, 1), "wb") as handle:
        handle.write(b"10.0.1.0/24 via 10.255.12.1\n")
    found = dstindex.read(store)
    assert found.pending is not None
    dstindex.save(store, found)
    assert sorted(os.listdir(str(tmp_path))) == ["10.255.12.1.routes"]


def test_a_read_ahead_of_the_lock_is_confirmed_or_read_again(tmp_path, settled, monkeypatch):
    from l2tproute.core.routefile import parse

    store = Store(str(tmp_path))
    with open(_path(store, 1), "wb") as handle:
        handle.write(b"10.0.1.0/24 via 10.255.12.1\n")
    time.sleep(TICK)
    assert dstindex.read_ahead(store).directory is None  # the directory changed too recently to be trusted
    monkeypatch.setattr(dstindex, "DIR_SETTLE_NS", -10**12)
    ahead = dstindex.read_ahead(store)
    assert ahead.directory is not None and dstindex.confirm(store, ahead) is ahead  # nothing written since
    with store.locked():  # another l2tp-routectl writes between the read ahead and our lock
        store.write(parse_peer("10.255.12.2"), parse(b"10.0.2.0/24 via 10.255.12.2\n"))
    confirmed = dstindex.confirm(store, ahead)
    assert confirmed is not ahead and confirmed.keys["10.255.12.2"] == ["10.0.2.0/24 None None"]
