"""`del` against the in-memory kernel: exactly the destination asked for."""

from __future__ import annotations

from support import scenarios as s
from support.scenarios import PEER1, World


def test_del_removes_exactly_that_prefix_never_a_longer_one(tmp_path):
    w = World.in_memory(tmp_path)
    s.del_is_exact(w)
    gone = w.steps["del_16"].value
    assert gone.removed == ["10.0.0.0/16 via 10.255.10.1"]
    assert gone.kernel_removed == ["10.0.0.0/16 dev ppp0"] and gone.kernel_errors == []
    assert w.file(PEER1) == b"10.0.0.0/24 via 10.255.10.1\n10.0.0.0/8 via 10.255.10.1\n"
    assert w.tagged() == {("10.0.0.0/24", PEER1, "ppp0", "main"), ("10.0.0.0/8", PEER1, "ppp0", "main")}
    absent = w.steps["del_absent"].value
    assert absent.removed == [] and absent.kernel_removed == []


def test_del_of_a_route_already_gone_from_the_kernel_still_removes_the_line(tmp_path):
    w = World.in_memory(tmp_path)
    s.del_of_a_route_gone_from_the_kernel(w)
    result = w.steps["del"].value
    assert result.removed == ["10.7.0.0/24 via 10.255.10.1"] and result.kernel_errors == []
    assert w.file(PEER1) is None  # the last line went, so did the file
    nothing = w.steps["del_all_without_file"]
    assert nothing.ok and nothing.value.had_file is False


def test_del_all_takes_every_line_of_that_peer_and_its_file_only(tmp_path):
    w = World.in_memory(tmp_path)
    s.del_all_takes_every_route_and_the_file(w)
    result = w.steps["del_all"].value
    assert result.removed == ["10.1.0.0/24 via 10.255.10.1", "not a route", "10.2.0.0/24 via 10.255.10.1 metric 5"]
    assert result.kernel_removed == ["10.1.0.0/24 dev ppp0", "10.2.0.0/24 dev ppp0"]
    assert w.file(PEER1) is None
    assert w.tagged() == {("10.3.0.0/24", "10.255.10.2", "ppp1", "main")}
