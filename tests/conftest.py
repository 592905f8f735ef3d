"""Shared fixtures: a real network namespace with tun links named pppN, and the CLI.

Every route-touching test works inside a namespace it creates; this machine's own
routing table is never touched.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from l2tproute import constants as C

REPO = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def _ip(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, check=check)


class Netns:
    """A scratch namespace; pppN links are tun devices with `LOCAL peer PEER`."""

    def __init__(self, name: str):
        self.name = name

    def ip(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        return _ip("-n", self.name, *args, check=check, stdin=stdin)

    def add_ppp(self, ifname: str, peer: str, local: str = "10.254.0.1") -> None:
        self.ip("tuntap", "add", "dev", ifname, "mode", "tun")
        self.ip("addr", "add", local, "peer", peer, "dev", ifname)
        self.ip("link", "set", ifname, "up")

    def add_many_ppp(self, peers: list[str], local: str = "10.254.0.1", first: int = 0) -> None:
        """Bring up many sessions with one `ip -batch` (thousands in a second or two)."""
        lines = []
        for index, peer in enumerate(peers, first):
            lines += [f"tuntap add dev ppp{index} mode tun", f"addr add {local} peer {peer} dev ppp{index}",
                      f"link set ppp{index} up"]
        self.ip("-batch", "-", stdin="\n".join(lines) + "\n")

    def del_link(self, ifname: str) -> None:
        self.ip("link", "del", ifname)

    def add_lan(self, ifname: str, cidr: str) -> None:
        """A non-PPP link of the server (LAN or uplink) with a connected network."""
        self.ip("tuntap", "add", "dev", ifname, "mode", "tun")
        self.ip("addr", "add", cidr, "dev", ifname)
        self.ip("link", "set", ifname, "up")

    def routes(self, family: int = 4, *extra: str) -> list:
        """The kernel table, as `ip -j route` shows it (numeric protocol and table ids)."""
        out = self.ip(f"-{family}", "-j", "-N", "route", "show", "table", "all", *extra).stdout.strip()
        rows = json.loads(out) if out else []
        return [r for r in rows if r.get("table") not in ("255", "local")]

    def tagged(self, family: int = 4) -> list:
        return self.routes(family, "proto", str(C.RT_PROTO))

    def tagged_set(self, family: int = 4) -> set:
        return {(r["dst"], r.get("gateway"), r["dev"], r.get("table", "main")) for r in self.tagged(family)}

    def snapshot(self) -> list:
        """Every route of both families, for 'nothing changed' assertions."""
        return sorted(json.dumps(r, sort_keys=True) for fam in (4, 6) for r in self.routes(fam))


@pytest.fixture
def netns():
    name = f"l2t-{os.getpid()}-{next(_counter)}"
    _ip("netns", "add", name)
    ns = Netns(name)
    ns.ip("link", "set", "lo", "up")
    try:
        yield ns
    finally:
        _ip("netns", "del", name, check=False)


@pytest.fixture
def store_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "routes.d"
    path.mkdir()
    monkeypatch.setenv(C.STORE_DIR_ENV, str(path))
    return path


def routectl_path() -> str:
    # The script pip made for this interpreter, not the first on PATH: after a real install
    # /usr/local/sbin/l2tp-routectl (the copy in /opt) may come first, and pyenv's shim
    # would add a bash start to every call.
    found = Path(sysconfig.get_path("scripts")) / "l2tp-routectl"
    if not found.is_file():
        pytest.fail(f"the console script {found} is not installed (pip install -e .)")
    return str(found)


def run_routectl(*args: str, ns: Netns | None = None, env: dict | None = None,
                 timeout: float = 60, text: bool = True) -> subprocess.CompletedProcess:
    """Run the installed console script, as the panel and the hooks do."""
    argv = [routectl_path(), *args]
    if ns is not None:
        argv += ["--netns", ns.name]
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(argv, capture_output=True, text=text, env=full_env, timeout=timeout)


@pytest.fixture
def routectl(store_dir):
    return run_routectl
