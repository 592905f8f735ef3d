"""The panel's limits, run on this checkout's console script with the variables sudo sets
for the panel (SUDO_USER=www-data, SUDO_UID=33) on the scratch server of panelworld.py.

tests/robustness/test_privilege.py proves the same through the real sudo and the installed command;
this file proves the code of this checkout, whatever is installed. Root, and an
administrator through their own sudo, keep every option.
"""

from __future__ import annotations

import pytest
from conftest import routectl_path
from panelworld import REFUSED, SETTINGS, A, check_refused, refused_argv, tagged, walk_the_panels_calls, world

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
AS_PANEL = ["SUDO_USER=www-data", "SUDO_UID=33", "SUDO_GID=33"]
AS_ADMIN = ["SUDO_USER=alice", "SUDO_UID=1000", "SUDO_GID=1000"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with world(tmp_path_factory.mktemp("limits"), "limits") as w:
        yield w


def routectl(w, who: list[str], *args: str):
    return w.run("env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", *who, routectl_path(), *args)


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_the_panel_is_refused_and_nothing_changes(server, case):
    _, args, words = case
    before = server.state()
    check_refused(server, routectl(server, AS_PANEL, *refused_argv(server, args)), words, before)


def test_the_panel_is_known_by_its_uid_alone_and_a_forged_user_name_does_not_help(server):
    before = server.state()
    for who in (["SUDO_UID=33"], ["SUDO_USER=alice", "SUDO_UID=33"], ["SUDO_USER=www-data", "SUDO_UID=1000"]):
        proc = routectl(server, who, "add", "--peer", A, "--dst", "0.0.0.0/1", "--force")
        check_refused(server, proc, "--force is not allowed", before)


def test_the_panels_own_calls_still_work(server):
    walk_the_panels_calls(server, lambda *args: routectl(server, AS_PANEL, *args))


@pytest.mark.parametrize("who", [[], AS_ADMIN], ids=["root", "admin-through-sudo"])
def test_root_and_administrators_keep_force_and_netns(server, who):
    before = server.state()
    proc = routectl(server, who, "add", "--peer", A, "--dst", "0.0.0.0/1", "--force")
    assert proc.returncode == 0, proc
    assert ("0.0.0.0/1", A, "ppp0", "main") in tagged(server.server)
    proc = routectl(server, who, "add", "--peer", A, "--dst", "10.9.0.0/24", "--table", "100", "--netns",
                    server.other.name)
    assert proc.returncode == 0, proc
    assert tagged(server.other) == {("10.9.0.0/24", A, "ppp0", "100")}
    for args in (["del", "--peer", A, "--dst", "all", "--netns", server.other.name],
                 ["apply", "--force"]):
        assert routectl(server, who, *args).returncode == 0
    assert server.state() == before


def test_the_settings_file_decides_who_the_panel_is_and_its_minimum_prefix(server):
    before = server.state()
    try:
        server.settings("panel_users = apache\n")  # www-data is then an ordinary sudo user: --force is its
        proc = routectl(server, AS_PANEL, "add", "--peer", A, "--dst", "0.0.0.0/1", "--force")
        assert proc.returncode == 0, proc
        assert ("0.0.0.0/1", A, "ppp0", "main") in tagged(server.server)
        assert (server.store / f"{A}.routes").read_text() == f"0.0.0.0/1 via {A}\n"
        assert routectl(server, AS_PANEL, "del", "--peer", A, "--dst", "0.0.0.0/1").returncode == 0
        assert server.state() == before
        server.settings("panel_users = www-data\nmin_prefix = 20\n")
        check_refused(server, routectl(server, AS_PANEL, "add", "--peer", A, "--dst", "10.9.0.0/16"),
                      "shorter than /20", before)
        server.settings("panel_users = www-data\nmin_prefix = 1\n")  # the resolvers still hold a /7 back
        check_refused(server, routectl(server, AS_PANEL, "add", "--peer", A, "--dst", "8.0.0.0/7"),
                      "9.9.9.9, a name server", before)
        check_refused(server, routectl(server, AS_PANEL, "add", "--peer", A, "--dst", "0.0.0.0/0"),
                      "default route", before)
    finally:
        server.settings(SETTINGS)


@pytest.mark.parametrize("who", [AS_PANEL, AS_ADMIN], ids=["panel", "admin"])
def test_a_broken_settings_file_is_one_line_and_changes_nothing(server, who):
    before = server.state()
    try:
        server.settings("panel_users = www-data\nmin_prefix = eight\n")
        proc = routectl(server, who, "add", "--peer", A, "--dst", "10.9.0.0/24")
        check_refused(server, proc, "l2tproute.conf line 2: min_prefix must be a prefix length", before)
    finally:
        server.settings(SETTINGS)
