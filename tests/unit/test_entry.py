"""Which command lines the console entry answers without loading typer: the timer's and the
panel's `apply`. Everything else, and every doubt, goes to the full CLI (which words any error)."""

from __future__ import annotations

import pytest

from l2tproute.fronts.entry import lean_apply


@pytest.mark.parametrize("argv, expected", [
    (["apply"], (None, None)),
    (["apply", "--peer", "10.255.10.2"], ("10.255.10.2", None)),
    (["apply", "--peer=10.255.10.2"], ("10.255.10.2", None)),
    (["apply", "--netns", "ns1"], (None, "ns1")),
    (["apply", "--netns=ns1", "--peer", "10.255.10.2"], ("10.255.10.2", "ns1")),
])
def test_the_timers_and_the_panels_apply_lines_are_answered_lean(argv, expected):
    assert lean_apply(argv) == expected


@pytest.mark.parametrize("argv", [
    [], ["list"], ["add", "--peer", "10.255.10.2"], ["apply", "--force"], ["apply", "--json"],
    ["apply", "--dry-run"], ["apply", "--peer"], ["apply", "--peer="], ["apply", "--peer", "--json"],
    ["apply", "--peer", "10.255.10.2", "--peer", "10.255.10.3"], ["apply", "--user", "alice"],
    ["apply", "extra"], ["apply", "--help"], ["APPLY"], ["apply", "--", "--peer", "10.255.10.2"],
])
def test_everything_else_goes_to_the_full_cli(argv):
    assert lean_apply(argv) is None


def test_a_completion_request_goes_to_the_full_cli(monkeypatch):
    monkeypatch.setenv("_L2TP_ROUTECTL_COMPLETE", "bash_complete")
    assert lean_apply(["apply"]) is None
