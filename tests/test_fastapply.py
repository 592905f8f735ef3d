"""The lean `apply` answers exactly as the full CLI: same stdout, stderr, exit status and kernel state.

Every case starts from the same kernel state (our routes flushed, one stale tagged route
put back) and runs once through `l2tproute.cli.run` (typer) and once through
`l2tproute.fastapply.run_fast`, with fd-level capture. Cases the lean path must answer
are checked to be answered by it (not None); the others must be declined before
anything is printed, read or changed.
"""

from __future__ import annotations

import sys

import pytest

from l2tproute import cli, engine, entry, fastapply
from l2tproute import constants as C

PEER_UP = "10.255.10.1"
PEER_UP2 = "10.255.10.11"
PEER_DOWN = "10.255.10.2"
PEER_NOFILE = "10.255.10.3"
STALE = "198.18.0.0/24"

FILES = {
    PEER_UP: b"192.168.20.0/24 via 10.255.10.1\n10.1.0.0/16 via 10.255.10.1 dev ppp0\n",
    # An odd line (a warning) and a route to a link that does not exist (a kernel failure, exit 1).
    PEER_UP2: b"# office\r\n10.2.0.0/16 via 10.255.10.11\ngarbage\n10.3.0.0/16 via 10.255.10.11 dev ppp9\n",
    PEER_DOWN: b"10.4.0.0/16 via 10.255.10.2\n",
}


@pytest.fixture
def world(netns, store_dir):
    netns.add_ppp("ppp0", PEER_UP)
    netns.add_ppp("ppp1", PEER_UP2)
    for peer, data in FILES.items():
        (store_dir / f"{peer}{C.ROUTE_FILE_SUFFIX}").write_bytes(data)

    def reset():
        netns.ip("route", "flush", "proto", str(C.RT_PROTO))
        netns.ip("route", "add", STALE, "dev", "ppp0", "proto", str(C.RT_PROTO))

    return netns, reset


def _outcome(run, argv, capfd):
    capfd.readouterr()
    try:
        code = run(argv)
    except SystemExit as exc:
        code = exc.code
    sys.stdout.flush()
    sys.stderr.flush()
    out, err = capfd.readouterr()
    return code, out, err


def _both(world, argv, capfd):
    ns, reset = world
    reset()
    full = _outcome(cli.run, argv, capfd)
    full_state = ns.snapshot()
    reset()
    fast = _outcome(fastapply.run_fast, argv, capfd)
    return full, full_state, fast, ns.snapshot()


def _fast_cases(ns):
    return [
        ["apply", "--netns", ns],
        ["apply", f"--netns={ns}"],
        ["apply", "--netns", ns, "--peer", PEER_UP],
        ["apply", "--peer", PEER_UP2, "--netns", ns],
        ["apply", "--netns", ns, f"--peer={PEER_DOWN}"],
        ["apply", f"--peer={PEER_NOFILE}", f"--netns={ns}"],
        ["apply", "--netns", "l2t-no-such-namespace-here"],  # ip fails: the error line, exit 1
    ]


def _declined_cases(ns):
    return [
        ["apply", "--netns", ns, "--json"],
        ["apply", "--dry-run", "--netns", ns],
        ["apply", "--force", "--netns", ns],
        ["apply", "--netns", ns, "--peer", "010.255.10.1"],
        ["apply", "--netns", ns, "--peer", "10.255.10.0/24"],
        ["apply", "--netns", ns, "--peer", "127.0.0.1"],
        ["apply", "--netns", ns, "--peer="],
        ["apply", "--netns", ns, "--peer"],
        ["apply", "--netns", ns, "--netns", ns],
        ["apply", "--netns", "bad name!"],
        ["apply", "--netns", ns, "--user", "alice"],
        ["apply", "--netns", ns, "--help"],
        ["apply", "--netns", ns, "extra"],
        ["apply", "--netns", ns, "--peer", "--netns"],
        ["apply", "--netns", ns, "--pe", PEER_UP],
        ["Apply", "--netns", ns],
        ["--netns", ns, "apply"],
    ]


def test_lean_apply_prints_and_installs_exactly_what_the_full_cli_does(world, capfd):
    ns, _ = world
    for argv in _fast_cases(ns.name):
        full, full_state, fast, fast_state = _both(world, argv, capfd)
        assert fast[0] is not None, f"the lean path declined {argv}"
        assert fast == full, argv
        assert fast_state == full_state, argv
    # The cases really differ from each other (installs, a warning, a failure, offline, an ip
    # error), but for the two spellings of the same `--netns`.
    outcomes = {tuple(_both(world, argv, capfd)[2]) for argv in _fast_cases(ns.name)}
    assert len(outcomes) == len(_fast_cases(ns.name)) - 1
    full, _, _, _ = _both(world, ["apply", "--netns", ns.name], capfd)
    assert full[0] == 1 and "Removed stale route: 198.18.0.0/24 dev ppp0" in full[1]
    assert "line 3: not understood" in full[2] and "dev ppp9" in full[2]


def test_everything_else_is_left_to_the_full_cli_untouched(world, capfd):
    ns, reset = world
    for argv in _declined_cases(ns.name):
        reset()
        before = ns.snapshot()
        assert _outcome(fastapply.run_fast, argv, capfd) == (None, "", ""), argv
        assert ns.snapshot() == before, argv
        # And through the console entry point the full CLI answers as it always did.
        reset()
        full = _outcome(cli.run, argv, capfd)
        reset()
        assert _outcome(entry.run, argv, capfd) == full, argv


def test_a_completion_request_or_no_stdout_goes_to_the_full_cli(world, capfd, monkeypatch):
    ns, _ = world
    monkeypatch.setenv("_L2TP_ROUTECTL_COMPLETE", "bash_complete")
    assert _outcome(fastapply.run_fast, ["apply", "--netns", ns.name], capfd) == (None, "", "")
    monkeypatch.delenv("_L2TP_ROUTECTL_COMPLETE")
    monkeypatch.setattr(sys, "stdout", None)
    assert fastapply.run_fast(["apply", "--netns", ns.name]) is None


def test_the_timer_line_without_netns_is_taken_by_the_lean_path():
    # Parsed only: running it would change this host's own routing table.
    assert fastapply._options(["apply"]) == {}
    assert fastapply._options(["apply", "--peer", PEER_UP]) == {"--peer": PEER_UP}


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), EOFError(), BrokenPipeError(32, "Broken pipe"),
                                    OSError(5, "Input/output error"), RuntimeError("boom\nsecond line"),
                                    ValueError("odd")])
def test_an_interrupt_or_a_crash_ends_as_in_the_full_cli(world, capfd, monkeypatch, raised):
    ns, reset = world
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # click swaps it after a broken pipe
    monkeypatch.setattr(sys, "stderr", sys.stderr)

    def explode(ctx, peer=None):
        raise raised

    monkeypatch.setattr(engine, "apply", explode)
    argv = ["apply", "--netns", ns.name]
    full = _outcome(cli.run, argv, capfd)
    fast = _outcome(fastapply.run_fast, argv, capfd)
    assert fast == full
    assert fast[0] != 0
