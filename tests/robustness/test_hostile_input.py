"""Hostile and broken input (tests/data/hostile_cases.json): one clear line, the right exit
status, no traceback, and nothing changed in the store or in the kernel.

Base state for every case: peer 10.255.10.2 connected on ppp0 with its route installed,
peer 10.255.10.3 offline with a file, a LAN 192.168.50.0/24 on lan0, and foreign routes
(proto static 172.30.0.0/24, proto bird 172.31.0.0/24). A case may add entries to the
store first ("files"), which are removed afterwards.

Every case runs the command code in a forked child (forkcli.py, no interpreter start);
every tenth case, and every case with a `files` entry of kind symlink, also runs through
the installed console script for real. Values holding NUL cannot reach a real argv
(execve refuses them), so they only run in the forked child.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import forkcli
import pytest
from conftest import REPO, Netns, _ip, in_namespace, routectl_path

from l2tproute.core import constants as C
from l2tproute.core.text import is_clean

CASES = json.loads((REPO / "tests" / "data" / "hostile_cases.json").read_text())["cases"]
SECRET_TEXT = "TOPSECRET-a8f3e1"
BASE_FILES = {
    "10.255.10.2.routes": b"192.168.20.0/24 via 10.255.10.2\n",
    "10.255.10.3.routes": b"192.168.30.0/24 via 10.255.10.3\n",
}
ERROR = f"{C.PROG}: error: "
WARNING = f"{C.PROG}: warning: "


class World:
    def __init__(self, root: Path, netns: Netns):
        self.root = root
        self.store = root / "routes.d"
        self.secret = root / "secret"
        self.netns = netns
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SUDO_")}
        self.env[C.STORE_DIR_ENV] = str(self.store)

    def snapshot(self) -> dict:
        """Every entry of the store: kind, mode, owner, bytes or link target."""
        found = {}
        for entry in os.scandir(self.store):
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                what = ("link", os.readlink(entry.path))
            elif stat.S_ISREG(info.st_mode):
                what = ("file", Path(entry.path).read_bytes())
            else:
                what = ("other", stat.S_IFMT(info.st_mode))
            found[entry.name] = (what, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
        found["(secret outside the store)"] = self.secret.read_bytes()
        return found

    def put(self, files: dict) -> None:
        for name, spec in files.items():
            path = self.store / name
            if "hex" in spec:
                path.write_bytes(bytes.fromhex(spec["hex"]))
            elif spec.get("dir"):
                path.mkdir()
                (path / "inside").write_text("10.9.0.0/24 via 10.255.10.9\n")
            elif spec.get("fifo"):
                os.mkfifo(path)
            elif "symlink" in spec:
                path.symlink_to(str(self.secret) if spec["symlink"] == "@secret" else spec["symlink"])
            elif "size" in spec:
                path.write_bytes(b"#" * spec["size"])
            else:
                raise AssertionError(f"unknown store entry {spec}")

    def remove(self, files: dict) -> None:
        for name in files:
            path = self.store / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    name = f"l2t-{os.getpid()}-hostile"
    _ip("netns", "add", name)
    ns = Netns(name)
    try:
        ns.ip("link", "set", "lo", "up")
        ns.add_ppp("ppp0", "10.255.10.2")
        ns.add_lan("lan0", "192.168.50.1/24")
        ns.ip("route", "add", "172.30.0.0/24", "via", "192.168.50.2", "proto", "static")
        ns.ip("route", "add", "172.31.0.0/24", "via", "192.168.50.3", "proto", "bird")
        w = World(root, ns)
        w.store.mkdir()
        w.secret.write_text(SECRET_TEXT + "\n")
        for file_name, data in BASE_FILES.items():
            (w.store / file_name).write_bytes(data)
        applied = forkcli.run(["apply", "--netns", name], env=w.env)
        assert applied.returncode == 0 and applied.stderr == b"", applied
        assert ns.tagged_set() == {("192.168.20.0/24", "10.255.10.2", "ppp0", "main")}
        yield w
    finally:
        _ip("netns", "del", name, check=False)


def argv_for(case: dict, world: World) -> list:
    """The case's argv, told to use the scratch namespace (right after the command, so that
    an option left without its value stays the last word)."""
    argv = list(case["argv"])
    if argv and argv[0] in ("add", "del", "apply", "status") and "--netns" not in argv and case.get("netns", True):
        argv[1:1] = ["--netns", world.netns.name]
    return argv


def check_output(case: dict, code: int, out: str, err: str) -> None:
    assert code == case["exit"], (code, out, err)
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert SECRET_TEXT not in out + err, "another file's content was echoed"
    lines = err.splitlines()
    kind = case.get("stderr", "error")
    if kind == "error":
        assert len(lines) == 1 and lines[0].startswith(ERROR), err
        if case.get("json"):
            doc = json.loads(out)
            assert doc["ok"] is False and doc["exit"] == case["exit"], out
        else:
            assert out == "", out
    elif kind == "warning":
        assert lines and all(line.startswith(WARNING) for line in lines), err
    else:
        assert all(line.startswith(WARNING) for line in lines), err
    for line in lines:
        assert line.isprintable() and len(line) <= 600, line[:700]
    assert is_clean(err), err  # the panel shows a quote or < > & escaped twice
    if not case.get("json") and case["argv"][:1] != ["list"]:  # list prints the files as they are
        assert is_clean(out), out
    text = " ".join(lines).lower()
    for needle in case["says"]:
        assert needle.lower() in text, (needle, err)
    if kind == "error":
        # What would be right: an example, a hint, a `did you mean`, or where to look.
        assert re.search(r"expected|did you mean|like |see: |use |remove|must|give it once|refusing|"
                         r"already routed|larger than|install|namespace|write it|give |check |goes ", text), err


def runs_for_real(index: int, case: dict) -> bool:
    if any("\x00" in arg for arg in case["argv"]):
        return False
    return index % 10 == 0 or any("symlink" in spec for spec in case.get("files", {}).values())


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["name"] for c in CASES])
def test_hostile_input_gives_one_clear_line_and_changes_nothing(world, index):
    case = CASES[index]
    files = case.get("files", {})
    world.put(files)
    try:
        store_before, kernel_before = world.snapshot(), world.netns.snapshot()
        argv = argv_for(case, world)
        result = forkcli.run(argv, env=world.env)
        check_output(case, result.returncode, result.out, result.err)
        assert world.snapshot() == store_before, "the store changed"
        assert world.netns.snapshot() == kernel_before, "the kernel changed"
        if runs_for_real(index, case):
            proc = subprocess.run(in_namespace([routectl_path(), *argv], world.netns), capture_output=True, text=True,
                                  env=world.env, timeout=120)
            check_output(case, proc.returncode, proc.stdout, proc.stderr)
            assert (proc.returncode, proc.stdout, proc.stderr) == (result.returncode, result.out, result.err)
            assert world.snapshot() == store_before and world.netns.snapshot() == kernel_before
    finally:
        world.remove(files)


def test_the_corpus_is_large_and_covers_every_kind_of_input():
    assert len(CASES) >= 150
    names = " ".join(c["name"] for c in CASES)
    for kind in ("leading zero", "ipv6", "host bits", "prefix 33", "space", "newline", "NUL", "semicolon", "dotdot",
                 "absolute path", "overlong", "arabic-indic", "twice", "unknown option", "without value", "CRLF",
                 "garbage", "directory", "symlink", "fifo", "odd name"):
        assert kind in names, kind
    assert len({c["name"] for c in CASES}) == len(CASES), "case names must be unique"
