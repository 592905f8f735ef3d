"""The panel's read in sh answers exactly as the Python CLI: same stdout, stderr and exit status.

bin/l2tp-routectl answers `list --peer IP` itself (no Python start: the panel runs it
twice per user row on every page) and hands every other command line, and every case
it is not sure of, to the Python CLI. Each case runs through both, as separate
processes; where the front must answer by itself it is also run with a CLI that
cannot answer (/bin/false), so the comparison is not the Python CLI against itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import routectl_path
from fronts import Fronts
from support.scratchroot import ScratchRoot

from l2tproute.core import constants as C

CLEAN = {
    "10.255.10.1": b"192.168.20.0/24 via 10.255.10.1\n10.1.0.0/16 via 10.255.10.1 dev ppp7\n",
    "10.255.10.11": b"# office\n\n10.2.0.0/16 via 10.255.10.11\n   \t\n  # indented comment\n"
    b"0.0.0.0/0 via 10.255.10.11\n",
    "10.255.10.12": b"",
    "10.255.10.13": b"10.3.0.0/16 via 10.255.10.13\n# last line, a comment without newline",
    "9.255.10.1": b"172.16.0.0/12 via 10.0.0.1 dev eth0.100\n192.0.2.7/32 via 223.255.255.254\n",
}

#: Lines with something to warn about, each alone among clean lines in a file of its own: the fast
#: path must notice every one of them (it prints the file and asks the real parser for the warnings).
ODD_LINES = [
    b"garbage\n",
    b"10.1.0.0/16 via 10.255.11.1\r\n",
    b"\r\r\n",
    b" \r \n",
    b"\r\n\r\n# x\r\n",
    b"10.1.0.0/16  via 10.255.11.1\n",
    b"10.1.0.0/16 via 10.255.11.1 \n",
    b"\t10.1.0.0/16 via 10.255.11.1\n",
    b" 10.1.0.0/16 via 10.255.11.1\n",
    b"10.1.0.0/16\tvia 10.255.11.1\n",
    "# caf\u00e9 \u0661\u0662\n".encode(),
    b"# \xff\n",
    b"192.168.1.5/24 via 10.255.11.1\n",
    b"10.1.0.1/31 via 10.255.11.1\n",
    b"0.0.0.1/0 via 10.255.11.1\n",
    b"010.1.0.0/16 via 10.255.11.1\n",
    b"10.1.0.0/016 via 10.255.11.1\n",
    b"10.1.0.0/33 via 10.255.11.1\n",
    b"10.1.0.0/ via 10.255.11.1\n",
    b"10.1.0.0 via 10.255.11.1\n",
    b"10.1.0.0/16 via 10.255.11.01\n",
    b"10.1.0.0/16 via 224.0.0.1\n",
    b"10.1.0.0/16 via 0.1.2.3\n",
    b"10.1.0.0/16 via 127.0.0.1\n",
    b"10.1.0.0/16 via 240.0.0.1\n",
    b"10.1.0.0/16 via 255.255.255.255\n",
    b"10.1.0.0/16 via 10.255.11.1 metric 10\n",
    b"10.1.0.0/16 via 10.255.11.1 metric 007\n",
    b"10.1.0.0/16 via 10.255.11.1 table 100\n",
    b"2001:db8:100::/48 via 10.255.11.1\n",
    b"10.1.0.0/16 via 10.255.11.1 dev\n",
    b"10.1.0.0/16 via 10.255.11.1 dev ppp1 dev ppp2\n",
    b"10.1.0.0/16 via 10.255.11.1 dev .\n",
    b"10.1.0.0/16 via 10.255.11.1 dev ..\n",
    b"10.1.0.0/16 via 10.255.11.1 dev a_name_too_long_x\n",
    b"10.1.0.0/16 via 10.255.11.1 dev pp#1\n",
    b"10.1.0.0/16 via 10.255.11.1 gw ppp1\n",
    b"10.1.0.0/16 via 10.255.11.1 # a comment\n",
    b"10.1.0.0/16 via 10.255.11.1#x\n",
    b"\x0010.3.0.0/16\n",
    b"10.1.0.0/16 via\n",
    b"10.1.0.0/16 VIA 10.255.11.1\n",
    b"\xef\xbb\xbf10.1.0.0/16 via 10.255.11.1\n",
    "10.1.0.0/16 via \u0661.2.3.4\n".encode(),
    b"10.1.0.0/16 via 10.255.11.1\x0c\n",
    b"\x0b\n",
]
ODD_CONTENT = {
    f"10.255.11.{number}": b"# before\n10.9.0.0/16 via 10.255.11.9\n" + line + b"10.8.0.0/16 via 10.255.11.9\n"
    for number, line in enumerate(ODD_LINES, 1)
}
ODD_CONTENT["10.255.12.1"] = b"10.1.0.0/16 via 10.255.12.1"  # no newline at the end
ODD_CONTENT["10.255.12.2"] = b"10.1.0.0/16 via 10.255.12.2\n  "  # blanks without newline at the end


PEER_ARGS = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "01.2.3.4",
    "1.2.3.256",
    "\u0661.2.3.4",
    "1.2.3.4/32",
    "::1",
    "224.0.0.1",
    "255.255.255.255",
    "127.0.0.1",
    "0.1.2.3",
    "0.0.0.0",
    " 10.255.10.1",
    "10.255.10.1 ",
    "10.255.10.1\n",
    "--json",
    "-h",
    "10.255.10.99",
    "1.1.1.1",
    "10.255.10.1.",
    "1..2.3",
    "x.y.z.w",
    "1.2.3.-4",
    "+1.2.3.4",
    "10.255.10.30",
    "10.255.10.31",
    "10.255.10.32",
    "10.255.10.33",
]
#: The PEER_ARGS the front answers itself: valid addresses without a file in the store, or
#: with a regular one (the oversized 10.255.10.33 too: the CLI lists it as it is).
ANSWERED_PEERS = {"10.255.10.99", "1.1.1.1", "10.255.10.33"}




def _populate(store: Path, files: dict) -> None:
    for peer, data in files.items():
        (store / f"{peer}.routes").write_bytes(data)


@pytest.fixture
def mixed_store(store_dir: Path) -> Path:
    """Clean files, odd files, and entries that are not route files at all."""
    _populate(store_dir, CLEAN)
    _populate(store_dir, ODD_CONTENT)
    (store_dir / "10.255.10.30.routes").symlink_to(store_dir / "10.255.10.1.routes")
    (store_dir / "10.255.10.31.routes").mkdir()
    os.mkfifo(store_dir / "10.255.10.32.routes")
    (store_dir / "10.255.10.33.routes").write_bytes(b"#" * (C.MAX_ROUTE_FILE_BYTES + 1))
    return store_dir


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    return Fronts(tmp_path_factory.mktemp("fronts"))


@pytest.fixture(scope="module")
def front_alone(tmp_path_factory):
    """The front with a CLI that cannot answer: what it prints, it printed itself."""
    directory = tmp_path_factory.mktemp("alone")
    front = Fronts(directory).routectl
    text = front.read_text().replace(f"CLI={routectl_path()}", "CLI=/bin/false")
    alone = directory / "l2tp-routectl-alone"
    alone.write_text(text)
    alone.chmod(0o755)
    return alone


@pytest.fixture(scope="module")
def front_shell_only(front_alone):
    """front_alone without its sed: what it prints, the shell read and printed itself."""
    sed = "LC_ALL=C exec sed -e '$a\\' -- \"$regular\""
    text = front_alone.read_text()
    assert text.count(sed) == 1
    shell_only = front_alone.with_name("l2tp-routectl-shell-only")
    shell_only.write_text(text.replace(sed, "exec /bin/false"))
    shell_only.chmod(0o755)
    return shell_only


def shell_vouches_for(data: bytes) -> bool:
    """What the front prints by the shell alone: no NUL (sh drops it), at most 64 KiB."""
    return b"\0" not in data and len(data) <= 65536


@pytest.fixture(scope="module")
def front_echo(tmp_path_factory):
    """The front with a CLI that prints the arguments it got, each in brackets, and exits 3:
    what the front hands over, and that it hands it over unchanged."""
    directory = tmp_path_factory.mktemp("echo")
    cli = directory / "echo-cli"
    cli.write_text("#!/bin/sh\nfor arg do printf '[%s]' \"$arg\"; done\nexit 3\n")
    cli.chmod(0o755)
    front = Fronts(directory).routectl
    echo = directory / "l2tp-routectl-echo"
    echo.write_text(front.read_text().replace(f"CLI={routectl_path()}", f"CLI={cli}"))
    echo.chmod(0o755)
    return echo


def handed_over(front_echo, argv, env=None) -> bool:
    found = outcome(front_echo, argv, env)
    return found == (3, "".join(f"[{a}]" for a in argv).encode(), b"")


def outcome(program, argv, env=None):
    result = subprocess.run([str(program), *argv], capture_output=True, timeout=60, env={**os.environ, **(env or {})})
    return result.returncode, result.stdout, result.stderr


def same(fronts, argv, env=None):
    python = outcome(routectl_path(), argv, env)
    assert outcome(fronts.routectl, argv, env) == python, argv
    return python


def answered_alone(front_alone, argv, env=None):
    return outcome(front_alone, argv, env)


def every_peer(store: Path) -> list:
    return sorted(p.name[: -len(".routes")] for p in store.iterdir())


def test_list_peer_of_every_file_in_the_store_is_answered_by_the_front_as_the_cli_does(fronts, front_alone,
                                                                                      front_shell_only, mixed_store):
    odd = {"10.255.10.30", "10.255.10.31", "10.255.10.32"}  # a symlink, a directory, a fifo
    for index, peer in enumerate(every_peer(mixed_store)):
        # The `--peer=` spelling on every fourth file and the odd ones: each comparison starts Python once.
        forms = [["list", "--peer", peer]] + ([["list", f"--peer={peer}"]] if index % 4 == 0 or peer in odd else [])
        for argv in forms:
            python = same(fronts, argv)
            if peer in odd:
                assert python[0] != 0 and python[2].startswith(b"l2tp-routectl: error:"), (argv, python)
                assert answered_alone(front_alone, argv)[0] != 0, argv
            else:
                assert python[0] == 0 and python[2] == b"", (argv, python)
                assert python[1].startswith(f"Routes for peer {peer}:\n".encode()), argv
                assert answered_alone(front_alone, argv) == python, argv
                # Printed by the shell itself where it can vouch for every byte; by sed otherwise.
                shell = answered_alone(front_shell_only, argv)
                if shell_vouches_for((mixed_store / f"{peer}.routes").read_bytes()):
                    assert shell == python, argv
                else:
                    assert shell == (1, f"Routes for peer {peer}:\n".encode(), b""), argv


def test_a_peer_without_a_file_is_answered_by_the_front(fronts, front_alone, mixed_store):
    argv = ["list", "--peer", "10.255.10.99"]
    python = same(fronts, argv)
    assert python == (0, b"No routes found for peer: 10.255.10.99\n", b"")
    assert answered_alone(front_alone, argv) == python


@pytest.mark.parametrize("peer", PEER_ARGS, ids=repr)
def test_list_peer_with_any_peer_argument_matches_the_cli(front_alone, front_echo, mixed_store, peer):
    """A peer the front is sure of (a valid address without a file) it answers as the CLI does;
    every other argument it hands over, unchanged."""
    argv = ["list", "--peer", peer]
    if peer in ANSWERED_PEERS:
        assert answered_alone(front_alone, argv) == outcome(routectl_path(), argv)
    else:
        assert handed_over(front_echo, argv), outcome(front_echo, argv)


ARGV_SHAPES = [
    [],
    ["list"],
    ["LIST"],
    ["list", "--json"],
    ["list", "--help"],
    ["list", "-h"],
    ["--help"],
    ["--version"],
    ["list", "--peer"],
    ["list", "--peer="],
    ["list", "--peer", "10.255.10.1", "--json"],
    ["list", "--json", "--peer", "10.255.10.1"],
    ["list", "--peer", "10.255.10.1", "--peer", "10.255.10.1"],
    ["list", "--peer=10.255.10.1", "--peer=10.255.10.11"],
    ["list", "--peer", "10.255.10.1", "--dry-run"],
    ["list", "--netns", "nope"],
    ["list", "extra"],
    ["list", "--PEER", "10.255.10.1"],
    ["list", "--peer", "10.255.10.1", "--"],
    ["list", "--", "--peer", "10.255.10.1"],
    ["list", "--pee", "10.255.10.1"],
    ["list", "-p", "10.255.10.1"],
    ["list", "--peer", "10.255.10.1", "extra"],
    ["status", "--peer", "10.255.10.1", "--bad"],
    ["add", "--peer"],
    ["del"],
    ["status", "--help"],
    ["list", "--json", "--json"],
    ["list", "--peer", "--json"],
]



@pytest.mark.parametrize("argv", ARGV_SHAPES, ids=lambda a: " ".join(a) or "(none)")
def test_every_other_command_line_is_handed_to_the_cli_unchanged(front_echo, mixed_store, argv):
    assert handed_over(front_echo, argv), outcome(front_echo, argv)


#: A file of the scratch root's store, unlike the mixed store's file of the same peer.
SUDO_FILE = b"10.77.0.0/16 via 10.255.10.1\n"
AS_PANEL = {"SUDO_USER": "www-data", "SUDO_UID": "33"}


@pytest.fixture
def root(tmp_path) -> ScratchRoot:
    """Scratch copies of /etc/l2tp-manager (one route file, settings as the installer writes
    them) and the other paths sudo forces, for commands run through ScratchRoot.wrap."""
    scratch = ScratchRoot(tmp_path / "root", "panel_users = www-data\nmin_prefix = 8\nmin_prefix6 = 32\n")
    (scratch.store / "10.255.10.1.routes").write_bytes(SUDO_FILE)
    return scratch


def under_sudo(root: ScratchRoot, program, argv) -> tuple:
    result = subprocess.run(root.wrap([str(program), *argv]), capture_output=True, timeout=60,
                            env={**os.environ, **AS_PANEL})
    return result.returncode, result.stdout, result.stderr


def test_under_sudo_the_environment_cannot_move_the_store(fronts, front_alone, mixed_store, root):
    """Both read /etc/l2tp-manager/routes.d under sudo, whatever L2TP_ROUTES_DIR (the mixed store) says."""
    argv = ["list", "--peer", "10.255.10.1"]
    assert outcome(fronts.routectl, argv)[1] == b"Routes for peer 10.255.10.1:\n" + CLEAN["10.255.10.1"]
    wanted = (0, b"Routes for peer 10.255.10.1:\n" + SUDO_FILE, b"")
    assert under_sudo(root, routectl_path(), argv) == wanted
    assert under_sudo(root, front_alone, argv) == wanted  # answered by the front itself


#: Settings files the Python CLI refuses under sudo (policy.load_config): the front must not answer.
BAD_SETTINGS = {
    "garbage": lambda path: path.write_text("garbage\n"),
    "unknown key": lambda path: path.write_text("max_prefix = 8\n"),
    "key twice": lambda path: path.write_text("min_prefix = 8\nmin_prefix = 9\n"),
    "prefix 0": lambda path: path.write_text("min_prefix = 0\n"),
    "prefix6 129": lambda path: path.write_text("min_prefix6 = 129\n"),
    "prefix of 4 digits": lambda path: path.write_text("min_prefix = 0008\n"),
    "bad user": lambda path: path.write_text("panel_users = www-data, 9lives\n"),
    "no user": lambda path: path.write_text("panel_users = ,\n"),
    "only empty names": lambda path: path.write_text("panel_users = , ,,\t,\n"),
    "a name too long": lambda path: path.write_text("panel_users = " + "a" * 33 + "\n"),
    "a name to glob": lambda path: path.write_text("panel_users = *\n"),
    "no final newline": lambda path: path.write_text("min_prefix = 8\nmin_prefix6 = 0"),
    "not ascii": lambda path: path.write_bytes("panel_users = www-dätä\n".encode()),
    "too big": lambda path: path.write_text("#" * 70000 + "\n"),
    "group-writable": lambda path: os.chmod(path, 0o664),
    "world-writable": lambda path: os.chmod(path, 0o646),
    "owned by www-data": lambda path: os.chown(path, 33, 33),
    "a symlink": lambda path: (path.rename(path.with_name("real.conf")), path.symlink_to("real.conf")),
    "a directory": lambda path: (path.unlink(), path.mkdir()),
    "a fifo": lambda path: (path.unlink(), os.mkfifo(path)),
}
GOOD_SETTINGS = {
    "the defaults": "panel_users = www-data\nmin_prefix = 8\nmin_prefix6 = 32\n",
    "comments and spaces": "# x\n\n   \t\n  panel_users=www-data ,apache,\t nginx  \n min_prefix6 = 128\n",
    "prefix 010": "min_prefix = 010\n",
    "empty names between commas": "panel_users = ,www-data,,apache,\n",
    "no final newline": "min_prefix = 8\nmin_prefix6 = 64",
    "none": None,
}


@pytest.mark.parametrize("breakage", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_under_sudo_a_settings_file_the_cli_refuses_is_left_to_the_cli(fronts, front_alone, root, breakage):
    breakage(root.etc / "l2tproute.conf")
    argv = ["list", "--peer", "10.255.10.1"]
    python = under_sudo(root, routectl_path(), argv)
    assert python[0] == 2 and python[2].startswith(b"l2tp-routectl: error: ") and python[1] == b"", python
    assert under_sudo(root, fronts.routectl, argv) == python
    assert under_sudo(root, front_alone, argv) == (1, b"", b"")  # handed over: /bin/false answered
    # A peer without a file as well: no "No routes found" before the settings are vouched for.
    assert under_sudo(root, front_alone, ["list", "--peer", "10.255.10.99"]) == (1, b"", b"")


@pytest.mark.parametrize("text", GOOD_SETTINGS.values(), ids=GOOD_SETTINGS.keys())
def test_under_sudo_settings_the_cli_takes_let_the_front_answer(front_alone, front_shell_only, root, text):
    path = root.etc / "l2tproute.conf"
    if text is None:
        path.unlink()
    else:
        root.settings(text)
    argv = ["list", "--peer", "10.255.10.1"]
    python = under_sudo(root, routectl_path(), argv)
    assert python == (0, b"Routes for peer 10.255.10.1:\n" + SUDO_FILE, b"")
    assert under_sudo(root, front_alone, argv) == python
    assert under_sudo(root, front_shell_only, argv) == python  # the shell read both files itself
    assert under_sudo(root, front_alone, ["list", "--peer", "10.255.10.99"]) == \
        (0, b"No routes found for peer: 10.255.10.99\n", b"")


#: Settings the CLI takes but the front does not vouch for (it checks bytes a shell reads
#: alike everywhere): handed over, so the answer is still the CLI's.
UNVOUCHED_SETTINGS = {
    "a NUL in a comment": b"# a\x00b\nmin_prefix = 8\n",
    "CR LF line ends": b"panel_users = www-data\r\nmin_prefix = 8\r\n",
    "a form feed": b"min_prefix = 8\x0c\n",
}


@pytest.mark.parametrize("data", UNVOUCHED_SETTINGS.values(), ids=UNVOUCHED_SETTINGS.keys())
def test_under_sudo_settings_the_front_cannot_vouch_for_are_answered_by_the_cli(fronts, front_alone, root, data):
    path = root.etc / "l2tproute.conf"
    path.write_bytes(data)
    argv = ["list", "--peer", "10.255.10.1"]
    python = under_sudo(root, routectl_path(), argv)
    assert python == (0, b"Routes for peer 10.255.10.1:\n" + SUDO_FILE, b"")
    assert under_sudo(root, fronts.routectl, argv) == python
    assert under_sudo(root, front_alone, argv) == (1, b"", b"")  # handed over: /bin/false answered


def test_a_missing_store_and_a_completion_request_are_left_to_the_cli(fronts, front_alone, store_dir, tmp_path):
    missing = {C.STORE_DIR_ENV: str(tmp_path / "nowhere")}
    assert same(fronts, ["list", "--peer", "10.255.10.1"], env=missing)[:2] == \
        (0, b"No routes found for peer: 10.255.10.1\n")
    assert answered_alone(front_alone, ["list", "--peer", "10.255.10.1"], env=missing)[0] != 0
    completing = {"_L2TP_ROUTECTL_COMPLETE": "bash_complete", "COMP_WORDS": "l2tp-routectl li", "COMP_CWORD": "1"}
    same(fronts, ["list", "--peer", "10.255.10.1"], env=completing)
    assert answered_alone(front_alone, ["list", "--peer", "10.255.10.1"], env=completing)[0] != 0
