"""`status` against the in-memory kernel: each state a stored route can be in."""

from __future__ import annotations

from support import scenarios as s
from support.scenarios import PEER1, PEER3, World


def states(report) -> dict:
    return {(str(p.peer), r.route): r.state for p in report.peers for r in p.routes}


def test_status_reports_installed_wanted_missing_blocked_and_extra(tmp_path):
    w = World.in_memory(tmp_path)
    s.status_reports_drift(w)
    clean = w.steps["clean"].value
    assert states(clean) == {
        (PEER1, "10.20.0.0/24 via 10.255.10.1"): "installed",
        (PEER1, "10.21.0.0/24 via 10.255.10.1"): "installed",
        (PEER1, "10.22.0.0/24 via 10.255.10.1"): "blocked",
        (PEER1, "10.23.0.0/24 via 10.255.10.1"): "blocked",
        (PEER3, "10.90.0.0/24 via 10.255.10.3"): "wanted",
    }
    drift = w.steps["drift"].value
    assert drift.drift and not any(r.state in ("missing", "extra") for r in clean.all_routes())
    assert states(drift)[(PEER1, "10.21.0.0/24 via 10.255.10.1")] == "missing"
    assert states(drift)[(PEER1, "10.99.0.0/16 dev ppp0")] == "extra"
    details = {r.route: r.detail for r in drift.all_routes()}
    assert "proto static route via 10.255.10.1 dev ppp0" in details["10.22.0.0/24 via 10.255.10.1"]
    assert "blackhole" in details["10.23.0.0/24 via 10.255.10.1"]
    scoped = w.steps["peer"].value
    assert states(scoped) == {(PEER3, "10.90.0.0/24 via 10.255.10.3"): "wanted"} and not scoped.drift
