"""The command line: the old tool's texts and exit codes, through typer's runner and the console script."""

import json
import os
import subprocess

import pytest
from conftest import routectl_argv, routectl_env
from typer.testing import CliRunner

from l2tproute.fronts.cli import app


def test_typer_runner_add_then_list_peer(store_dir, netns):
    runner = CliRunner()
    result = runner.invoke(app, ["add", "--peer", "10.255.10.1", "--dst", "192.168.20.0/24", "--dry-run",
                                 "--netns", netns.name])
    assert result.exit_code == 0, result.output
    assert "Added route: 192.168.20.0/24 via 10.255.10.1" in result.output
    assert not (store_dir / "10.255.10.1.routes").exists()  # dry run wrote nothing
    (store_dir / "10.255.10.1.routes").write_bytes(b"192.168.20.0/24 via 10.255.10.1\n")
    result = runner.invoke(app, ["list", "--peer", "10.255.10.1"])
    assert result.exit_code == 0
    assert result.output == "Routes for peer 10.255.10.1:\n192.168.20.0/24 via 10.255.10.1\n"


def test_list_peer_without_file_says_no_routes_and_exits_0(routectl):
    result = routectl("list", "--peer", "10.255.10.9")
    assert (result.returncode, result.stdout, result.stderr) == (0, "No routes found for peer: 10.255.10.9\n", "")


def test_list_all_prints_the_old_layout(routectl, store_dir):
    assert routectl("list").stdout == "No routes found\n"
    (store_dir / "10.255.10.11.routes").write_bytes(b"10.2.0.0/16 via 10.255.10.11\n")
    (store_dir / "10.255.10.1.routes").write_bytes(b"10.1.0.0/16 via 10.255.10.1\n")
    result = routectl("list")
    assert result.returncode == 0
    assert result.stdout == ("All routes:\nPeer: 10.255.10.1\n10.1.0.0/16 via 10.255.10.1\n\n"
                             "Peer: 10.255.10.11\n10.2.0.0/16 via 10.255.10.11\n\n")


def test_list_prints_a_hand_edited_file_as_it_is_and_only_list_all_warns(routectl, store_dir):
    data = b"# office\r\n10.1.0.0/16 via 10.255.10.1\r\ngarbage\n"
    (store_dir / "10.255.10.1.routes").write_bytes(data)
    result = routectl("list", "--peer", "10.255.10.1", text=False)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"Routes for peer 10.255.10.1:\n" + data
    every = routectl("list", text=False)
    assert every.returncode == 0 and every.stdout == b"All routes:\nPeer: 10.255.10.1\n" + data + b"\n"
    assert every.stderr.count(b"warning") == 2
    assert all(line.startswith(b"l2tp-routectl: warning:") for line in every.stderr.splitlines())


def test_add_writes_the_old_format_and_a_repeat_changes_nothing(routectl, store_dir, netns):
    netns.add_ppp("ppp1", "10.255.10.1")
    first = routectl("add", "--peer", "10.255.10.1", "--dst", "192.168.20.0/24", ns=netns)
    assert first.returncode == 0 and first.stdout.startswith("Added route: 192.168.20.0/24 via 10.255.10.1\n")
    path = store_dir / "10.255.10.1.routes"
    assert netns.tagged_set() == {("192.168.20.0/24", "10.255.10.1", "ppp1", "main")}
    before = (path.stat().st_ino, path.stat().st_mtime_ns, netns.snapshot())
    again = routectl("add", "--peer", "10.255.10.1", "--dst", "192.168.20.0/24", ns=netns)
    assert again.returncode == 0 and again.stdout.startswith("Route already exists: 192.168.20.0/24 via 10.255.10.1")
    assert path.read_bytes() == b"192.168.20.0/24 via 10.255.10.1\n"
    assert (path.stat().st_ino, path.stat().st_mtime_ns, netns.snapshot()) == before  # not even rewritten


def test_add_for_a_known_destination_with_another_gateway_updates_the_line_in_place(routectl, store_dir, netns):
    path = store_dir / "10.255.10.1.routes"
    path.write_bytes(b"# keep me\r\n10.1.0.0/16 via 10.255.10.1\n10.2.0.0/16 via 10.255.10.1\n")
    result = routectl("add", "--peer", "10.255.10.1", "--dst", "10.1.0.0/16", "--dev", "ppp7", ns=netns)
    assert result.returncode == 0 and result.stdout.startswith("Updated route: 10.1.0.0/16 via 10.255.10.1 dev ppp7")
    assert path.read_bytes() == b"# keep me\r\n10.1.0.0/16 via 10.255.10.1 dev ppp7\n10.2.0.0/16 via 10.255.10.1\n"


def test_add_appends_after_a_last_line_without_newline(routectl, store_dir, netns):
    path = store_dir / "10.255.10.1.routes"
    path.write_bytes(b"10.1.0.0/16 via 10.255.10.1")
    assert routectl("add", "--peer", "10.255.10.1", "--dst", "10.2.0.0/16", ns=netns).returncode == 0
    assert path.read_bytes() == b"10.1.0.0/16 via 10.255.10.1\n10.2.0.0/16 via 10.255.10.1\n"


def test_same_destination_for_two_peers_is_refused_unless_forced(routectl, store_dir, netns):
    assert routectl("add", "--peer", "10.255.10.1", "--dst", "10.1.0.0/16", ns=netns).returncode == 0
    store = {p.name: p.read_bytes() for p in store_dir.glob("*.routes")}
    kernel = netns.snapshot()
    refused = routectl("add", "--peer", "10.255.10.2", "--dst", "10.1.0.0/16", ns=netns)
    assert refused.returncode == 2
    assert "already routed to peer 10.255.10.1" in refused.stderr and "--force" in refused.stderr
    assert {p.name: p.read_bytes() for p in store_dir.glob("*.routes")} == store and netns.snapshot() == kernel
    forced = routectl("add", "--peer", "10.255.10.2", "--dst", "10.1.0.0/16", "--force", ns=netns)
    assert forced.returncode == 0
    assert (store_dir / "10.255.10.2.routes").read_bytes() == b"10.1.0.0/16 via 10.255.10.2\n"


def test_del_is_exact_and_never_touches_a_longer_prefix(routectl, store_dir, netns):
    path = store_dir / "10.255.10.1.routes"
    path.write_bytes(b"10.0.0.0/24 via 10.255.10.1\n10.0.0.0/2 via 10.255.10.1\n10.0.0.0/8 via 10.255.10.1\n")
    result = routectl("del", "--peer", "10.255.10.1", "--dst", "10.0.0.0/8", ns=netns)
    assert result.returncode == 0 and result.stdout == "Deleted route: 10.0.0.0/8 via 10.255.10.1\n"
    assert path.read_bytes() == b"10.0.0.0/24 via 10.255.10.1\n10.0.0.0/2 via 10.255.10.1\n"
    # The old tool's `del --dst 10.0.0.0/2` matched 10.0.0.0/24 as a prefix of its text; here it
    # removes exactly the line it names (host bits: the old tool stored it) and nothing else.
    removed = routectl("del", "--peer", "10.255.10.1", "--dst", "10.0.0.0/2", ns=netns)
    assert removed.returncode == 0 and removed.stdout == "Deleted route: 10.0.0.0/2 via 10.255.10.1\n", removed
    assert "was not a valid route" in removed.stderr and "did you mean 0.0.0.0/2?" in removed.stderr
    assert path.read_bytes() == b"10.0.0.0/24 via 10.255.10.1\n"
    refused = routectl("del", "--peer", "10.255.10.1", "--dst", "10.0.0.0/2", ns=netns)  # no such line now
    assert refused.returncode == 2 and "did you mean 0.0.0.0/2?" in refused.stderr
    assert path.read_bytes() == b"10.0.0.0/24 via 10.255.10.1\n"


def test_del_of_the_last_route_removes_the_file_and_del_all_is_fine_without_a_file(routectl, store_dir, netns):
    path = store_dir / "10.255.10.1.routes"
    path.write_bytes(b"10.0.0.0/24 via 10.255.10.1\n")
    assert routectl("del", "--peer", "10.255.10.1", "--dst", "10.0.0.0/24", ns=netns).returncode == 0
    assert not path.exists()
    again = routectl("del", "--peer", "10.255.10.1", "--dst", "all", ns=netns)
    assert again.returncode == 0 and again.stdout == "No routes found for peer: 10.255.10.1\n"


def test_del_all_removes_the_file_with_its_comments(routectl, store_dir, netns):
    path = store_dir / "10.255.10.1.routes"
    path.write_bytes(b"# c\n10.0.0.0/24 via 10.255.10.1\r\ngarbage\n10.1.0.0/24 via 10.255.10.1\n")
    result = routectl("del", "--peer", "10.255.10.1", "--dst", "all", ns=netns)
    assert result.returncode == 0 and "Deleted all routes for peer 10.255.10.1" in result.stdout
    assert not path.exists()


def test_del_other_lines_survive_byte_for_byte(routectl, store_dir, netns):
    path = store_dir / "10.255.10.1.routes"
    path.write_bytes(b"# c \r\n\n10.0.0.0/24  via 10.255.10.1 \r\nxx yy\n10.1.0.0/24 via 10.255.10.1")
    assert routectl("del", "--peer", "10.255.10.1", "--dst", "10.1.0.0/24", ns=netns).returncode == 0
    assert path.read_bytes() == b"# c \r\n\n10.0.0.0/24  via 10.255.10.1 \r\nxx yy\n"


@pytest.mark.parametrize("args, expect", [
    (["add", "--peer"], "requires an argument"),
    (["add", "--peer", "10.255.10.1"], "Missing option --dst"),
    (["add", "--peer", "10.255.10.1", "--dst", "192.168.1.5/24"], "did you mean 192.168.1.0/24?"),
    (["add", "--peer", "010.255.10.1", "--dst", "10.0.0.0/8"], "invalid peer"),
    (["add", "--peer", "10.255.10.1", "--dst", "10.0.0.0/8", "--dev", "a/b"], "invalid device"),
    (["add", "--peer", "10.255.10.1", "--dst", "0.0.0.0/0"], "every address"),
    (["add", "--peer", "10.255.10.1", "--peer", "10.255.10.2", "--dst", "10.0.0.0/8"], "more than once"),
    (["del", "--peer", "10.255.10.1", "--dst", "everything"], "invalid destination"),
    (["list", "--peer", "../../etc/passwd"], "invalid peer"),
    (["frobnicate"], "No such command"),
    ([], "no command given"),
])
def test_wrong_arguments_give_one_line_exit_2_and_change_nothing(routectl, store_dir, args, expect):
    result = routectl(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and expect in result.stderr
    assert result.stderr.startswith("l2tp-routectl: error: ")
    assert "Traceback" not in result.stderr
    assert list(store_dir.iterdir()) == []


def test_json_output_is_one_document(routectl, store_dir, netns):
    (store_dir / "10.255.10.1.routes").write_bytes(b"10.0.0.0/24 via 10.255.10.1\n")
    doc = json.loads(routectl("list", "--json").stdout)
    assert doc["ok"] is True and doc["peers"][0]["routes"] == ["10.0.0.0/24 via 10.255.10.1"]
    err = routectl("add", "--peer", "1.2.3", "--dst", "10.0.0.0/8", "--json")
    assert err.returncode == 2 and json.loads(err.stdout)["ok"] is False


def test_dry_run_prints_the_ip_command_and_the_diff_and_changes_nothing(routectl, store_dir, netns):
    netns.add_ppp("ppp0", "10.255.10.1")
    before = netns.snapshot()
    result = routectl("add", "--peer", "10.255.10.1", "--dst", "10.9.0.0/16", "--dry-run", ns=netns)
    assert result.returncode == 0
    assert f"ip -n {netns.name} route add 10.9.0.0/16 via 10.255.10.1 dev ppp0 proto 157" in result.stdout
    assert "+10.9.0.0/16 via 10.255.10.1" in result.stdout
    assert netns.snapshot() == before and list(store_dir.iterdir()) == []


def test_version_and_help_for_every_command(routectl):
    assert routectl("--version").stdout.startswith("l2tp-routectl ")
    for command in ("add", "del", "list", "apply"):
        result = routectl(command, "--help")
        assert result.returncode == 0 and "Example: l2tp-routectl" in result.stdout


@pytest.mark.parametrize("argv", [["apply"], ["apply", "--peer", "10.255.10.1"], ["list"]])
def test_a_reader_that_went_away_gets_exit_1_and_silence_and_the_work_is_done(store_dir, netns, argv):
    """`l2tp-routectl apply | true`: the closed pipe ends the command with status 1, no traceback,
    and what it changed is changed (Debian 11's typer once turned this into a crash)."""
    netns.add_ppp("ppp1", "10.255.10.1")
    (store_dir / "10.255.10.1.routes").write_text("192.168.50.0/24 via 10.255.10.1\n")
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(routectl_argv(*argv, ns=netns), stdout=write, stderr=subprocess.PIPE,
                              env=routectl_env(), timeout=60)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (1, b""), done
    if argv[0] == "apply":
        assert netns.tagged_set() == {("192.168.50.0/24", "10.255.10.1", "ppp1", "main")}
