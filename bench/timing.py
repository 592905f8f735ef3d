"""Wall-clock timing of whole commands: medians over runs taken in turn, so load affects all alike."""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Callable


def run_timed(argv: list[str], env: dict | None = None, check: bool = True) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def interleaved(commands: dict[str, list[str]], runs: int, env: dict | None = None) -> dict[str, list[float]]:
    """Each command once per round, `runs` rounds, after one untimed warm-up round."""
    for argv in commands.values():
        run_timed(argv, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(run_timed(argv, env))
    return times


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)
