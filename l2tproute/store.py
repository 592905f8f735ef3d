"""The route store: one file per peer, locked edits, atomic replacement.

Readers take no lock: a file is only ever replaced by rename(2), so a reader sees
the old file or the new one, never half of one. Writers take the one store lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from . import constants as C
from .model import InputError, IPv4Address, parse_peer
from .routefile import Line, parse, serialize


class StoreError(RuntimeError):
    """The store cannot be read or written as asked (exit status 1)."""


def store_dir_from_environment(environ=os.environ) -> str:
    """L2TP_ROUTES_DIR moves the store for tests, never for a caller going through sudo."""
    if "SUDO_UID" in environ or "SUDO_USER" in environ:
        return C.DEFAULT_STORE_DIR
    return environ.get(C.STORE_DIR_ENV) or C.DEFAULT_STORE_DIR


class Store:
    def __init__(self, directory: str):
        self.directory = directory

    @classmethod
    def from_environment(cls) -> Store:
        return cls(store_dir_from_environment())

    def path(self, peer: IPv4Address) -> str:
        # The name is built only from a parsed address, never from a caller's string.
        return os.path.join(self.directory, f"{peer}{C.ROUTE_FILE_SUFFIX}")

    # -- reading -------------------------------------------------------------

    def read_bytes(self, peer: IPv4Address) -> bytes | None:
        """The file's bytes, or None when the peer has no file."""
        path = self.path(peer)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"{path} is a symbolic link; route files must be regular files "
                                 "(remove the link)") from None
            raise StoreError(f"cannot read {path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(f"{path} is not a regular file; remove it or replace it with a route file")
            if info.st_size > C.MAX_ROUTE_FILE_BYTES:
                raise StoreError(f"{path} is larger than {C.MAX_ROUTE_FILE_BYTES} bytes; that is not a route file")
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        except IsADirectoryError:
            raise StoreError(f"{path} is a directory; remove it or replace it with a route file") from None
        finally:
            os.close(fd)

    def read(self, peer: IPv4Address) -> list[Line] | None:
        data = self.read_bytes(peer)
        return None if data is None else parse(data)

    def peers(self) -> tuple[list[IPv4Address], list[str]]:
        """Peers that have a route file, in address order, and a warning for every odd entry."""
        peers, warnings = [], []
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            raise StoreError(f"cannot list {self.directory}: {exc.strerror}") from None
        for entry in entries:
            name = entry.name
            if not name.endswith(C.ROUTE_FILE_SUFFIX) or name.startswith("."):
                continue
            try:
                peer = parse_peer(name[: -len(C.ROUTE_FILE_SUFFIX)])
            except InputError:
                warnings.append(f"ignoring {entry.path!r}: the name is not <PEER_IPV4>{C.ROUTE_FILE_SUFFIX}")
                continue
            if entry.is_symlink():
                warnings.append(f"ignoring {entry.path}: a symbolic link, not a route file")
            elif not entry.is_file(follow_symlinks=False):
                warnings.append(f"ignoring {entry.path}: not a regular file")
            else:
                peers.append(peer)
        peers.sort()
        return peers, warnings

    # -- writing -------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, timeout: float = C.LOCK_TIMEOUT) -> Iterator[None]:
        """Hold the store lock; every edit and every reconcile happens inside it."""
        from filelock import FileLock, Timeout  # not needed by read-only commands

        self._ensure_directory()
        lock_path = os.path.join(self.directory, C.LOCK_FILE_NAME)
        lock = FileLock(lock_path, timeout=timeout)
        try:
            lock.acquire()
        except Timeout:
            raise StoreError(
                f"the route store {self.directory} is locked by another l2tp-routectl for more than "
                f"{timeout:g} s; try again, or find the stuck process with: fuser -v {lock_path}"
            ) from None
        except OSError as exc:  # the lock file is a symlink (never followed), a directory, ...
            raise StoreError(f"cannot take the store lock {lock_path}: {exc.strerror}; it must be a regular "
                             "file (remove it, it is created again)") from None
        try:
            self._remove_stale_temporaries()
            yield
        finally:
            lock.release()

    def write(self, peer: IPv4Address, lines: list[Line]) -> None:
        """Replace the peer's file atomically; remove it once no route is left in it.

        Call inside `locked()`.
        """
        path = self.path(peer)
        if not any(line.is_route for line in lines):
            self._remove(path)
            return
        old = self._lstat(path)
        fd, tmp = self._mkstemp(peer)
        try:
            data = serialize(lines)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, C.ROUTE_FILE_MODE)
            if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, old.st_uid, old.st_gid)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        os.close(fd)
        try:
            os.rename(tmp, path)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise StoreError(f"cannot replace {path}: {exc.strerror}") from None
        self._fsync_directory()

    def _lstat(self, path: str) -> os.stat_result | None:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{path} is not a regular file; remove it or replace it with a route file")
        return info

    def _remove(self, path: str) -> None:
        if self._lstat(path) is None:
            return
        os.unlink(path)
        self._fsync_directory()

    def _mkstemp(self, peer: IPv4Address) -> tuple[int, str]:
        import tempfile

        try:
            return tempfile.mkstemp(prefix=f"{C.TEMP_FILE_PREFIX}{peer}.", dir=self.directory)
        except OSError as exc:
            raise StoreError(f"cannot write in {self.directory}: {exc.strerror}") from None

    def _ensure_directory(self) -> None:
        try:
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the route store {self.directory}: {exc.strerror}") from None

    def _remove_stale_temporaries(self) -> None:
        # We hold the lock, so any temporary file is a leftover of a killed writer.
        for entry in os.scandir(self.directory):
            if entry.name.startswith(C.TEMP_FILE_PREFIX) and entry.is_file(follow_symlinks=False):
                _unlink_quietly(entry.path)

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
