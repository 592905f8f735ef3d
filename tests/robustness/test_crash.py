"""SIGKILL at random moments during add, del and apply never tears a file, never leaves a
stale lock, and never lets temporary files be read as route files or pile up.

Each round forks one command (the real `entry.run`, see forkcli.py) against a store
and a namespace with connected and offline peers, and kills its whole process group
(the command and any `ip` it started, as systemd would) at a random moment: anywhere
in its life, after it took the store lock, or after it started staging a file. Then:

- every route file byte-equals its state before the command or the state a serial
  model says the command leads to (and the command touches no other file);
- the lock is free at once (a non-blocking flock succeeds), and there is one lock file;
- temporary files never carry a route-file name, are never listed, and at most the
  one of the last killed writer exists (the next locked command removes it);
- hand-written lines of another kind survive byte for byte.

The store is left as the kill left it, so the next round starts from a crash. Every
25 rounds a complete `apply` and `list` run: the kernel then holds exactly the stored
routes of connected peers and `list` prints the files as they are.

Size: L2TP_TEST_KILLS (default 250, half what the hardening issue asked for, to keep the
whole suite within 15 minutes; L2TP_TEST_KILLS=500 runs that size).
"""

from __future__ import annotations

import fcntl
import os
import random
import select
import signal
import statistics
import time
from pathlib import Path

import forkcli

from l2tproute.core import constants as C

PEERS = [f"10.255.20.{i}" for i in range(1, 9)]
CONNECTED = {peer: f"ppp{i}" for i, peer in enumerate(PEERS[:4])}
HAND = PEERS[0]
# Hand-edited: a comment and a blank line with CRLF, a CRLF route (used), a line nobody can parse.
HAND_TEXT = (b"# edited by hand, keep\r\n\r\n172.21.0.0/24 via " + HAND.encode() + b"\r\n"
             b"this is not a route\n172.20.0.0/28 via " + HAND.encode() + b"\n")
ROUTE_NAME_OK = {f"{peer}{C.ROUTE_FILE_SUFFIX}" for peer in PEERS}


def pool(peer: str) -> list[str]:
    k = PEERS.index(peer)
    return [f"172.20.{k}.{16 * j}/28" for j in range(8)]


# -- the serial model of one command --------------------------------------------------

def _lines(data: bytes | None) -> list[bytes]:
    parts = (data or b"").split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _dst_of(line: bytes) -> bytes | None:
    words = line.split()
    return words[0] if len(words) >= 3 and words[1] == b"via" else None


def model(files: dict[str, bytes], op: dict) -> dict[str, bytes]:
    """The store after `op` ran to its end (only add/del change files)."""
    files = dict(files)
    name = f"{op['peer']}{C.ROUTE_FILE_SUFFIX}" if op.get("peer") else None
    if op["op"] == "add":
        line = f"{op['dst']} via {op['peer']}{' dev ' + op['dev'] if op.get('dev') else ''}\n".encode()
        lines = _lines(files.get(name))
        for i, old in enumerate(lines):
            if _dst_of(old) == op["dst"].encode():
                lines[i] = line
                break
        else:
            lines.append(line)
        files[name] = b"".join(lines)
    elif op["op"] == "del":
        if op["dst"] == "all":
            files.pop(name, None)
        elif name in files:
            kept = [line for line in _lines(files[name]) if _dst_of(line) != op["dst"].encode()]
            if any(_dst_of(line) for line in kept):
                files[name] = b"".join(kept)
            else:
                files.pop(name)
    return files


def random_op(rng: random.Random) -> dict:
    roll = rng.random()
    peer = rng.choice(PEERS)
    if roll < 0.50:
        dev = None
        if rng.random() < 0.25:  # another line for the same kernel route: an in-place update
            dev = CONNECTED.get(peer, f"l2tp{PEERS.index(peer)}")
        return {"op": "add", "peer": peer, "dst": rng.choice(pool(peer)), "dev": dev}
    if roll < 0.85:
        return {"op": "del", "peer": peer, "dst": rng.choice(pool(peer))}
    if roll < 0.88 and peer != HAND:
        return {"op": "del", "peer": peer, "dst": "all"}
    if roll < 0.95:
        return {"op": "apply"}
    return {"op": "apply", "peer": rng.choice(PEERS)}


def argv_of(op: dict, netns: str) -> list[str]:
    argv = [op["op"]]
    if op.get("peer"):
        argv += ["--peer", op["peer"]]
    if op.get("dst"):
        argv += ["--dst", op["dst"]]
    if op.get("dev"):
        argv += ["--dev", op["dev"]]
    return argv + ["--netns", netns]


# -- the store as it is -------------------------------------------------------------

def route_files(store: Path) -> dict[str, bytes]:
    return {e.name: Path(e.path).read_bytes() for e in os.scandir(store) if e.name.endswith(C.ROUTE_FILE_SUFFIX)}


def lock_is_free(store: Path) -> bool:
    fd = os.open(store / C.LOCK_FILE_NAME, os.O_RDWR | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def wanted_kernel(files: dict[str, bytes]) -> set:
    wanted = set()
    for name, data in files.items():
        peer = name[: -len(C.ROUTE_FILE_SUFFIX)]
        if peer not in CONNECTED:
            continue
        for line in _lines(data):
            if _dst_of(line):
                wanted.add((line.split()[0].decode(), peer, CONNECTED[peer], "main"))
    return wanted


# -- one killed command ---------------------------------------------------------------

def instrument(notify_fd: int):
    """In the child: own process group, and a byte on the pipe when it takes the lock and when it writes."""

    def before():
        from l2tproute.system import store as store_module

        os.setpgid(0, 0)
        locked, staged = store_module.Store.locked, store_module.Store.staged

        import contextlib

        @contextlib.contextmanager
        def noisy_locked(self, timeout=C.LOCK_TIMEOUT):
            with locked(self, timeout):
                os.write(notify_fd, b"L")
                yield

        def noisy_staged(self, peer, lines):
            # Every edit (write or removal) starts here: the new file is staged, then committed.
            os.write(notify_fd, b"W")
            return staged(self, peer, lines)

        store_module.Store.locked = noisy_locked
        store_module.Store.staged = noisy_staged

    return before


def wait_for(fd: int, wanted: bytes, limit: float) -> bool:
    """Read the child's notes until `wanted` arrives (True) or the child ends / time runs out."""
    end = time.monotonic() + limit
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return False
        data = os.read(fd, 64)
        if not data:
            return False
        if wanted in data:
            return True


def wait_until_group_is_gone(pgid: int) -> None:
    """An `ip` the command had just forked dies a moment after the command; until then it
    still holds the command's descriptors (between fork and exec), the lock among them."""
    for _ in range(10_000):
        alive = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive = True
                break
        if not alive:
            return
        time.sleep(0.001)
    raise AssertionError(f"process group {pgid} survived SIGKILL")


def run_once(op: dict, netns: str, mode: str, delay: float) -> dict:
    """Start the command, kill its process group as `mode` says; what happened."""
    read_fd, write_fd = os.pipe()
    pid = forkcli.spawn(argv_of(op, netns), before=instrument(write_fd))
    os.close(write_fd)
    try:
        reached = True
        if mode == "anywhere":
            time.sleep(delay)
        else:
            reached = wait_for(read_fd, b"L" if mode == "locked" else b"W", 30)
            if reached:
                time.sleep(delay)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)  # before its setpgid: it started nothing yet
        _, status = os.waitpid(pid, 0)
        wait_until_group_is_gone(pid)
    finally:
        os.close(read_fd)
    return {"status": forkcli.exit_status(status), "reached": reached}


def calibrate(netns: str) -> dict[str, float]:
    """How long a whole add takes here, its part under the lock, and its file write (no kill)."""
    spans: dict[str, list] = {"total": [], "locked": [], "write": []}
    rng = random.Random(7)
    for _ in range(6):
        peer = rng.choice(PEERS[1:4])
        op = {"op": "add", "peer": peer, "dst": rng.choice(pool(peer))}
        read_fd, write_fd = os.pipe()
        started = time.monotonic()
        pid = forkcli.spawn(argv_of(op, netns), before=instrument(write_fd))
        os.close(write_fd)
        wait_for(read_fd, b"L", 30)
        got_lock = time.monotonic()
        wait_for(read_fd, b"W", 30)
        writing = time.monotonic()
        os.waitpid(pid, 0)
        ended = time.monotonic()
        os.close(read_fd)
        spans["total"].append(ended - started)
        spans["locked"].append(ended - got_lock)
        spans["write"].append(ended - writing)
        forkcli.run(argv_of({"op": "del", "peer": peer, "dst": op["dst"]}, netns))
    return {name: statistics.median(values) for name, values in spans.items()}


def test_sigkill_at_random_moments_tears_nothing_and_leaves_no_lock(tmp_path, netns, monkeypatch):
    kills = int(os.environ.get("L2TP_TEST_KILLS", "250"))
    seed = int(os.environ.get("L2TP_TEST_SEED", time.time_ns() % 100_000))
    print(f"\ncrash: seed {seed} (replay: L2TP_TEST_SEED={seed} L2TP_TEST_KILLS={kills})", flush=True)
    rng = random.Random(seed)
    for name in ("SUDO_UID", "SUDO_USER"):
        monkeypatch.delenv(name, raising=False)
    store = tmp_path / "routes.d"
    store.mkdir()
    monkeypatch.setenv(C.STORE_DIR_ENV, str(store))
    netns.add_many_ppp(list(CONNECTED))
    (store / f"{HAND}{C.ROUTE_FILE_SUFFIX}").write_bytes(HAND_TEXT)
    first = forkcli.run(["apply", "--netns", netns.name])
    assert first.returncode == 0, first.err
    timing = calibrate(netns.name)

    stats = {"anywhere": 0, "locked": 0, "write": 0, "finished before the kill": 0, "left before": 0,
             "left after": 0, "temporaries left by a kill": 0, "temporaries removed by the next command": 0}
    files = route_files(store)
    killed = rounds = 0
    # Each mode's delays follow the machine: shorter after a command that finished before its kill.
    scale = {"anywhere": 1.0, "locked": 1.0, "write": 1.0}
    previous_temporaries: set = set()
    while killed < kills:
        rounds += 1
        assert rounds <= 4 * kills, \
            f"only {killed} of {rounds} commands were killed; the timing is off: {timing} {scale}"
        op = random_op(rng)
        # Most kills go where the store is being changed; some anywhere at all.
        mode = rng.choices(["anywhere", "locked", "write"], weights=[2, 3, 3])[0]
        if op["op"] == "apply" and mode == "write":
            mode = "locked"  # apply writes no file
        before = files
        after = model(before, op)
        span = timing["total" if mode == "anywhere" else mode]
        outcome = run_once(op, netns.name, mode, rng.uniform(0, 0.5 * span * scale[mode]))
        where = f"round {rounds}, seed {seed}, {mode}, {op}"
        if outcome["status"] == -signal.SIGKILL:
            killed += 1
            stats[mode] += 1
            scale[mode] = min(1.0, scale[mode] * 1.1)
        else:
            stats["finished before the kill"] += 1
            if outcome["reached"]:
                # The machine got faster than at calibration (load comes and goes): aim earlier.
                # A command that ended without reaching the lock or a write (a del of a line
                # that is not there) says nothing of the kind: aiming earlier after those left
                # every kill before the commit, and no kill after it (seeds 1 and 77272).
                scale[mode] *= 0.7
            assert outcome["status"] == 0, (where, outcome)

        names = os.listdir(store)
        files = route_files(store)
        for name in set(before) | set(after) | set(files):
            assert files.get(name) in (before.get(name), after.get(name)), (where, name, files.get(name))
        stats["left before" if files == before else "left after"] += 1
        assert lock_is_free(store), where
        temporaries = {n for n in names if n.startswith(C.TEMP_FILE_PREFIX)}
        odd = [n for n in names if n not in ROUTE_NAME_OK and n != C.LOCK_FILE_NAME and n not in temporaries]
        assert odd == [], (where, odd)
        assert all(not n.endswith(C.ROUTE_FILE_SUFFIX) for n in temporaries), (where, temporaries)
        assert len(temporaries) <= 1, (where, temporaries)  # the next locked command clears leftovers
        stats["temporaries left by a kill"] += len(temporaries - previous_temporaries)
        stats["temporaries removed by the next command"] += len(previous_temporaries - temporaries)
        previous_temporaries = temporaries
        assert HAND_TEXT.split(b"\n")[2] in files.get(f"{HAND}{C.ROUTE_FILE_SUFFIX}", b""), \
            (where, "the hand-written lines were lost")

        if rounds % 25 == 0 or killed == kills:
            listed = forkcli.run(["list"])
            assert listed.returncode == 0, (where, listed.err)
            expected = b"All routes:\n" + b"".join(
                b"Peer: " + name[: -len(C.ROUTE_FILE_SUFFIX)].encode() + b"\n" + files[name] + b"\n"
                for name in sorted(files, key=lambda n: tuple(int(x) for x in n.split(".")[:4])))
            assert listed.stdout == (expected if files else b"No routes found\n"), where
            applied = forkcli.run(["apply", "--netns", netns.name])
            assert applied.returncode == 0, (where, applied.out, applied.err)
            assert netns.tagged_set() == wanted_kernel(files), where
            left = {n for n in os.listdir(store) if n.startswith(C.TEMP_FILE_PREFIX)}
            assert left == set(), (where, left)
            stats["temporaries removed by the next command"] += len(previous_temporaries)
            previous_temporaries = set()
            assert route_files(store) == files, where

    # The lock, and nothing else: the destination index is a cache, kept out of the store (issue 28).
    assert sorted(n for n in os.listdir(store) if not n.endswith(C.ROUTE_FILE_SUFFIX)) == [C.LOCK_FILE_NAME]
    assert stats["left before"] > 0 and stats["left after"] > 0, stats
    print(f"crash: seed {seed}; {killed} SIGKILLs in {rounds} commands (" + ", ".join(f"{v} {k}" for k, v in
          stats.items()) + "); median add " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timing.items()))
