"""The panel's OpenVPN server, real (Debian's openvpn), as the panel configures it, for
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
no systemd path unit in a namespace). Every program runs inside the namespaces made here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO, Netns, _ip, require

from l2tproute import constants as C

PORT = 18443
SERVER_ADDR = "172.31.1.1"
USERS = {"user1": ("pass1", "10.255.10.1", "192.168.20.0/24"), "user2": ("pass2", "10.255.10.2", "192.168.21.0/24")}

AUTH = """#!/bin/sh
# auth-user-pass-verify via-file: $1 holds the user name and the password, one a line.
{ read -r user; read -r pass; } <"$1" || exit 1
awk -v u="$user" -v p="$pass" '$1 == u && $3 == p { ok = 1 } END { exit !ok }' "%s"
"""


def _sh(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


class World:
    def __init__(self, root: Path):
        self.root = root
        tag = f"{os.getpid() % 100000}"
        self.ns = {role: Netns(f"l2t-{tag}-ovpn-{role}") for role in ("s", "c1", "c2", "c3", "h")}
        self.procs: dict[str, subprocess.Popen] = {}
        self.store = root / "routes.d"
        self.run = root / "run"
        self.chap = root / "chap-secrets"

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
        auth = self.root / "auth.sh"
        auth.write_text(AUTH % self.chap)
        auth.chmod(0o755)
        # The hook as installed, pointing at this checkout's helpers and interpreter.
        connect = self.root / "l2tp-routes-openvpn-connect"
        body = (REPO / "bin" / "l2tp-routes-openvpn-connect").read_text().split("\n", 1)[1]
        # nobody cannot run this venv's interpreter when it lives under /root (pyenv): the
        # system Python runs this checkout with the venv's packages, as the installer's line does.
        paths = [str(REPO), sysconfig.get_paths()["purelib"]]
        connect.write_text(f"#!/usr/bin/python3 -IS\nimport sys\nsys.path[:0] = {paths!r}\n{body}")
        connect.chmod(0o755)
        hook_text = (REPO / "bin" / "l2tp-routes-openvpn").read_text()
        for old, new in {"CONNECT=/opt/l2tproute/libexec/l2tp-routes-openvpn-connect": f"CONNECT={connect}",
                         "LIB=/opt/l2tproute/libexec/l2tproute.sh": f"LIB={REPO / 'bin' / 'l2tproute.sh'}"}.items():
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

        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=l2tproute test CA")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=server")
        (r / "ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                               "extendedKeyUsage=serverAuth\n")
        ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext")

    def server_config(self, hooks: bool) -> Path:
        r = self.root
        lines = [
            f"local {SERVER_ADDR}", f"port {PORT}", "proto tcp-server", "dev tun", "topology subnet",
            "server 10.10.30.0 255.255.255.0", f"ca {r}/ca.crt", f"cert {r}/server.crt", f"key {r}/server.key",
            "dh none", "verify-client-cert none", "username-as-common-name",
            f"auth-user-pass-verify {r}/auth.sh via-file", "script-security 2", "duplicate-cn",
            "user nobody", "group www-data", "keepalive 10 120", "persist-tun", "verb 4",
            f"setenv {C.STORE_DIR_ENV} {self.store}", f"setenv {C.RUN_DIR_ENV} {self.run}",
            f"setenv {C.CHAP_SECRETS_ENV} {self.chap}",
            f"management {self.run}/openvpn.sock unix", "management-client-user root",
        ]
        if hooks:
            lines += [f"client-connect {self.hook}", f"client-disconnect {self.hook}"]
        path = r / f"server-{int(hooks)}.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- processes --------------------------------------------------------------------
    def start(self, name: str, ns: str, config: list[str]) -> None:
        log = self.root / f"{name}.log"
        log.write_text("")
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", self.ns[ns].name, "openvpn", *config,
                                             "--log", str(log)], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_server(self, hooks: bool) -> None:
        self.start("server", "s", ["--config", str(self.server_config(hooks))])
        self.wait_log("server", "Initialization Sequence Completed")

    def start_client(self, user: str, ns: str) -> str:
        name = f"client-{user}-{ns}"
        self.start(name, ns, ["--client", "--dev", "tun", "--proto", "tcp-client", "--remote", SERVER_ADDR,
                              str(PORT), "--ca", str(self.root / "ca.crt"), "--auth-user-pass",
                              str(self.root / f"{user}.pass"), "--nobind", "--verb", "3"])
        self.wait_log(name, "Initialization Sequence Completed")
        return self.client_address(ns)

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

    def work(self) -> None:
        """The root worker, as l2tproute-worker.path starts it, inside S."""
        launcher = self.root / "l2tp-routes-worker"
        if not launcher.exists():
            body = (REPO / "bin" / "l2tp-routes-worker").read_text().split("\n", 1)[1]
            launcher.write_text(f"#!{sys.executable} -I\n{body}")
            launcher.chmod(0o755)
        _sh(["ip", "netns", "exec", self.ns["s"].name, str(launcher)], check=True, timeout=120,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", C.STORE_DIR_ENV: str(self.store),
                 C.RUN_DIR_ENV: str(self.run), C.CHAP_SECRETS_ENV: str(self.chap)})
        assert self.spooled() == []

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
