"""A server for the panel's limits, and every request the panel may not make on it.

    Internet: name servers 9.9.9.9 and 1.1.1.1 (the scratch resolv.conf)
        |  default via 100.64.0.1 dev up0 onlink
      up0 198.51.100.2/24
    [ server ] -- lan0 192.0.2.1/24 -- 203.0.113.0/24 via 192.0.2.254 (proto static, management)
      ppp0 10.254.0.1 peer 10.255.99.2   user A, for whom the panel asks
      ppp1 10.254.0.1 peer 10.255.99.3   user B, 172.16.5.0/24 stored and installed (proto 157)

    and a second namespace (another server, or the host) with A on its ppp0.

Commands run in a private mount namespace in which /etc/l2tp-manager (route store and
settings), /run/l2tproute, chap-secrets and /etc/resolv.conf are this world's scratch copies
(support.scratchroot), inside the server's network namespace (`ip netns exec`, as the
panel's own process would be), so neither the real store, the real settings, the real run
directory nor this machine's routes are read or changed.
tests/netns/test_panel_limits.py runs the checkout's console script here with sudo's
variables; tests/robustness/test_privilege.py runs the installed command through sudo as www-data.
"""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import Netns, _ip
from support.scratchroot import ScratchRoot

from l2tproute.core import constants as C

A, B = "10.255.99.2", "10.255.99.3"
B_NET = "172.16.5.0/24"
RESOLVERS = ("9.9.9.9", "1.1.1.1")
PANEL_UID = 33  # www-data on Debian
SETTINGS = "# scratch settings of tests/panelworld.py\npanel_users = www-data\nmin_prefix = 8\n"

class World:
    def __init__(self, root: Path, server: Netns, other: Netns):
        self.root = root
        self.server = server
        self.other = other
        self.scratch = ScratchRoot(root, SETTINGS, RESOLVERS)
        self.etc = self.scratch.etc
        self.store = self.scratch.store
        self.resolv = self.scratch.resolv

    def settings(self, text: str) -> None:
        self.scratch.settings(text)

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """argv run as root in this world: in the server's namespace with the scratch /etc and /run files."""
        full = self.scratch.wrap(["ip", "netns", "exec", self.server.name, *argv])
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout)

    def files(self) -> dict:
        return {p.name: p.read_bytes() for p in sorted(self.store.iterdir()) if p.name.endswith(C.ROUTE_FILE_SUFFIX)}

    def state(self) -> tuple:
        """Both namespaces' routes and the store's route files: what a refusal must leave alone."""
        return self.server.snapshot(), self.other.snapshot(), self.files()


def require_bind_targets() -> None:
    missing = [p for p in ("/etc/l2tp-manager", "/etc/resolv.conf") if not os.path.exists(p)]
    if missing:
        pytest.fail(f"the panel world binds its scratch copies over {', '.join(missing)}, which do not exist; "
                    "install first (sudo ./install-l2tp-per-user-routing.sh creates /etc/l2tp-manager)",
                    pytrace=False)


@contextmanager
def world(root: Path, tag: str):
    require_bind_targets()
    names = [f"l2t-{os.getpid()}-{tag}", f"l2t-{os.getpid()}-{tag}-x"]
    for name in names:
        _ip("netns", "add", name)
    server, other = Netns(names[0]), Netns(names[1])
    try:
        for ns in (server, other):
            ns.ip("link", "set", "lo", "up")
        server.add_lan("up0", "198.51.100.2/24")
        server.ip("route", "add", "default", "via", "100.64.0.1", "dev", "up0", "onlink")
        server.add_lan("lan0", "192.0.2.1/24")
        server.ip("route", "add", "203.0.113.0/24", "via", "192.0.2.254", "dev", "lan0", "proto", "static")
        server.add_ppp("ppp0", A)
        server.add_ppp("ppp1", B)
        server.ip("route", "add", B_NET, "via", B, "dev", "ppp1", "proto", str(C.RT_PROTO))
        other.add_ppp("ppp0", A)
        w = World(root, server, other)
        (w.store / f"{B}{C.ROUTE_FILE_SUFFIX}").write_text(f"{B_NET} via {B}\n")
        yield w
    finally:
        for name in names:
            _ip("netns", "del", name, check=False)


def tagged(ns: Netns) -> set:
    return ns.tagged_set()


# -- what the panel may not ask ----------------------------------------------------------

#: (id, arguments, words the one error line must hold). Each is refused, exit 2, nothing changed.
REFUSED = [
    # every way to the default route
    ("default", ["add", "--peer", A, "--dst", "0.0.0.0/0"], "default route"),
    ("lower-half", ["add", "--peer", A, "--dst", "0.0.0.0/1"], "shorter than /8"),
    ("upper-half", ["add", "--peer", A, "--dst", "128.0.0.0/1"], "shorter than /8"),
    ("slash7-resolvers", ["add", "--peer", A, "--dst", "8.0.0.0/7"], "shorter than /8"),
    ("resolver", ["add", "--peer", A, "--dst", "9.9.9.0/24"], "9.9.9.9, a name server"),
    ("resolver-host", ["add", "--peer", A, "--dst", "1.1.1.1/32"], "1.1.1.1, a name server"),
    ("gateway", ["add", "--peer", A, "--dst", "100.64.0.0/10"], "100.64.0.1, a gateway of this server"),
    ("default6", ["add", "--peer", A, "--dst", "::/0"], "default route"),
    ("wide6", ["add", "--peer", A, "--dst", "2000::/3"], "shorter than /32"),
    # the server's own networks
    ("uplink", ["add", "--peer", A, "--dst", "198.51.100.0/24"], "198.51.100.2, an address of this server"),
    ("lan", ["add", "--peer", A, "--dst", "192.0.2.0/24"], "192.0.2.1, an address of this server"),
    ("lan-half", ["add", "--peer", A, "--dst", "192.0.2.64/26"], "192.0.2.0/24, a network of this server"),
    ("lan-super", ["add", "--peer", A, "--dst", "192.0.0.0/16"], "an address of this server"),
    ("management", ["add", "--peer", A, "--dst", "203.0.113.0/24"], "203.0.113.0/24, a network of this server"),
    ("gw-onto-lan", ["add", "--peer", A, "--dst", "203.0.113.64/26", "--gw", "192.0.2.254", "--dev", "lan0"],
     "a network of this server"),
    ("own-address", ["add", "--peer", A, "--dst", "10.254.0.1/32"], "10.254.0.1, an address of this server"),
    ("loopback", ["add", "--peer", A, "--dst", "127.0.0.0/8"], "an address of this server"),
    # another user's destination and session
    ("b-exact", ["add", "--peer", A, "--dst", B_NET], f"routed to peer {B}"),
    ("b-inside", ["add", "--peer", A, "--dst", "172.16.5.128/25"], f"routed to peer {B}"),
    ("b-around", ["add", "--peer", A, "--dst", "172.16.0.0/16"], f"routed to peer {B}"),
    ("b-session", ["add", "--peer", A, "--dst", f"{B}/32"], f"the address of peer {B}"),
    # another table, another namespace, --force
    ("table", ["add", "--peer", A, "--dst", "10.9.0.0/24", "--table", "100"], "--table 100 is not allowed"),
    ("force-add", ["add", "--peer", A, "--dst", "10.9.0.0/24", "--force"], "--force is not allowed"),
    ("force-default", ["add", "--peer", A, "--dst", "0.0.0.0/0", "--force"], "--force is not allowed"),
    ("force-apply", ["apply", "--force"], "--force is not allowed"),
    ("force-dry", ["apply", "--peer", A, "--force", "--dry-run"], "--force is not allowed"),
    ("netns-add", ["add", "--peer", A, "--dst", "10.9.0.0/24", "--netns", "{other}"], "--netns is not allowed"),
    ("netns-apply", ["apply", "--netns", "{other}"], "--netns is not allowed"),
    ("netns-del", ["del", "--peer", A, "--dst", "all", "--netns", "{other}"], "--netns is not allowed"),
    ("netns-json", ["add", "--peer", A, "--dst", "10.9.0.0/24", "--netns={other}", "--json"],
     "--netns is not allowed"),
]


def refused_argv(w: World, args: list[str]) -> list[str]:
    return [a.replace("{other}", w.other.name) for a in args]


def check_refused(w: World, proc: subprocess.CompletedProcess, words: str, before: tuple) -> None:
    assert proc.returncode == 2, proc
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{C.PROG}: error: ") and words in lines[0], proc
    assert not set("'\"<>&") & set(lines[0]), lines[0]
    if proc.stdout:  # --json: one document saying the same
        doc = json.loads(proc.stdout)
        assert doc["ok"] is False and words in doc["error"], proc.stdout
    assert w.state() == before


def walk_the_panels_calls(w: World, run) -> None:
    """The contract's invocations, as the panel sends them (add, apply --peer, list, del, del all),
    all passing on this server and leaving it as it was. `run(*args)` runs the command as the panel."""
    before = w.state()

    def ok(*args: str) -> str:
        proc = run(*args)
        assert proc.returncode == 0 and proc.stderr == "", proc
        return proc.stdout

    ok("add", "--peer", A, "--dst", "10.9.0.0/24")
    ok("apply", "--peer", A)
    ok("add", "--peer", A, "--dst", "10.10.0.0/16", "--gw", A, "--dev", "ppp0")
    ok("apply", "--peer", A)
    ok("add", "--peer", A, "--dst", "10.9.0.0/24")  # already there: nothing changes, success
    assert (w.store / f"{A}.routes").read_text() == f"10.9.0.0/24 via {A}\n10.10.0.0/16 via {A} dev ppp0\n"
    assert tagged(w.server) == {("10.9.0.0/24", A, "ppp0", "main"), ("10.10.0.0/16", A, "ppp0", "main"),
                                (B_NET, B, "ppp1", "main")}
    assert f"10.9.0.0/24 via {A}" in ok("list", "--peer", A)
    assert f"Peer: {B}" in ok("list")
    ok("apply")
    ok("del", "--peer", A, "--dst", "10.9.0.0/24")
    assert tagged(w.server) == {("10.10.0.0/16", A, "ppp0", "main"), (B_NET, B, "ppp1", "main")}
    ok("del", "--peer", A, "--dst", "all")
    assert w.state() == before
