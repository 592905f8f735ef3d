"""Scratch network namespaces full of pppN sessions, and a route store to match.

Session i is the tun link `ppp{i}` with `LOCAL peer 10.128.x.y`; its routes are /29s
carved out of 100.64.0.0/10 in order, so every route of every peer is distinct and the
raw `ip -batch` baseline can be written without asking the tool anything.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess

from l2tproute.core import constants as C

LOCAL = "10.127.255.254"
_PEER_BASE = (10 << 24) | (128 << 16)
_ROUTE_BASE = (100 << 24) | (64 << 16)


def dotted(value: int) -> str:
    return ".".join(str(value >> shift & 255) for shift in (24, 16, 8, 0))


def peer(index: int) -> str:
    return dotted(_PEER_BASE + index + 1)


def routes(index: int, per_peer: int) -> list[str]:
    """The destinations of session `index`: distinct /29s, never overlapping another peer's."""
    return [f"{dotted(_ROUTE_BASE + (index * per_peer + j) * 8)}/29" for j in range(per_peer)]


def ip(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, check=check)


class Namespace:
    """One scratch namespace; deleted on close (its links and routes go with it)."""

    def __init__(self, tag: str):
        self.name = f"l2tb-{os.getpid()}-{tag}"
        ip("netns", "add", self.name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return ip("-n", self.name, *args, stdin=stdin, check=check)

    def batch(self, lines: list[str]) -> None:
        if lines:
            self.ip("-batch", "-", stdin="\n".join(lines) + "\n")

    def add_sessions(self, indexes) -> None:
        """Bring sessions up with one `ip -batch` (10,000 links take well under a minute)."""
        lines = []
        for i in indexes:
            lines += [f"tuntap add dev ppp{i} mode tun", f"addr add {LOCAL} peer {peer(i)} dev ppp{i}",
                      f"link set ppp{i} up"]
        self.batch(lines)

    def drop_sessions(self, indexes) -> None:
        """Links gone, as when pppd exits: the kernel removes their routes with them."""
        self.batch([f"link del ppp{i}" for i in indexes])

    def tagged(self) -> list[dict]:
        out = self.ip("-4", "-j", "route", "show", "proto", str(C.RT_PROTO)).stdout.strip()
        return json.loads(out) if out else []

    def tagged_set(self) -> set:
        return {(r["dst"], r.get("gateway"), r.get("dev")) for r in self.tagged()}

    def flush_tagged(self) -> None:
        self.ip("route", "flush", "proto", str(C.RT_PROTO))

    def close(self) -> None:
        ip("netns", "del", self.name, check=False)


_CLONE_NEWNS = 0x00020000


def private_mounts() -> None:
    """Gives this process, and all it starts from now on, a mount namespace of its own: the
    tmpfs of run_dir goes with the process however it ends, and the host's mounts never
    change. Call it while the process has one thread (unshare(2) refuses CLONE_NEWNS then)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNS): {os.strerror(errno)}")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)


def run_dir(path: str) -> str:
    """A run directory for the hooks (spool, seq, lock) on a tmpfs of its own, as /run is on
    every server: this machine's /run and /tmp are on ext4, where a storm's hooks, rewriting
    the seq files an earlier measure had left, returned in a median 19 ms against 11 ms on a
    tmpfs (four storms of 2,000 hooks each way). Needs private_mounts() first."""
    os.makedirs(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "l2tb-run", path], check=True)
    _RUN_DIRS.append(path)
    return path


def release_run_dirs() -> None:
    """Unmounts every run_dir, so that the scratch directory holding them can be removed."""
    while _RUN_DIRS:
        subprocess.run(["umount", _RUN_DIRS.pop()], check=False)


_RUN_DIRS: list[str] = []


def expected_routes(indexes, per_peer: int) -> set:
    """What `tagged_set()` shows once every route of these sessions is installed."""
    return {(dst, peer(i), f"ppp{i}") for i in indexes for dst in routes(i, per_peer)}


def store_env(store: str) -> dict[str, str]:
    """The variables that point the tool at a benchmark's store, and at a cache directory of that
    store alone: a server has one store, and the host's /var/cache/l2tproute is not the bench's.
    An `ip` the bench was started with (L2TP_IP_BINARY, e.g. iproute2 4.15's) goes to the hooks
    too, whose environment is otherwise pppd's empty one."""
    env = {C.STORE_DIR_ENV: store, C.CACHE_DIR_ENV: store.rstrip("/") + ".cache"}
    if os.environ.get(C.IP_BINARY_ENV):
        env[C.IP_BINARY_ENV] = os.environ[C.IP_BINARY_ENV]
    return env


def write_store(directory: str, indexes, per_peer: int) -> dict[str, bytes]:
    """One route file per peer, as the old tool wrote them (`DST via PEER`)."""
    os.makedirs(directory, exist_ok=True)
    written = {}
    for i in indexes:
        data = "".join(f"{dst} via {peer(i)}\n" for dst in routes(i, per_peer)).encode()
        path = os.path.join(directory, f"{peer(i)}{C.ROUTE_FILE_SUFFIX}")
        with open(path, "wb") as handle:
            handle.write(data)
        written[path] = data
    return written


def raw_batch(indexes, per_peer: int, verb: str = "replace") -> list[str]:
    """The `ip -batch` lines a reconciling apply cannot avoid: every route, tagged, on its link."""
    return [f"route {verb} {dst} via {peer(i)} dev ppp{i} proto {C.RT_PROTO}"
            for i in indexes for dst in routes(i, per_peer)]
