"""The instruments of bench/openvpn_storm.py, each a thread beside the storm: a ping through the
tunnel, the worker started as l2tproute-worker.path starts it, the processes of a server's
control group, and a /dev/log that keeps what the hooks and the worker said.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass

from cgroups import Group

_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .* icmp_seq=(\d+) .*time=([\d.]+) ms")
_NO_ANSWER = re.compile(r"^\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)")


@dataclass(frozen=True)
class RoundTrips:
    sent: int
    lost: int
    median_ms: float | None
    max_ms: float | None


class Ping:
    """`ping -D -O` every 0.2 s from a namespace; round trips per window of wall-clock time."""

    def __init__(self, netns: str, address: str):
        self.replies: list[tuple[float, int, float]] = []  # (sent at, seq, ms)
        self.unanswered: dict[int, float] = {}
        self._proc = subprocess.Popen(["ip", "netns", "exec", netns, "ping", "-D", "-O", "-n", "-i", "0.2", "-W", "1",
                                       address], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            reply = _REPLY.match(line)
            if reply:
                ms = float(reply.group(3))
                self.replies.append((float(reply.group(1)) - ms / 1000, int(reply.group(2)), ms))
                continue
            lost = _NO_ANSWER.match(line)
            if lost:
                self.unanswered[int(lost.group(2))] = float(lost.group(1)) - 1.0

    def window(self, start: float, end: float) -> RoundTrips:
        """Pings sent between `start` and `end` (time.time()); lost: never answered."""
        answered = {seq for _, seq, _ in self.replies}
        times = [ms for at, _, ms in self.replies if start <= at < end]
        lost = [seq for seq, at in self.unanswered.items() if start <= at < end and seq not in answered]
        return RoundTrips(len(times) + len(lost), len(lost), statistics.median(times) if times else None,
                          max(times) if times else None)

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait()
        self._thread.join()


@dataclass(frozen=True)
class WorkerRuns:
    runs: int
    busy_s: float  # the sum of the runs' wall times
    longest_s: float
    max_rss: int  # bytes, the largest of any run (wait4)


class PathUnit:
    """l2tproute-worker.path, emulated: starts the worker whenever the spool has entries and none
    runs (systemd's DirectoryNotEmpty=, polled every 20 ms here)."""

    def __init__(self, spool: str, argv: list[str], env: dict[str, str]):
        self.spool, self.argv, self.env = spool, argv, env
        self.walls: list[float] = []
        self.max_rss = 0
        self._running: tuple[int, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            if self._running is not None:
                pid, began = self._running
                done, _, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    self.walls.append(time.monotonic() - began)
                    self.max_rss = max(self.max_rss, usage.ru_maxrss * 1024)
                    self._running = None
            if self._running is None:
                if self._stop.is_set():
                    return
                if self._pending():
                    proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    self._running = (proc.pid, time.monotonic())
                    proc.returncode = 0  # reaped above with wait4; keeps Popen from waiting again
            time.sleep(0.02)

    def _pending(self) -> bool:
        try:
            return bool(os.listdir(self.spool))
        except FileNotFoundError:  # the world is gone
            return False

    def idle(self) -> bool:
        return self._running is None and not self._pending()

    def wait_idle(self, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.idle():
                time.sleep(0.1)  # the next poll could still start one
                if self.idle():
                    return True
            time.sleep(0.05)
        return False

    def result(self) -> WorkerRuns:
        walls = list(self.walls)
        return WorkerRuns(len(walls), sum(walls), max(walls, default=0.0), self.max_rss)

    def close(self) -> WorkerRuns:
        self._stop.set()
        self._thread.join()
        return self.result()


@dataclass(frozen=True)
class Forked:
    peak_processes: int  # the most processes in the group at once, the server left out
    peak_pss: int  # bytes: the largest sum of their PSS (shared pages counted once)
    peak_rss: int  # bytes: the largest sum of their RSS


class ForkSampler:
    """The processes a server forked (its control group, the server left out), every 50 ms."""

    def __init__(self, group: Group, server_pid: int):
        self.group, self.server_pid = group, server_pid
        self.peak = Forked(0, 0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = [pid for pid in self.group.procs() if pid != self.server_pid]
            pss = rss = 0
            for pid in pids:
                pss += _smaps_field(pid, b"Pss:")
                rss += _smaps_field(pid, b"Rss:")
            self.peak = Forked(max(self.peak.peak_processes, len(pids)), max(self.peak.peak_pss, pss),
                               max(self.peak.peak_rss, rss))
            self._stop.wait(0.05)

    def close(self) -> Forked:
        self._stop.set()
        self._thread.join()
        return self.peak


def _smaps_field(pid: int, field: bytes) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass  # already gone
    return 0


class SyslogSink:
    """/dev/log of the bench's private mount namespace: every message, kept as text."""

    def __init__(self, path: str):
        self.lines: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(path)
        os.chmod(path, 0o666)  # the hooks run as nobody
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.lines.append(data.decode(errors="replace").rstrip("\n"))

    def mark(self) -> int:
        return len(self.lines)

    def since(self, mark: int) -> list[str]:
        return self.lines[mark:]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
