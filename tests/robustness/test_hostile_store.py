"""Odd things in the store that once gave a traceback-like "internal error" or blocked other users.

Each test runs the installed command against a scratch store and a scratch namespace.
"""

from __future__ import annotations

import os

import pytest
from conftest import run_routectl

from l2tproute.core import constants as C

PEER = "10.255.10.2"
OTHER = "10.255.10.3"
ERROR = f"{C.PROG}: error: "


@pytest.fixture
def clean_env(monkeypatch):
    # Under sudo the tool ignores L2TP_ROUTES_DIR; these tests must never reach the real store.
    for name in ("SUDO_UID", "SUDO_USER", "SUDO_GID", "SUDO_COMMAND"):
        monkeypatch.delenv(name, raising=False)


def one_error_line(proc) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_a_lock_file_that_is_not_a_file_is_a_clear_error_and_is_never_followed(tmp_path, store_dir, netns, clean_env,
                                                                                kind):
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET\n")
    lock = store_dir / C.LOCK_FILE_NAME
    if kind == "symlink":
        lock.symlink_to(secret)
    else:
        lock.mkdir()
    proc = run_routectl("add", "--peer", PEER, "--dst", "10.9.0.0/24", ns=netns)
    assert proc.returncode == C.EXIT_FAILURE
    line = one_error_line(proc)
    assert "cannot take the store lock" in line and str(lock) in line
    assert "TOPSECRET" not in proc.stdout + proc.stderr
    assert secret.read_text() == "TOPSECRET\n"
    assert sorted(os.listdir(store_dir)) == [C.LOCK_FILE_NAME]
    assert netns.tagged() == []


def test_another_peers_unreadable_file_does_not_block_add(store_dir, netns, clean_env):
    # A regular file too big to be a route file: its own peer's commands fail, nobody else's.
    (store_dir / f"{OTHER}{C.ROUTE_FILE_SUFFIX}").write_bytes(b"#" * (C.MAX_ROUTE_FILE_BYTES + 1))
    netns.add_ppp("ppp0", PEER)
    proc = run_routectl("add", "--peer", PEER, "--dst", "10.9.0.0/24", ns=netns)
    assert proc.returncode == 0, proc.stderr
    warnings = proc.stderr.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"{C.PROG}: warning: ") and OTHER in warnings[0]
    assert (store_dir / f"{PEER}{C.ROUTE_FILE_SUFFIX}").read_bytes() == f"10.9.0.0/24 via {PEER}\n".encode()
    assert netns.tagged_set() == {("10.9.0.0/24", PEER, "ppp0", "main")}
    proc = run_routectl("add", "--peer", OTHER, "--dst", "10.8.0.0/24", ns=netns)
    assert proc.returncode == C.EXIT_FAILURE and "larger than" in one_error_line(proc)


def test_an_overlong_unknown_option_gives_a_short_message(store_dir, clean_env):
    proc = run_routectl("add", "--" + "x" * 100_000)
    assert proc.returncode == C.EXIT_USAGE
    line = one_error_line(proc)
    assert "No such option" in line and len(line) < 500
