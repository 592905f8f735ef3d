"""Concurrent writers, a timer and readers on one store lose nothing and tear nothing.

16 writer processes each run 200 random add/del on 20 peers (half of them connected,
so the kernel is changed too) while `apply` (the timer) and `list` (the panel) run in
a loop and a raw reader reads the files directly. Every writer runs the real command
code (`cli.run`) in-process; the only addition is a record, written while the store
lock is held, of which operation took the lock. Replaying those records in order on a
serial model must give every file byte for byte, every exit status, and the kernel.

Run as a script with `worker SPEC_JSON`, this file is one writer process.

Size: L2TP_TEST_CONCURRENCY="WORKERSxOPS" (default 16x100, half the size the hardening
issue asks for). Replay: the seed is printed first; L2TP_TEST_SEED=N runs the same operations.
Lock wait: L2TP_TEST_LOCK_TIMEOUT seconds (default 300) for every command here, writers and
the timer's apply alike, instead of the production 20 s: with 16 writers queued on one lock
on a loaded 2-core machine, a fair wait can pass 20 s, and what this test checks is what
the lock protects, not how long a caller waits (test_hang checks the 20 s and its message).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# -- the serial model -----------------------------------------------------------


@dataclass
class Model:
    """What the store holds after a sequence of add/del, applied one after the other."""

    files: dict[str, list[tuple[str, str, str | None]]] = field(default_factory=dict)

    def add(self, peer: str, dst: str, dev: str | None = None) -> int:
        route = (dst, peer, dev)
        lines = self.files.get(peer, [])
        index = next((i for i, line in enumerate(lines) if line[0] == dst), None)
        if index is not None and lines[index] == route:
            return 0
        for other, other_lines in self.files.items():
            if other != peer and any(line[0] == dst for line in other_lines):
                return 2  # refused: the kernel can route a destination to one user only
        if index is not None:
            lines[index] = route
        else:
            lines.append(route)
        self.files[peer] = lines
        return 0

    def delete(self, peer: str, dst: str) -> int:
        if dst == "all":
            self.files.pop(peer, None)
            return 0
        lines = [line for line in self.files.get(peer, []) if line[0] != dst]
        if lines:
            self.files[peer] = lines
        else:
            self.files.pop(peer, None)
        return 0

    def run(self, op: dict) -> int:
        if op["op"] == "add":
            return self.add(op["peer"], op["dst"], op.get("dev"))
        return self.delete(op["peer"], op["dst"])

    def file_bytes(self, peer: str) -> bytes:
        text = ""
        for dst, gw, dev in self.files[peer]:
            text += f"{dst} via {gw}" + (f" dev {dev}" if dev else "") + "\n"
        return text.encode()

    def store_bytes(self) -> dict[str, bytes]:
        return {f"{peer}.routes": self.file_bytes(peer) for peer in self.files}


# -- the writers ------------------------------------------------------------------


def peers(count: int) -> list[str]:
    return [f"10.255.10.{i}" for i in range(1, count + 1)]


def random_ops(rng: random.Random, count: int, all_peers: list[str], links: dict[str, str],
               destinations: list[str]) -> list[dict]:
    ops = []
    for _ in range(count):
        peer = rng.choice(all_peers)
        roll = rng.random()
        if roll < 0.55:
            dev = None
            if rng.random() < 0.25:  # same kernel route, another file line: an "updated" add
                dev = links.get(peer) or f"l2tp{all_peers.index(peer)}"
            ops.append({"op": "add", "peer": peer, "dst": pick(rng, peer, all_peers, destinations), "dev": dev})
        elif roll < 0.97:
            ops.append({"op": "del", "peer": peer, "dst": pick(rng, peer, all_peers, destinations)})
        else:
            ops.append({"op": "del", "peer": peer, "dst": "all"})
    return ops


def pick(rng: random.Random, peer: str, all_peers: list[str], shared: list[str]) -> str:
    """Half the time a destination every peer asks for (refusals), else one of the peer's own."""
    if rng.random() < 0.5:
        return rng.choice(shared)
    return f"172.17.{all_peers.index(peer)}.{16 * rng.randrange(8)}/28"


def argv_of(op: dict, netns: str) -> list[str]:
    argv = [op["op"], "--peer", op["peer"], "--dst", op["dst"]]
    if op.get("dev"):
        argv += ["--dev", op["dev"]]
    return argv + ["--netns", netns]


def worker_main(spec: dict) -> None:
    """One writer: its operations in order, each through cli.run, recording when it holds the lock."""
    from l2tproute.core import constants as C
    from l2tproute.fronts import cli
    from l2tproute.system import store as store_module

    os.environ[C.STORE_DIR_ENV] = spec["store"]
    log_fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pending: dict[str, bytes | None] = {"record": None}
    original = store_module.Store.locked

    @contextlib.contextmanager
    def recording(self, timeout=None):
        with original(self, spec["lock_timeout"]):
            record = pending["record"]
            pending["record"] = None
            if record is not None:
                os.write(log_fd, record)  # under the lock: the log's order is the lock's order
            yield

    store_module.Store.locked = recording
    results = []
    for seq, op in enumerate(spec["ops"]):
        pending["record"] = (json.dumps({"w": spec["worker"], "s": seq}) + "\n").encode()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.run(argv_of(op, spec["netns"]))
        results.append({"s": seq, "rc": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
    Path(spec["out"]).write_text(json.dumps(results))


# -- the test ---------------------------------------------------------------------


def apply_main(lock_timeout: float, argv: list[str]) -> None:
    """The console script's code (entry.main) with the test's lock timeout."""
    from l2tproute.fronts import entry
    from l2tproute.system import store as store_module

    original = store_module.Store.locked
    store_module.Store.locked = lambda self, timeout=None: original(self, lock_timeout)
    sys.argv = ["l2tp-routectl", *argv]
    entry.main()


def lock_timeout() -> float:
    return float(os.environ.get("L2TP_TEST_LOCK_TIMEOUT", "300"))


def size() -> tuple[int, int]:
    text = os.environ.get("L2TP_TEST_CONCURRENCY", "16x100")
    workers, ops = text.lower().split("x")
    return int(workers), int(ops)


if __name__ != "__main__":

    from conftest import routectl_path

    from l2tproute.core import constants as C
    from l2tproute.core.routefile import ROUTE, parse

    ROUTE_FILE = re.compile(r"^(\d+\.){3}\d+\.routes$")

    def check_route_file(data: bytes) -> str | None:
        """What is wrong with a file as a writer of ours could have left it, or None."""
        if not data or not data.endswith(b"\n"):
            return f"not a whole file: {data[-80:]!r}"
        lines = parse(data)
        if any(line.kind != ROUTE for line in lines):
            return f"a line no writer writes: {data!r}"
        dsts = [line.route.dst for line in lines]
        if len(set(dsts)) != len(dsts):
            return f"a destination twice: {data!r}"
        return None

    class Readers:
        """The panel's `list`, the timer's `apply`, and a raw reader, in loops until stopped."""

        def __init__(self, store: Path, netns: str, env: dict, all_peers: list[str]):
            self.store, self.netns, self.env, self.peers = store, netns, env, all_peers
            self.stop = threading.Event()
            self.problems: list[str] = []
            self.counts = {"raw reads": 0, "list runs": 0, "list --peer runs": 0, "apply runs": 0}
            self.threads = [threading.Thread(target=self._guard, args=(fn,), daemon=True)
                            for fn in (self._raw, self._list, self._apply)]

        def __enter__(self):
            for thread in self.threads:
                thread.start()
            return self

        def __exit__(self, *exc):
            self.stop.set()
            for thread in self.threads:
                thread.join(timeout=120)
                assert not thread.is_alive(), "a reader loop did not stop"

        def _guard(self, fn):
            try:
                fn()
            except Exception as exc:  # surfaces in the test, not as a silent dead thread
                self.problems.append(f"{fn.__name__} crashed: {exc!r}")

        def _raw(self):
            while not self.stop.is_set():
                for name in os.listdir(self.store):
                    if not name.endswith(C.ROUTE_FILE_SUFFIX):
                        continue
                    if not ROUTE_FILE.match(name):
                        self.problems.append(f"raw: a temporary or odd name looks like a route file: {name}")
                        continue
                    try:
                        data = (self.store / name).read_bytes()
                    except FileNotFoundError:
                        continue  # deleted between listdir and open: fine
                    self.counts["raw reads"] += 1
                    problem = check_route_file(data)
                    if problem:
                        self.problems.append(f"raw {name}: {problem}")
                time.sleep(0.005)

        def _run(self, *args: str) -> subprocess.CompletedProcess:
            return subprocess.run([routectl_path(), *args], capture_output=True, env=self.env, timeout=120)

        def _run_locking(self, *args: str) -> subprocess.CompletedProcess:
            """A command that takes the lock: the console script's code with the test's lock timeout."""
            return subprocess.run([sys.executable, __file__, "apply", str(lock_timeout()), *args],
                                  capture_output=True, env=self.env, timeout=lock_timeout() + 120)

        def _list(self):
            rng = random.Random(1)
            while not self.stop.is_set():
                if rng.random() < 0.5:
                    proc = self._run("list")
                    self.counts["list runs"] += 1
                    self._check_list_all(proc)
                else:
                    peer = rng.choice(self.peers)
                    proc = self._run("list", "--peer", peer)
                    self.counts["list --peer runs"] += 1
                    self._check_list_peer(proc, peer)
                self.stop.wait(0.05)  # the panel renders a page now and then, not in a tight loop

        def _check_list_all(self, proc):
            if proc.returncode != 0 or proc.stderr:
                self.problems.append(f"list: exit {proc.returncode}: {proc.stderr!r}")
                return
            if proc.stdout == b"No routes found\n":
                return
            head, _, body = proc.stdout.partition(b"\n")
            if head != b"All routes:":
                self.problems.append(f"list: {proc.stdout[:200]!r}")
                return
            for block in body.split(b"Peer: ")[1:]:
                name, _, data = block.partition(b"\n")
                data = data[:-1] if data.endswith(b"\n\n") else data
                problem = check_route_file(data)
                if problem:
                    self.problems.append(f"list, peer {name!r}: {problem}")

        def _check_list_peer(self, proc, peer):
            if proc.returncode != 0 or proc.stderr:
                self.problems.append(f"list --peer: exit {proc.returncode}: {proc.stderr!r}")
                return
            if proc.stdout == f"No routes found for peer: {peer}\n".encode():
                return
            head = f"Routes for peer {peer}:\n".encode()
            if not proc.stdout.startswith(head):
                self.problems.append(f"list --peer {peer}: {proc.stdout[:200]!r}")
                return
            problem = check_route_file(proc.stdout[len(head):])
            if problem:
                self.problems.append(f"list --peer {peer}: {problem}")

        def _apply(self):
            while not self.stop.is_set():
                proc = self._run_locking("apply", "--netns", self.netns)
                self.counts["apply runs"] += 1
                text = proc.stdout.decode(errors="replace")
                # At every lock release the kernel matches the files: a timer run finds nothing to do.
                if proc.returncode != 0 or proc.stderr or " 0 installed, 0 updated, 0 removed," not in text:
                    self.problems.append(f"apply: exit {proc.returncode}: {text[-300:]!r} {proc.stderr[-300:]!r}")
                self.stop.wait(0.2)

    def test_concurrent_writers_timer_and_readers_lose_nothing(tmp_path, netns, monkeypatch, request):
        workers, per_worker = size()
        seed = int(os.environ.get("L2TP_TEST_SEED", time.time_ns() % 100_000))
        print(f"\nconcurrency: seed {seed} (replay: L2TP_TEST_SEED={seed} "
              f"L2TP_TEST_CONCURRENCY={workers}x{per_worker})", flush=True)
        all_peers = peers(20)
        links = {peer: f"ppp{i}" for i, peer in enumerate(all_peers[:10])}
        netns.add_many_ppp(list(links))
        destinations = [f"172.16.{i}.0/24" for i in range(12)]
        # tmpfs when there is one: what is tested is the locking and the renames, and the
        # writers take the lock in turn, so every fsync on disk would add to the run time.
        shm = Path("/dev/shm")
        scratch = Path(tempfile.mkdtemp(prefix="l2t-concurrency-", dir=shm if shm.is_dir() else tmp_path))
        request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
        store = scratch / "routes.d"
        store.mkdir()
        log = tmp_path / "lock-order.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUDO_")}
        env[C.STORE_DIR_ENV] = str(store)

        specs = []
        for worker in range(workers):
            rng = random.Random(seed * 1000 + worker)
            specs.append({"worker": worker, "store": str(store), "netns": netns.name, "log": str(log),
                          "lock_timeout": lock_timeout(),
                          "out": str(tmp_path / f"worker-{worker}.json"),
                          "ops": random_ops(rng, per_worker, all_peers, links, destinations)})
        started = time.monotonic()
        with Readers(store, netns.name, env, all_peers) as readers:
            procs = [subprocess.Popen([sys.executable, __file__, "worker", json.dumps(spec)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for spec in specs]
            for proc in procs:
                output, _ = proc.communicate(timeout=900)
                assert proc.returncode == 0, output.decode(errors="replace")[-2000:]
        elapsed = time.monotonic() - started

        # Replay in lock order.
        records = [json.loads(line) for line in log.read_text().splitlines()]
        keys = [(r["w"], r["s"]) for r in records]
        assert sorted(keys) == sorted((w, s) for w in range(workers) for s in range(per_worker)), \
            "not every operation took the lock exactly once"
        results = {(spec["worker"], r["s"]): r for spec in specs
                   for r in json.loads(Path(spec["out"]).read_text())}
        model = Model()
        refused = 0
        for key in keys:
            op = specs[key[0]]["ops"][key[1]]
            expected = model.run(op)
            result = results[key]
            assert result["rc"] == expected, (key, op, result)
            if expected == 2:
                refused += 1
                assert result["stderr"].count("\n") == 1 and "already routed to peer" in result["stderr"], result
            else:
                assert result["stderr"] == "", (key, op, result)

        on_disk = {name: (store / name).read_bytes() for name in os.listdir(store) if name.endswith(".routes")}
        assert on_disk == model.store_bytes()
        leftovers = sorted(n for n in os.listdir(store) if not n.endswith(".routes") and n != C.LOCK_FILE_NAME)
        assert leftovers == []

        wanted = {(dst, peer, links[peer], "main") for peer, lines in model.files.items() if peer in links
                  for dst, _gw, _dev in lines}
        assert netns.tagged_set() == wanted  # no final apply needed: every writer kept the kernel in step

        assert readers.problems == [], readers.problems[:5]
        total = workers * per_worker
        adds = sum(1 for spec in specs for op in spec["ops"] if op["op"] == "add")
        print(f"concurrency: seed {seed}; {workers} writers x {per_worker} = {total} operations "
              f"({adds} add, {total - adds} del; {refused} refused as another peer's destination) in "
              f"{elapsed:.1f} s; {len(model.files)} route files, {sum(map(len, model.files.values()))} routes; "
              + ", ".join(f"{v} {k}" for k, v in readers.counts.items()))
        assert min(readers.counts.values()) > 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        worker_main(json.loads(sys.argv[2]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "apply":
        apply_main(float(sys.argv[2]), sys.argv[3:])
    else:
        sys.exit(f"usage: {sys.argv[0]} worker SPEC_JSON | apply LOCK_TIMEOUT ARGV (run by the test)")
