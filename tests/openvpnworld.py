"""The panel's OpenVPN server, real (Debian's openvpn, or World.openvpn: a release built from
source, built_openvpn), as the panel configures it, for
tests/system/test_openvpn*.py and bench/:

    H (192.168.20.2) --lan-- C1 ==tcp==+            +== C2 (user2, LAN 192.168.21.0/24)
      user1's LAN behind C1            |            |     (or user1's second session)
                              S: openvpn server, 172.31.1.1:18443, tun0 10.10.30.1/24
                                       |
                                       +== C3 (user2, when C2 is user1)

S runs `user nobody`, `group www-data`, `verify-client-cert none`, `username-as-common-name`,
auth against a scratch chap-secrets (user1 -> 10.255.10.1, user2 -> 10.255.10.2), TCP,
`topology subnet`, `server 10.10.30.0 255.255.255.0`, `duplicate-cn`. The hook is this
checkout's bin/l2tp-routes-openvpn; the root worker runs from this checkout inside S (there is
no systemd path unit in a namespace), and so does its precompute of the iroutes before the
server starts (start_server, as the installer's ExecStartPre). Every program runs inside the namespaces made here.

For storms (bench/openvpn_storm.py): scratch_users() adds many users, each with its own peer
address and LAN route; add_client_namespace() adds a namespace that holds many clients (one
tun each); spawn_client() starts a client without waiting; start_server() takes extra config
lines and more cgroups to start in; management() asks the server's management socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO, Netns, _ip, require
from support.iproute2s import ip_env

from l2tproute.core import constants as C
from l2tproute.system.netns import named
from l2tproute.transports.openvpn.iroutes import IROUTES
from l2tproute.transports.openvpn.sessions import PENDING, SESSIONS

#: The hook's own directory (the kick's lock and flag), as the installer's tmpfiles.d line makes it.
OWN = "openvpn-connect"
#: The OpenVPN releases built from source for the tests (tests/system/test_openvpn_versions.py).
BUILT = Path("/var/cache/l2tproute-tests")

PORT = 18443
SERVER_ADDR = "172.31.1.1"
USERS = {"user1": ("pass1", "10.255.10.1", "192.168.20.0/24"), "user2": ("pass2", "10.255.10.2", "192.168.21.0/24")}
#: `start_server(ipv6=True)`: the server's IPv6 pool (`server-ipv6`).
POOL6 = "fd00:10:30::/64"

AUTH = """#!/bin/sh
# auth-user-pass-verify via-file: $1 holds the user name and the password, one a line.
{ read -r user; read -r pass; } <"$1" || exit 1
awk -v u="$user" -v p="$pass" '$1 == u && $3 == p { ok = 1 } END { exit !ok }' "%s"
"""


@dataclass(frozen=True)
class ScratchUser:
    """A chap-secrets user with its own peer address and one LAN route in its route file."""

    name: str
    password: str
    peer: str
    lan: str


@dataclass(frozen=True)
class StatusRows:
    """The server's `status 3`: CLIENT_LIST (VPN address -> user) and ROUTING_TABLE (route -> user)."""

    clients: dict[str, str]
    routes: dict[str, str]


def scratch_user(index: int) -> ScratchUser:
    """User number `index` (0 <= index < 25000): peer 10.254.X.Y (Y from 1 to 250), LAN 10.(100+X).Y.0/24."""
    high, low = divmod(index, 250)
    return ScratchUser(f"storm{index:05d}", f"pw{index}", f"10.254.{high}.{low + 1}", f"10.{100 + high}.{low + 1}.0/24")


def parse_status(text: str) -> StatusRows:
    """`status 3` from the management socket, or a status file of `status-version 3`."""
    clients, routes = {}, {}
    for line in text.splitlines():
        fields = line.rstrip("\r").split("\t")
        if fields[0] == "CLIENT_LIST" and len(fields) > 3:
            clients[fields[3]] = fields[1]
        elif fields[0] == "ROUTING_TABLE" and len(fields) > 2:
            routes[fields[1]] = fields[2]
    return StatusRows(clients, routes)


def _sh(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


class World:
    def __init__(self, root: Path):
        self.root = root
        tag = str(os.getpid())  # the session guard knows a scratch namespace by its pid
        self.tag = tag
        self.ns = {role: Netns(f"l2t-{tag}-ovpn-{role}") for role in ("s", "c1", "c2", "c3", "h")}
        self.procs: dict[str, subprocess.Popen] = {}
        self.store = root / "routes.d"
        self.run = root / "run"
        self.chap = root / "chap-secrets"
        self.cgroup: Path | None = None
        #: The server's program: Debian's openvpn, or a release built from source (built_openvpn).
        self.openvpn = "openvpn"

    # -- topology ---------------------------------------------------------------------
    def build(self) -> None:
        for ns in self.ns.values():
            _ip("netns", "add", ns.name)
            ns.ip("link", "set", "lo", "up")
        s, c1, c2, c3, h = (self.ns[r] for r in ("s", "c1", "c2", "c3", "h"))
        self._veth(s, "s-c1", SERVER_ADDR + "/24", c1, "c1-s", "172.31.1.2/24")
        self._veth(s, "s-c2", "172.31.2.1/24", c2, "c2-s", "172.31.2.2/24")
        c2.ip("route", "add", "172.31.1.0/24", "via", "172.31.2.1")
        self._veth(s, "s-c3", "172.31.3.1/24", c3, "c3-s", "172.31.3.2/24")
        c3.ip("route", "add", "172.31.1.0/24", "via", "172.31.3.1")
        self._veth(c1, "c1-h", "192.168.20.1/24", h, "h-c1", "192.168.20.2/24")
        h.ip("route", "add", "default", "via", "192.168.20.1")
        _sh(["ip", "netns", "exec", c1.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)

    def add_client_namespace(self, role: str, subnet: int) -> None:
        """A namespace `role` (a few letters) for many clients, on 172.31.SUBNET.0/24 (SUBNET > 3)."""
        ns = self.ns[role] = Netns(f"l2t-{self.tag}-ovpn-{role}")
        _ip("netns", "add", ns.name)
        ns.ip("link", "set", "lo", "up")
        self._veth(self.ns["s"], f"s-{role}", f"172.31.{subnet}.1/24", ns, f"{role}-s", f"172.31.{subnet}.2/24")
        ns.ip("route", "add", "172.31.1.0/24", "via", f"172.31.{subnet}.1")

    @staticmethod
    def _veth(a: Netns, a_name: str, a_addr: str, b: Netns, b_name: str, b_addr: str) -> None:
        a.ip("link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b.name)
        a.ip("addr", "add", a_addr, "dev", a_name)
        b.ip("addr", "add", b_addr, "dev", b_name)
        a.ip("link", "set", a_name, "up")
        b.ip("link", "set", b_name, "up")

    # -- files ------------------------------------------------------------------------
    def write_files(self) -> None:
        self.root.chmod(0o755)
        self.store.mkdir(mode=0o755)
        for _, (_, peer, lan) in USERS.items():
            (self.store / f"{peer}.routes").write_text(f"{lan} via {peer}\n")
        self.chap.write_text("".join(f"{u} * {p} {a}\n" for u, (p, a, _) in USERS.items()))
        shutil.chown(self.chap, "root", "www-data")
        self.chap.chmod(0o640)
        spool = self.run / "spool"
        spool.mkdir(parents=True)
        self.run.chmod(0o755)
        shutil.chown(spool, "root", "www-data")
        spool.chmod(0o1770)
        own = self.run / OWN  # as the installer's tmpfiles.d lines make them
        own.mkdir()
        shutil.chown(own, "root", "www-data")
        own.chmod(0o1770)
        iroutes = self.run / IROUTES
        iroutes.mkdir()
        shutil.chown(iroutes, "root", "www-data")
        iroutes.chmod(0o2750)
        auth = self.root / "auth.sh"
        auth.write_text(AUTH % self.chap)
        auth.chmod(0o755)
        # The hook as installed, pointing at this checkout's helpers.
        hook_text = (REPO / "bin" / "l2tp-routes-openvpn").read_text()
        for old, new in {"LIB=/opt/l2tproute/libexec/l2tproute.sh": f"LIB={REPO / 'lib' / 'l2tproute.sh'}",
                         # No kick: the tests run the worker themselves (world.work); one may put a kick here.
                         "KICK=/opt/l2tproute/libexec/l2tp-routes-kick": f"KICK={self.root / 'l2tp-routes-kick'}",
                         }.items():
            assert old in hook_text
            hook_text = hook_text.replace(old, new)
        self.hook = self.root / "l2tp-routes-openvpn"
        self.hook.write_text(hook_text)
        self.hook.chmod(0o755)
        self._pki()
        for user, (password, _, _) in USERS.items():
            (self.root / f"{user}.pass").write_text(f"{user}\n{password}\n")
            (self.root / f"{user}.pass").chmod(0o600)

    def _pki(self) -> None:
        r = self.root

        def ssl(*args):
            _sh(["openssl", *args], check=True, cwd=r)

        # OpenVPN 2.4 has no `dh none`: a fixed group (RFC 7919), which costs no generation.
        ssl("genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048", "-out", "dh.pem")
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=l2tproute test CA")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=server")
        (r / "ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                               "extendedKeyUsage=serverAuth\n")
        ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext")

    def add_users(self, users: dict[str, tuple[str, str, str]]) -> None:
        """More users (name: password, peer, route file text), beside USERS, which every test has."""
        with self.chap.open("a") as handle:
            handle.write("".join(f"{u} * {p} {a}\n" for u, (p, a, _) in users.items()))
        for user, (password, peer, routes) in users.items():
            (self.store / f"{peer}.routes").write_text(routes)
            (self.root / f"{user}.pass").write_text(f"{user}\n{password}\n")
            (self.root / f"{user}.pass").chmod(0o600)

    def scratch_users(self, indexes: Sequence[int]) -> list[ScratchUser]:
        """Users scratch_user(i) for each index: a chap-secrets line, a route file, a password file."""
        users = [scratch_user(i) for i in indexes]
        self.add_users({u.name: (u.password, u.peer, f"{u.lan} via {u.peer}\n") for u in users})
        return users

    def server_config(self, hooks: bool, ipv6: bool = False, extra: Sequence[str] = ()) -> Path:
        r = self.root
        lines = [
            f"local {SERVER_ADDR}", f"port {PORT}", "proto tcp-server", "dev tun", "topology subnet",
            "server 10.10.30.0 255.255.255.0", f"ca {r}/ca.crt", f"cert {r}/server.crt", f"key {r}/server.key",
            f"dh {r}/dh.pem", "verify-client-cert none", "username-as-common-name",
            f"auth-user-pass-verify {r}/auth.sh via-file", "script-security 2", "duplicate-cn",
            "user nobody", "group www-data", "keepalive 10 120", "persist-tun", "verb 4",
            f"setenv {C.STORE_DIR_ENV} {self.store}", f"setenv {C.RUN_DIR_ENV} {self.run}",
            f"setenv {C.CHAP_SECRETS_ENV} {self.chap}",
            f"management {self.run}/openvpn.sock unix", "management-client-user root",
        ]
        if hooks:
            lines += [f"client-connect {self.hook}", f"client-disconnect {self.hook}"]
        if ipv6:
            lines += [f"server-ipv6 {POOL6}"]
        lines += extra
        path = r / f"server-{int(hooks)}{'-6' if ipv6 else ''}.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- processes --------------------------------------------------------------------
    def start(self, name: str, ns: str, config: list[str], cgroup: Path | None = None,
              cgroups: Sequence[Path] = ()) -> None:
        """`cgroup`, `cgroups`: entered before exec, so every process the server forks is in them."""
        log = self.root / f"{name}.log"
        log.write_text("")
        enter = None
        groups = ([cgroup] if cgroup is not None else []) + list(cgroups)
        if groups:
            def enter():
                for group in groups:
                    (group / "cgroup.procs").write_text(str(os.getpid()))
        program = self.openvpn if name == "server" else "openvpn"
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", self.ns[ns].name, program, *config,
                                             "--log", str(log)], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=enter)

    def start_server(self, hooks: bool, ipv6: bool = False, pids_max: int | None = None, extra: Sequence[str] = (),
                     cgroups: Sequence[Path] = ()) -> None:
        """`pids_max`: the server (with its hooks and what they start) in a pids cgroup of that
        size, as Debian's openvpn@.service has TasksMax=10. `extra`: more config lines; `cgroups`:
        more control groups (made by the caller) to start it in."""
        self.precompute()  # as the installer's ExecStartPre does before OpenVPN starts
        if pids_max is not None:
            self.cgroup = make_pids_cgroup(f"l2t-{os.getpid()}-ovpn")
            (self.cgroup / "pids.max").write_text(str(pids_max))
        self.start("server", "s", ["--config", str(self.server_config(hooks, ipv6, extra))], self.cgroup, cgroups)
        self.wait_log("server", "Initialization Sequence Completed")

    def client_args(self, user: str) -> list[str]:
        return ["--client", "--dev", "tun", "--proto", "tcp-client", "--remote", SERVER_ADDR, str(PORT),
                "--ca", str(self.root / "ca.crt"), "--auth-user-pass", str(self.root / f"{user}.pass"),
                "--nobind", "--verb", "3"]

    def spawn_client(self, user: str, ns: str) -> str:
        """Start a client of `user` in namespace `ns` without waiting for it; its process name."""
        name = f"client-{user}-{ns}"
        self.start(name, ns, self.client_args(user))
        return name

    def start_client(self, user: str, ns: str) -> str:
        name = self.spawn_client(user, ns)
        self.wait_log(name, "Initialization Sequence Completed")
        return self.client_address(ns)

    def start_clients(self, users: list[str], ns: str) -> list[str]:
        """Several clients in one namespace, all started at once (each on its own tun); their names."""
        names = [f"client-{user}-{ns}-{i}" for i, user in enumerate(users)]
        for name, user in zip(names, users):
            self.start(name, ns, self.client_args(user))
        for name in names:
            self.wait_log(name, "Initialization Sequence Completed")
        return names

    def logged_address(self, name: str, family: int = 4) -> str:
        """The VPN address a client set on its tun, from its log (net_addr_v4_add: ADDRESS/LEN dev TUN)."""
        marker = "net_addr_v4_add: " if family == 4 else "net_addr_v6_add: "
        text = (self.root / f"{name}.log").read_text(errors="replace")
        return text.split(marker, 1)[1].split("/", 1)[0]

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.terminate()
        proc.wait(timeout=30)

    def wait_log(self, name: str, text: str, limit: float = 90) -> None:
        deadline = time.monotonic() + limit
        log = self.root / f"{name}.log"
        while time.monotonic() < deadline:
            if text in log.read_text(errors="replace"):
                return
            if self.procs[name].poll() is not None:
                break
            time.sleep(0.1)
        server = self.root / "server.log"
        raise AssertionError(f"{name}: no {text} in its log:\n{log.read_text(errors='replace')[-1500:]}\n"
                             f"server:\n{server.read_text(errors='replace')[-3000:]}")

    @property
    def sessions(self) -> Path:
        """The session records of S's clients (the server and its tun are in S)."""
        return self.run / SESSIONS / str(named(self.ns["s"].name))

    @property
    def pending(self) -> Path:
        return self.run / PENDING / str(named(self.ns["s"].name))

    def client_address(self, ns: str) -> str:
        rows = json.loads(self.ns[ns].ip("-j", "addr", "show", "dev", "tun0").stdout)
        return next(i["local"] for i in rows[0]["addr_info"] if i["family"] == "inet")

    def spooled(self) -> list[str]:
        return sorted(os.listdir(self.run / "spool"))

    def wait_spool(self, predicate, limit: float = 60) -> list[str]:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            names = self.spooled()
            if predicate(names):
                return names
            time.sleep(0.05)
        raise AssertionError(f"the spool never got the event: {self.spooled()}")

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        """argv and environment of the root worker (this checkout's) inside S."""
        launcher = self.root / "l2tp-routes-worker"
        if not launcher.exists():
            body = (REPO / "bin" / "l2tp-routes-worker").read_text().split("\n", 1)[1]
            launcher.write_text(f"#!{sys.executable} -I\n{body}")
            launcher.chmod(0o755)
        return (["ip", "netns", "exec", self.ns["s"].name, str(launcher)],
                {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", C.STORE_DIR_ENV: str(self.store),
                 C.RUN_DIR_ENV: str(self.run), C.CHAP_SECRETS_ENV: str(self.chap), **ip_env()})

    def precompute(self) -> None:
        """`l2tp-routes-worker --iroutes` (this checkout's): the iroutes of every user, for the hook."""
        argv, env = self.worker_command()
        _sh([*argv, "--iroutes"], check=True, timeout=120, env=env)

    def work(self, **extra_env: str) -> None:
        """The root worker, as l2tproute-worker.path starts it, inside S."""
        argv, env = self.worker_command()
        _sh(argv, check=True, timeout=120, env={**env, **extra_env})
        assert self.spooled() == []

    def management(self, command: str, timeout: float = 10) -> str:
        """The server's answer to one management command (up to its END line). OpenVPN serves one
        management client at a time; a connect that finds its backlog full is tried again."""
        data = b""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            while True:
                try:
                    sock.connect(str(self.run / "openvpn.sock"))
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            sock.sendall(command.encode() + b"\n")
            while b"\nEND" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            sock.sendall(b"quit\n")
        return data.decode(errors="replace")

    def status(self) -> StatusRows:
        return parse_status(self.management("status 3"))

    def routes_via(self, gw: str) -> list[dict]:
        return [r for r in json.loads(self.ns["s"].ip("-4", "-j", "-N", "route", "show", "table", "all").stdout)
                if r.get("gateway") == gw]

    def ping(self, address: str) -> bool:
        return _sh(["ip", "netns", "exec", self.ns["s"].name, "ping", "-n", "-c", "2", "-W", "2", address],
                   timeout=30).returncode == 0

    def close(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in self.ns.values():
            _ip("netns", "del", ns.name, check=False)
        if self.cgroup is not None:
            remove_cgroup(self.cgroup)


def pids_cgroup_root() -> Path | None:
    """Where a pids cgroup can be made here: cgroup v2 with the pids controller, else v1's pids hierarchy."""
    v2 = Path("/sys/fs/cgroup")
    with contextlib.suppress(OSError):
        if "pids" in (v2 / "cgroup.controllers").read_text().split() and \
                "pids" in (v2 / "cgroup.subtree_control").read_text().split():
            return v2
    v1 = Path("/sys/fs/cgroup/pids")
    return v1 if (v1 / "cgroup.procs").exists() else None


def make_pids_cgroup(name: str) -> Path:
    root = pids_cgroup_root()
    require(root is not None, "a pids cgroup (cgroup v2 with pids, or v1 pids)")
    path = root / name
    path.mkdir()
    return path


def remove_cgroup(path: Path) -> None:
    """Ends what is left in it (the hooks' background processes, started by the test's server), then removes it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        path.rmdir()


@contextlib.contextmanager
def openvpn_world() -> Iterator[World]:
    require(shutil.which("openvpn") is not None, "openvpn")
    require(shutil.which("openssl") is not None, "openssl")
    root = Path(tempfile.mkdtemp(prefix="l2t-ovpn-", dir="/tmp"))
    w = World(root)
    try:
        w.build()
        w.write_files()
        yield w
    finally:
        w.close()
        shutil.rmtree(root, ignore_errors=True)


def built_openvpn(version: str) -> str:
    """The path of OpenVPN `version` built from its sources for the tests (see BUILT.txt there);
    a missing one fails the test that wants it, with one line: it is part of the test set."""
    path = BUILT / f"openvpn-{version}" / "openvpn"
    if not os.access(path, os.X_OK):
        raise AssertionError(f"no OpenVPN {version} at {path}: build it from the openvpn sources at tag "
                             f"v{version} as {BUILT}/BUILT.txt describes")
    return str(path)


# -- the panel's OpenVPN server in a booted Debian (tests/system/test_systemd.py, test_oldserver.py) --

OVPN_UNIT = "openvpn@server.service"
OVPN_DROP_IN = f"/etc/systemd/system/{OVPN_UNIT}.d/l2tproute.conf"
OVPN_HOOK = "/opt/l2tproute/libexec/l2tp-routes-openvpn"
#: The panel's server as its installer writes it.
PANEL_SERVER = """port 18443
proto tcp-server
dev tun
topology subnet
server 10.10.30.0 255.255.255.0
ca /etc/openvpn/pki/ca.crt
cert /etc/openvpn/pki/ca.crt
key /etc/openvpn/pki/ca.key
dh none
verify-client-cert none
username-as-common-name
auth-user-pass-verify /etc/openvpn/auth.sh via-file
script-security 2
user nobody
group www-data
duplicate-cn
persist-tun
keepalive 10 120
verb 4
"""
