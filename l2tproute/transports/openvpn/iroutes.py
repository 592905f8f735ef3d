"""OpenVPN's iroutes, precomputed by root for the connect hook, which only copies them.

OpenVPN (2.4 has no deferred client-connect) waits for its client-connect hook, and the hook
runs unprivileged (`user nobody`, `group www-data`). So root writes, ahead of any connect,
what a connect needs, into RUN_DIR/openvpn-iroutes (made by the installer's tmpfiles.d line,
root:GROUP, mode 2750: the hook's group reads, only root writes; this module writes nothing
when it is missing, as then no OpenVPN server is wired):

    users/NAME    `PEER\\n`: the user's chap-secrets address (resolve_user); NAME is
                  user_file_name of the user name, the same as the sh hook computes
    peers/PEER    the iroute lines of the peer's route file (`iroute NET MASK`, and
                  `iroute-ipv6 NET/LEN`, which the hook leaves out for a client without an
                  IPv6 address); empty when no line goes over OpenVPN. Its mtime is the
                  route file's, so the timer's refresh rewrites only what changed
    chap.stamp    which chap-secrets users/ was made from; its mtime is that file's, so the
                  hook (`[ CHAP -nt STAMP ]`) never uses users/ older than chap-secrets

bin/l2tp-routes-openvpn reads users/NAME and peers/PEER, appends the lines to the client's
config file and spools `TUN,SEQ,vpn-up,ADDRESS,PEER[,ADDRESS6]`. The root worker still checks
that session with OpenVPN's management interface before it installs a kernel route.

Who writes: every command that changes a route file (Store.on_commit, that peer's file), the
worker at each run and the timer's apply (users/ when chap-secrets changed, every peers/ file
whose route file changed or went), `l2tp-routes-worker --iroutes` before OpenVPN starts
(the installer's ExecStartPre) and l2tproute-worker.path when chap-secrets changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from l2tproute.core import constants as C
from l2tproute.core.model import InputError, IPv4Address, Route, parse_peer
from l2tproute.core.routefile import routes as routes_of
from l2tproute.system.chap import chap_path, read_secrets, resolve_all
from l2tproute.system.spool import run_dir_from_environment
from l2tproute.system.store import Store, StoreError

IROUTES = C.OPENVPN_IROUTES
USERS = "users"
PEERS = "peers"
STAMP = "chap.stamp"
LOCK = ".lock"
#: The bytes a user file name keeps as they are; every other byte is %XX (upper-case hex).
KEPT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@+-")
NAME_MAX = 255
#: A file written here: read by the hook's group, never by others.
FILE_MODE = 0o640


class PrecomputeError(Exception):
    """The precompute directory is not root's own (another user could plant what the hook copies)."""


def iroute_lines(routes: Sequence[Route], ipv6: bool = False) -> list[str]:
    """OpenVPN's iroutes, as network and dotted mask: `iroute 192.168.20.0/24` is taken as a /32;
    with `ipv6` (the client has an IPv6 pool address) also `iroute-ipv6 NET/LEN`, which takes a prefix."""
    return [f"iroute {r.dst.network_address} {r.dst.netmask}" if r.family == 4 else f"iroute-ipv6 {r.dst}"
            for r in routes if r.dev is None and (r.family == 4 or ipv6)]


def user_file_name(name: bytes) -> str | None:
    """users/NAME for the user name `name` (bytes as OpenVPN passes them); None when it cannot
    have one (empty, or longer than a file name may be once encoded). lib/l2tproute.sh's
    l2t_user_name computes the same."""
    if not name:
        return None
    text = "".join(chr(b) if b in KEPT else f"%{b:02X}" for b in name)
    return text if len(text) <= NAME_MAX else None


@dataclass
class Refreshed:
    """What one refresh changed; `skipped` says, per user or route file, why it got no file."""

    users_written: int = 0
    users_removed: int = 0
    peers_written: int = 0
    peers_removed: int = 0
    skipped: list[str] = field(default_factory=list)


def _identity(info: os.stat_result) -> str:
    return f"{info.st_dev} {info.st_ino} {info.st_size} {info.st_mtime_ns} {info.st_ctime_ns}\n"


class Precompute:
    """RUN_DIR/openvpn-iroutes: written only when it exists and is root's (this process's) own."""

    def __init__(self, run_dir: str, store: Store, chap: str):
        self.directory = os.path.join(run_dir, IROUTES)
        self.store = store
        self.chap = chap

    # -- the directory -------------------------------------------------------------------
    def present(self) -> bool:
        """True when the directory is there and safe to write; PrecomputeError when it is there
        but another user could write into it."""
        try:
            info = os.lstat(self.directory)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise PrecomputeError(f"{self.directory} is not a directory of uid {os.geteuid()} that only it may "
                                  "write (expected root:GROUP, mode 2750, as the installer makes it); "
                                  "OpenVPN clients get no iroutes")
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Writers (a command, the worker, the timer) one at a time: chap.stamp is written last
        # and must describe the users/ files beside it.
        fd = os.open(os.path.join(self.directory, LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _subdirectory(self, name: str) -> str:
        path = os.path.join(self.directory, name)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o750)  # group and setgid bit from the directory (mode 2750)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise PrecomputeError(f"{path} is not a directory only uid {os.geteuid()} may write; remove it")
        return path

    # -- writing -------------------------------------------------------------------------
    def refresh(self, force: bool = False, peers: bool = True) -> Refreshed:
        """users/ when chap-secrets is not the one chap.stamp names (or `force`); with `peers`,
        every peers/ file whose route file changed, appeared or went (the worker leaves those to
        the commands and the timer). Nothing when the directory is missing."""
        result = Refreshed()
        if not self.present():
            return result
        with self._locked():
            self._refresh_users(result, force)
            if peers:
                self._refresh_peers(result, force)
        return result

    def peer_changed(self, peer: IPv4Address) -> None:
        """peers/PEER from the peer's route file now (a command just wrote it)."""
        if not self.present():
            return
        with self._locked():
            self._write_peer(self._subdirectory(PEERS), peer, Refreshed())

    def follow(self, peer: IPv4Address) -> None:
        """peer_changed for Store.on_commit: the route file is already written, so nothing here
        may fail the command; what goes wrong is repaired by the timer's refresh, which says so."""
        with contextlib.suppress(OSError, PrecomputeError, StoreError):
            self.peer_changed(peer)

    def _refresh_users(self, result: Refreshed, force: bool) -> None:
        directory = self._subdirectory(USERS)
        stamp = os.path.join(self.directory, STAMP)
        for _ in range(3):
            try:
                before = os.stat(self.chap)
            except FileNotFoundError:
                before = None
            identity = _identity(before) if before is not None else "missing\n"
            if not force and _read_text(stamp) == identity:
                return
            data = read_secrets(self.chap) if before is not None else b""
            with contextlib.suppress(FileNotFoundError):
                if before is not None and _identity(os.stat(self.chap)) != identity:
                    continue  # changed while read: read it again
            break
        wanted: dict[str, str] = {}
        for client, found in resolve_all(data, self.chap).items():
            if isinstance(found, InputError):
                continue  # no fixed address: no routes, over L2TP or OpenVPN
            name = user_file_name(client)
            if name is None:
                result.skipped.append(f"user {client[:40].decode('ascii', 'replace')}... has a name too long for "
                                      f"a file in {directory}; no iroutes over OpenVPN")
                continue
            wanted[name] = f"{found}\n"
        for name in os.listdir(directory):
            if name not in wanted and not name.startswith("."):
                os.unlink(os.path.join(directory, name))
                result.users_removed += 1
        for name, text in wanted.items():
            path = os.path.join(directory, name)
            if _read_text(path) != text:
                _put(path, text.encode("ascii"))
                result.users_written += 1
        # Last: the hook takes users/ as current once this names the chap-secrets it sees.
        _put(stamp, identity.encode("ascii"), before.st_mtime_ns if before is not None else None)

    def _refresh_peers(self, result: Refreshed, force: bool) -> None:
        directory = self._subdirectory(PEERS)
        peers, _ = self.store.peers()  # what is odd in the store, apply says
        have = set(peers)
        for name in os.listdir(directory):
            if name.startswith("."):
                continue
            try:
                gone = parse_peer(name) not in have
            except InputError:
                gone = True
            if gone:
                os.unlink(os.path.join(directory, name))
                result.peers_removed += 1
        for peer in peers:
            if force or _mtime(self.store.path(peer)) != _mtime(os.path.join(directory, str(peer))):
                self._write_peer(directory, peer, result)

    def _write_peer(self, directory: str, peer: IPv4Address, result: Refreshed) -> None:
        path = os.path.join(directory, str(peer))
        source = self.store.path(peer)
        when = _mtime(source)
        try:
            lines = self.store.read(peer) if when is not None else None
        except StoreError as exc:
            result.skipped.append(f"{exc}; no iroutes over OpenVPN for peer {peer}")
            lines = None
        if lines is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                result.peers_removed += 1
            return
        text = "".join(line + "\n" for line in iroute_lines(routes_of(lines), ipv6=True))
        if _mtime(path) == when and _read_text(path) == text:
            return  # a forced refresh rewrites only what differs
        _put(path, text.encode("ascii"), when)
        result.peers_written += 1


def _mtime(path: str) -> int | None:
    try:
        return os.lstat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read(4096)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _put(path: str, data: bytes, mtime_ns: int | None = None) -> None:
    """Replace `path` with `data` at once (the hook never reads half a file), mode 0640."""
    temporary = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(fd)
    os.replace(temporary, path)


def precompute_from_environment(store: Store, environ=os.environ) -> Precompute:
    return Precompute(run_dir_from_environment(environ), store, chap_path(environ))


__all__ = ["iroute_lines", "IROUTES", "PEERS", "STAMP", "USERS", "Precompute", "PrecomputeError", "Refreshed",
           "precompute_from_environment", "user_file_name"]
