"""`apply` against the in-memory kernel: the difference, and only for the scope asked."""

from __future__ import annotations

from support import scenarios as s
from support.scenarios import PEER1, PEER2, PEER3, World

from l2tproute.core.model import parse_peer


def pairs(items) -> list:
    """(peer, line) of route results, (peer, link) of connections."""
    return [(str(item.peer), getattr(item, "line", None) or item.link) for item in items]


def texts(removals) -> list:
    return [item.text for item in removals]


def test_apply_reconciles_and_a_second_apply_changes_nothing(tmp_path):
    w = World.in_memory(tmp_path)
    s.apply_reconciles_then_changes_nothing(w)
    first = w.steps["first"].value
    assert first.ok and len(first.installed) == 4 and first.unchanged == []
    assert w.tagged() == {("10.1.0.0/24", PEER1, "ppp0", "main"), ("10.2.0.0/24", PEER1, "ppp0", "main"),
                          ("10.3.0.0/24", PEER2, "ppp1", "main")}
    assert w.tagged(6) == {("2001:db8:3::/48", None, "ppp1", "main")}
    second = w.steps["second"].value
    assert second.ok and len(second.unchanged) == 4
    assert (second.installed, second.updated, second.removed) == ([], [], [])
    assert w.steps["after_second"] == w.steps["after_first"]


def test_a_stale_tagged_route_is_removed_and_a_foreign_one_kept(tmp_path):
    w = World.in_memory(tmp_path)
    s.stale_tagged_route_removed(w)
    report = w.steps["apply"].value
    assert texts(report.removed) == ["10.50.0.0/24 dev ppp0"]
    assert w.tagged() == {("10.1.0.0/24", PEER1, "ppp0", "main")}
    assert any(r["dst"] == "10.51.0.0/24" and r["protocol"] == "4" for r in w.kernel.routes(4))


def test_apply_peer_leaves_other_links_alone(tmp_path):
    w = World.in_memory(tmp_path)
    s.apply_peer_leaves_other_links(w)
    scoped = w.steps["peer1"].value
    assert pairs(scoped.installed) == [(PEER1, "10.1.0.0/24 via 10.255.10.1")] and scoped.removed == []
    tagged = {(r["dst"], r["dev"]) for r in w.steps["after_peer1"]["routes4"] if r.get("protocol") == "157"}
    assert tagged == {("10.1.0.0/24", "ppp0"), ("10.52.0.0/24", "ppp1")}  # PEER2's link untouched
    everything = w.steps["all"].value
    assert texts(everything.removed) == ["10.52.0.0/24 dev ppp1"]
    assert w.tagged() == {("10.1.0.0/24", PEER1, "ppp0", "main"), ("10.2.0.0/24", PEER2, "ppp1", "main")}


def test_an_offline_peer_is_stored_and_installed_when_it_connects(tmp_path):
    w = World.in_memory(tmp_path)
    s.offline_peer(w)
    assert w.steps["add"].value.link is None and w.steps["add"].value.status == "added"
    for step in ("apply_peer", "apply_all"):
        report = w.steps[step].value
        assert report.ok and report.offline == [parse_peer(PEER3)] and report.installed == []
    assert all(r.get("protocol") != "157" for r in w.steps["while_offline"]["routes4"])
    connected = w.steps["connected"].value
    assert pairs(connected.installed) == [(PEER3, "10.3.0.0/24 via 10.255.10.3")]
    assert w.tagged() == {("10.3.0.0/24", PEER3, "ppp2", "main")}


def test_broken_lines_are_skipped_reported_and_kept_byte_for_byte(tmp_path):
    w = World.in_memory(tmp_path)
    s.broken_lines_skipped(w)
    applied = w.steps["apply"]
    assert applied.value.ok
    assert pairs(applied.value.installed) == [(PEER1, "10.1.0.0/24 via 10.255.10.1"),
                                              (PEER1, "10.3.0.0/24 via 10.255.10.1"),
                                              (PEER1, "10.4.0.0/24 via 10.255.10.1")]
    assert [text.split(": ")[0] for text in applied.warnings] == [
        f"STORE/{PEER1}.routes line {n}" for n in (3, 4, 5, 6)]
    assert w.file(PEER1) == s.BROKEN.replace(b"10.4.0.0/24 via 10.255.10.1\n", b"")
    assert w.tagged() == {("10.1.0.0/24", PEER1, "ppp0", "main"), ("10.3.0.0/24", PEER1, "ppp0", "main")}


def test_a_reused_link_name_carries_the_new_peers_routes_only(tmp_path):
    w = World.in_memory(tmp_path)
    s.link_name_reuse(w)
    assert all(r.get("protocol") != "157" for r in w.steps["reused"]["routes4"])  # gone with the old link
    second = w.steps["second"].value
    assert pairs(second.connected) == [(PEER2, "ppp0")] and second.offline == [parse_peer(PEER1)]
    assert w.tagged() == {("10.2.0.0/24", PEER2, "ppp0", "main")}


def test_kernel_refusals_in_one_batch_come_back_to_their_lines(tmp_path):
    w = World.in_memory(tmp_path)
    s.apply_failures_mapped_back(w)
    report = w.steps["apply"].value
    assert not report.ok
    assert pairs(report.installed) == [(PEER1, "10.60.0.0/24 via 10.255.10.1"), (PEER1, "10.63.0.0/24 via 10.255.10.1")]
    assert [(str(r.peer), r.line, r.detail) for r in report.failed] == [
        (PEER1, "10.61.0.0/24 via 10.9.9.9", "Error: Nexthop has invalid gateway."),
        (PEER1, "10.62.0.0/24 via 10.255.10.1 dev ppp9", 'Cannot find device "ppp9"')]
    assert pairs(report.blocked) == [(PEER1, "10.64.0.0/24 via 10.255.10.1")]
    assert "proto static" in report.blocked[0].detail
    forced = w.steps["forced"].value
    assert pairs(forced.installed) == [(PEER1, "10.64.0.0/24 via 10.255.10.1")] and len(forced.failed) == 2
    assert ("10.64.0.0/24", PEER1, "ppp0", "main") in w.tagged()


def test_routes_in_other_tables_and_metrics_are_reconciled_in_their_own_slot(tmp_path):
    w = World.in_memory(tmp_path)
    s.apply_in_other_tables_and_metrics(w)
    assert len(w.steps["first"].value.installed) == 4
    second = w.steps["second"].value
    assert pairs(second.installed) == [(PEER1, "10.1.0.0/24 via 10.255.10.1 metric 6")] and len(second.unchanged) == 1
    assert sorted(texts(second.removed)) == ["10.1.0.0/24 dev ppp0", "10.1.0.0/24 dev ppp0", "2001:db8:1::/48 dev ppp0"]
    ours = [(r["dst"], r.get("table", "main"), r.get("metric", 0)) for r in w.kernel.routes(4, "proto", "157")]
    assert sorted(ours) == [("10.1.0.0/24", "100", 0), ("10.1.0.0/24", "main", 6)]
    assert w.tagged(6) == set()
    assert {r.state for r in w.steps["status"].value.all_routes()} == {"installed"}


def test_a_peer_on_two_links_is_installed_on_the_first_with_a_warning(tmp_path):
    w = World.in_memory(tmp_path)
    s.same_peer_on_two_links(w)
    applied = w.steps["apply"]
    assert pairs(applied.value.connected) == [(PEER1, "ppp0")]
    assert applied.warnings == ("peer 10.255.10.1 appears on both ppp0 and ppp1; using ppp0",)
    assert w.tagged() == {("10.1.0.0/24", PEER1, "ppp0", "main")}
