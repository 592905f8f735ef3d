"""The panel path: php-cli as www-data, `sudo /usr/local/sbin/l2tp-routectl 'ARGS' 2>&1`.

This needs the real installation (`sudo ./install-l2tp-per-user-routing.sh`; .ci/run
does it before the tests): the installed command, the installed sudoers entry and
sudo itself are what is tested. Each panel call runs in a private mount namespace
whose /etc/l2tp-manager (store and settings), /run/l2tproute, chap-secrets and resolv.conf
are this test's scratch copies (support.scratchroot; sudo ignores L2TP_ROUTES_DIR and the
others), inside the test's network namespace (so the routes go there, not to this machine).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import REPO
from support.scratchroot import ScratchRoot

from l2tproute.core import constants as C

PANEL = REPO / "contrib/panel/l2tp-routes-panel.php"
COMMAND = Path("/usr/local/sbin/l2tp-routectl")
SUDOERS = Path("/etc/sudoers.d/l2tp-routectl")
MARKER = "# Installed by install-l2tp-per-user-routing.sh (l2tproute)"
PEER1, PEER11 = "10.255.10.1", "10.255.10.11"



def require_installation() -> None:
    missing = []
    if not COMMAND.is_file() or MARKER not in COMMAND.read_text(errors="replace"):
        missing.append(f"{COMMAND} (installed by the installer)")
    if not SUDOERS.is_file() or SUDOERS.read_bytes() != (REPO / "contrib/sudoers/l2tp-routectl").read_bytes():
        missing.append(f"{SUDOERS} (as in contrib/sudoers)")
    if not Path(C.DEFAULT_STORE_DIR).is_dir():
        missing.append(C.DEFAULT_STORE_DIR)
    if shutil.which("php") is None:
        missing.append("php (apt-get install php-cli)")
    if missing:
        pytest.fail("the panel test drives the installed system, and this is missing: " + ", ".join(missing)
                    + "; run `sudo ./install-l2tp-per-user-routing.sh` first (.ci/run does)", pytrace=False)


class Panel:
    def __init__(self, ns, scratch: ScratchRoot):
        self.ns = ns
        self.scratch = scratch
        self.store = scratch.store

    def __call__(self, action: str, *values: str) -> dict:
        argv = self.scratch.wrap(["ip", "netns", "exec", self.ns.name, "runuser", "-u", "www-data", "--", "php",
                                  str(PANEL), action, *values])
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert result.stderr == "", result
        answer = json.loads(result.stdout)
        assert answer["user"] == "www-data"
        assert result.returncode == (0 if answer["ok"] else 1)
        return answer

    def file(self, peer: str) -> bytes:
        path = self.store / f"{peer}{C.ROUTE_FILE_SUFFIX}"
        info = path.stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (C.ROUTE_FILE_MODE, 0, 0)
        return path.read_bytes()

    def has_file(self, peer: str) -> bool:
        return (self.store / f"{peer}{C.ROUTE_FILE_SUFFIX}").exists()


@pytest.fixture
def panel(netns, tmp_path):
    require_installation()
    netns.add_ppp("ppp1", PEER1)
    netns.add_ppp("ppp11", PEER11)
    return Panel(netns, ScratchRoot(tmp_path / "scratch", "panel_users = www-data\n"))


def statuses(answer: dict) -> list:
    return [(call["args"][0], call["status"]) for call in answer["calls"]]


def test_the_panel_walks_add_apply_list_del_and_delete_user(panel, netns):
    first = panel("routes", PEER1)
    assert (first["routes"], statuses(first)) == ([], [("list", 0)])
    assert first["calls"][0]["output"] == f"No routes found for peer: {PEER1}"
    assert first["calls"][0]["command"] == \
        f"sudo /usr/local/sbin/l2tp-routectl 'list' '--peer' '{PEER1}' 2>&1"

    added = panel("add", PEER1, "192.168.50.0/24")
    assert statuses(added) == [("add", 0), ("apply", 0)], added
    assert panel.file(PEER1) == f"192.168.50.0/24 via {PEER1}\n".encode()
    assert netns.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main")}

    added = panel("add", PEER1, "10.9.0.0/16", PEER1, "ppp1")
    assert statuses(added) == [("add", 0), ("apply", 0)], added
    assert panel("add", PEER11, "192.168.111.0/24")["ok"]
    assert panel.file(PEER1) == f"192.168.50.0/24 via {PEER1}\n10.9.0.0/16 via {PEER1} dev ppp1\n".encode()
    both = {("192.168.50.0/24", PEER1, "ppp1", "main"), ("10.9.0.0/16", PEER1, "ppp1", "main"),
            ("192.168.111.0/24", PEER11, "ppp11", "main")}
    assert netns.tagged_set() == both

    again = panel("add", PEER1, "192.168.50.0/24")  # the same line twice: nothing changes, success
    assert statuses(again) == [("add", 0), ("apply", 0)]
    assert panel.file(PEER1).count(b"192.168.50.0/24") == 1

    seen = panel("routes", PEER1)  # the 10.255.10.11 user's routes never show up here
    assert seen["routes"] == [f"192.168.50.0/24 via {PEER1}", f"10.9.0.0/16 via {PEER1} dev ppp1"]
    assert panel("routes", PEER11)["routes"] == [f"192.168.111.0/24 via {PEER11}"]

    listing = panel("list")
    assert listing["calls"][0]["output"] == (
        f"All routes:\nPeer: {PEER1}\n192.168.50.0/24 via {PEER1}\n10.9.0.0/16 via {PEER1} dev ppp1\n\n"
        f"Peer: {PEER11}\n192.168.111.0/24 via {PEER11}\n")  # each peer ends with an empty line

    netns.ip("route", "del", "192.168.111.0/24", "proto", str(C.RT_PROTO))  # lost, e.g. by a reconnect race
    applied = panel("apply")
    assert statuses(applied) == [("apply", 0)]
    assert netns.tagged_set() == both

    removed = panel("del", PEER1, "192.168.50.0/24")
    assert statuses(removed) == [("del", 0)]
    assert panel.file(PEER1) == f"10.9.0.0/16 via {PEER1} dev ppp1\n".encode()
    assert netns.tagged_set() == both - {("192.168.50.0/24", PEER1, "ppp1", "main")}

    gone = panel("delete-user", PEER1)
    assert statuses(gone) == [("del", 0)]
    assert not panel.has_file(PEER1)
    assert netns.tagged_set() == {("192.168.111.0/24", PEER11, "ppp11", "main")}
    assert panel.file(PEER11) == f"192.168.111.0/24 via {PEER11}\n".encode()
    last = panel("routes", PEER1)
    assert (last["routes"], statuses(last)) == ([], [("list", 0)])


def test_a_refused_add_is_a_failure_with_its_reason_and_no_apply(panel, netns):
    assert panel("add", PEER1, "192.168.50.0/24")["ok"]
    before = (panel.file(PEER1), netns.snapshot())
    refused = panel("add", PEER1, "192.168.1.5/24")
    assert statuses(refused) == [("add", C.EXIT_USAGE)]  # no apply after a failed add
    assert "did you mean 192.168.1.0/24?" in refused["calls"][0]["output"]
    assert (panel.file(PEER1), netns.snapshot()) == before


def test_a_value_with_quotes_and_shell_syntax_stays_one_argument(panel, netns, tmp_path):
    witness = Path("/tmp") / f"l2tproute-panel-{os.getpid()}"
    hostile = f"10.0.0.0/8'; touch {witness}; echo '"
    refused = panel("add", PEER1, hostile)
    assert statuses(refused) == [("add", C.EXIT_USAGE)]
    assert refused["calls"][0]["command"].startswith(
        f"sudo /usr/local/sbin/l2tp-routectl 'add' '--peer' '{PEER1}' '--dst' '10.0.0.0/8'\\''; touch ")
    assert not witness.exists()
    assert not panel.has_file(PEER1) and netns.tagged_set() == set()


def test_the_panel_deletes_the_old_tools_lines_and_its_adopted_route_after_an_upgrade(panel, netns):
    """A server upgraded in the field: the old tool stored a line with host bits and one with a
    multicast gateway, and put its own untagged route in the kernel for a third line."""
    old_file = (f"192.168.1.5/24 via {PEER1}\n10.30.0.0/16 via 224.0.0.5\n10.40.0.0/16 via {PEER1}\n"
                f"10.0.0.0/24 via {PEER1}\n")
    path = panel.store / f"{PEER1}{C.ROUTE_FILE_SUFFIX}"
    path.write_text(old_file)
    path.chmod(C.ROUTE_FILE_MODE)
    netns.ip("route", "add", "10.40.0.0/16", "via", PEER1, "dev", "ppp1")  # as the old tool did: proto boot
    assert panel("routes", PEER1)["routes"] == old_file.splitlines()  # the panel offers each line for deletion

    applied = panel("apply", PEER1)  # the timer does the same within a minute of the upgrade
    assert statuses(applied) == [("apply", 0)], applied
    assert "Adopted route for peer 10.255.10.1: 10.40.0.0/16 via 10.255.10.1" in applied["calls"][0]["output"]
    assert netns.tagged_set() == {("10.40.0.0/16", PEER1, "ppp1", "main"), ("10.0.0.0/24", PEER1, "ppp1", "main")}

    for dst, line in (("192.168.1.5/24", f"192.168.1.5/24 via {PEER1}"), ("10.30.0.0/16", "10.30.0.0/16 via 224.0.0.5"),
                      ("10.40.0.0/16", f"10.40.0.0/16 via {PEER1}")):
        removed = panel("del", PEER1, dst)
        assert statuses(removed) == [("del", 0)], removed
        output = removed["calls"][0]["output"]
        assert output.splitlines()[0] == f"Deleted route: {line}", output
        assert not any(ch in output for ch in "'\"<>&"), output  # the panel escapes these twice
        assert line.encode() not in panel.file(PEER1)
    assert panel.file(PEER1) == f"10.0.0.0/24 via {PEER1}\n".encode()
    assert panel("routes", PEER1)["routes"] == [f"10.0.0.0/24 via {PEER1}"]
    assert [r for r in netns.routes(4) if r["dst"] == "10.40.0.0/16"] == []  # gone from the kernel too
    assert netns.tagged_set() == {("10.0.0.0/24", PEER1, "ppp1", "main")}
