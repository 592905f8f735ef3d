"""The benchmarks run at their quick size, so they never rot.

No timing is asserted here (speed is judged by bench/run.py's own table, on demand).
What is asserted: the command finishes with status 0, which it gives only when the
tool did its job in every measure (every route installed, ip monitor silent in steady
state, no file changed by the storm and every route present after it), and the table
has every measure with a sane, non-zero figure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

MEASURES = [
    "panel: sudo l2tp-routectl list --peer X",
    "panel page:",
    "reference: the same list --peer without a settings file",
    "reference: sudo python3 -IS -c pass",
    "apply-all from empty:",
    "reference: per-route `ip route add` loop",
    "steady-state apply",
    "ip-up hook returns to pppd",
    "ip-up hook: 1 peer",
    "reconnect storm:",
    "storm: a hook returns",
    "storm memory:",
    "flap storm:",
    "apply-all 1000 routes vs 200",
    "per user: add, 200 vs 10 sessions",
    "per user: del, 200 vs 10 sessions",
    "per user: apply --peer, 200 vs 10 sessions",
    "per user: status --peer, 200 vs 10 sessions",
    "per user: lock held by add,",
    "per user: lock held by del,",
]
_FIGURE = re.compile(r"(\d+(?:\.\d+)?) (ms|s|MiB)\b")


def _table(stdout: str) -> dict:
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] not in ("measure", "---"):
            rows[cells[0]] = cells[1:]
    return rows


def _row(rows: dict, prefix: str) -> list:
    found = [cells for measure, cells in rows.items() if measure.startswith(prefix)]
    assert len(found) == 1, f"no single row for {prefix!r} in {sorted(rows)}"
    return found[0]


def test_the_quick_benchmark_runs_every_measure_and_prints_sane_figures():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--size", "quick", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _table(done.stdout)
    assert len(rows) == len(MEASURES), done.stdout
    for prefix in MEASURES:
        ours, baseline, ratio, target, verdict = _row(rows, prefix)
        figure = _FIGURE.search(ours)
        assert figure and float(figure.group(1)) > 0, (prefix, ours)
        if ratio != "-":
            assert float(ratio.rstrip("x")) > 0, (prefix, ratio)
            base = _FIGURE.search(baseline)
            assert base and float(base.group(1)) > 0, (prefix, baseline)
        assert verdict in (("-",) if target in ("-", "reported") else ("pass", "FAIL")), (prefix, verdict)
    steady = _row(rows, "steady-state apply")
    assert steady[1] == "ip monitor route: 0 lines"  # the real check: nothing written when nothing changed
    # Correctness is the exit status (a missing route, a stale one, a changed file end the run with 1);
    # the rows say what was checked.
    assert re.fullmatch(r"\d+ routes present, 0 files changed", _row(rows, "reconnect storm:")[1])
    assert _row(rows, "flap storm:")[4] == "pass"
    assert "Reproduce: python3 bench/run.py --size quick" in done.stdout
