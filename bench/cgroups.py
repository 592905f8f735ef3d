"""A scratch control group for a server and everything it forks: process count and memory peaks,
and a pids limit like systemd's TasksMax.

cgroup v2 (/sys/fs/cgroup a cgroup2 mount, as under systemd on Debian 12): one directory with
the pids and memory controllers. cgroup v1 (a tmpfs with one mount per controller, as in some
containers): one directory under the pids and one under the memory hierarchy. Either way
`directories` are what a process writes its pid into (cgroup.procs) to enter the group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Peaks:
    tasks: int | None  # pids.peak: the most tasks at once (None: the kernel has no pids.peak)
    memory: int | None  # bytes: memory.peak (v2) or memory.max_usage_in_bytes (v1)
    refused_forks: int  # pids.events max: forks refused by pids.max


def fs_type(path: Path) -> str:
    """The file system type of the mount holding `path`, from /proc/self/mountinfo."""
    target = str(path.resolve())
    best, kind = "", ""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            point = left.split()[4]
            if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind = point, right.split()[0]
    return kind


class CgroupError(RuntimeError):
    """No control group with the pids and memory controllers can be made here."""


class Group:
    """A new control group; remove() after its processes ended."""

    def __init__(self, name: str):
        try:
            self._make(name)
        except OSError as exc:
            raise CgroupError(f"cannot make a control group with pids and memory under {ROOT}: {exc}") from None

    def _make(self, name: str) -> None:
        self.version = 2 if fs_type(ROOT) == "cgroup2" else 1
        if self.version == 2:
            controllers = (ROOT / "cgroup.controllers").read_text().split()
            if "pids" not in controllers or "memory" not in controllers:
                raise OSError(f"{ROOT} is cgroup2 without the pids and memory controllers")
            enabled = (ROOT / "cgroup.subtree_control").read_text().split()
            missing = [f"+{c}" for c in ("pids", "memory") if c not in enabled]
            if missing:
                (ROOT / "cgroup.subtree_control").write_text(" ".join(missing))
            self.pids = self.memory = ROOT / name
            self.directories = [self.pids]
        else:
            self.pids, self.memory = ROOT / "pids" / name, ROOT / "memory" / name
            if not (ROOT / "pids" / "cgroup.procs").exists() or not (ROOT / "memory" / "cgroup.procs").exists():
                raise OSError(f"{ROOT} has neither cgroup2 nor the v1 pids and memory hierarchies")
            self.directories = [self.pids, self.memory]
        for directory in self.directories:
            directory.mkdir()

    @property
    def what(self) -> str:
        return (f"cgroup v2 ({self.pids})" if self.version == 2
                else f"cgroup v1 (pids {self.pids}, memory {self.memory})")

    def limit_tasks(self, count: int) -> None:
        (self.pids / "pids.max").write_text(f"{count}\n")

    def procs(self) -> list[int]:
        return [int(x) for x in (self.pids / "cgroup.procs").read_text().split()]

    def peaks(self) -> Peaks:
        tasks = _number(self.pids / "pids.peak")
        memory = _number(self.memory / ("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"))
        refused = 0
        events = self.pids / "pids.events"
        if events.exists():
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max":
                    refused = int(value)
        return Peaks(tasks, memory, refused)

    def remove(self) -> None:
        """Remove the group; what still runs in it after 5 s (a hook's background process) is ended."""
        deadline = time.monotonic() + 30
        for directory in self.directories:
            while directory.exists():
                try:
                    directory.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    if time.monotonic() > deadline - 25:
                        for pid in (directory / "cgroup.procs").read_text().split():
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(int(pid), signal.SIGTERM)
                    time.sleep(0.05)


def _number(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
