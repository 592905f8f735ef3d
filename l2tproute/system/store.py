"""The route store: one file per peer, locked edits, atomic replacement.

Readers take no lock: a file is only ever replaced by rename(2), so a reader sees
the old file or the new one, never half of one. Writers take the one store lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable, Iterator

from l2tproute.core import constants as C
from l2tproute.core.errors import InputError, StoreError, SystemFault, store_fault
from l2tproute.core.model import IPv4Address, parse_peer
from l2tproute.core.routefile import Line, parse, serialize
from l2tproute.core.text import path_text, show
from l2tproute.system.settings import setting

__all__ = ["Store", "StoreError", "SystemFault", "cache_dir_from_environment", "store_dir_from_environment"]


def store_dir_from_environment(environ=os.environ) -> str:
    """L2TP_ROUTES_DIR moves the store for tests, never for a caller going through sudo."""
    return setting(C.STORE_DIR_ENV, C.DEFAULT_STORE_DIR, environ)


def cache_dir_from_environment(environ=os.environ) -> str:
    """L2TP_CACHE_DIR moves the caches for tests, never for a caller going through sudo."""
    return setting(C.CACHE_DIR_ENV, C.DEFAULT_CACHE_DIR, environ)


class Store:
    def __init__(self, directory: str, lock_times: str | None = None, cache_dir: str | None = None):
        self.directory = directory
        #: Where each lock hold time is appended (bench/peruser.py reads it); None: nowhere.
        self.lock_times = lock_times
        #: Where the caches of this store's files go (dstindex); never inside the store.
        self.cache_dir = cache_dir if cache_dir is not None else cache_dir_from_environment()
        #: Called with the peer after its route file was replaced or removed (under the lock):
        #: the OpenVPN precompute follows the file (transports/openvpn/iroutes.py).
        self.on_commit: Callable[[IPv4Address], None] | None = None

    @classmethod
    def from_environment(cls, environ=os.environ) -> Store:
        lock_times = setting(C.LOCK_TIMES_ENV, "", environ) or None
        return cls(store_dir_from_environment(environ), lock_times, cache_dir_from_environment(environ))

    def path(self, peer: IPv4Address) -> str:
        # The name is built only from a parsed address, never from a caller's string.
        return os.path.join(self.directory, f"{peer}{C.ROUTE_FILE_SUFFIX}")

    # -- reading -------------------------------------------------------------

    def read_bytes(self, peer: IPv4Address, limit: int | None = C.MAX_ROUTE_FILE_BYTES) -> bytes | None:
        """The file's bytes, or None when the peer has no file; larger than `limit`: an error."""
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
            raise store_fault(exc, f"cannot read {path_text(path)}", path) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(f"{path} is not a regular file; remove it or replace it with a route file")
            if limit is not None and info.st_size > limit:
                raise StoreError(f"{path} is larger than {limit} bytes; that is not a route file")
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        except IsADirectoryError:
            raise StoreError(f"{path} is a directory; remove it or replace it with a route file") from None
        except OSError as exc:
            raise store_fault(exc, f"cannot read {path_text(path)}", path) from None
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
            raise store_fault(exc, f"cannot list the route store {path_text(self.directory)}", self.directory) from None
        for entry in entries:
            name = entry.name
            if not name.endswith(C.ROUTE_FILE_SUFFIX) or name.startswith("."):
                continue
            try:
                peer = parse_peer(name[: -len(C.ROUTE_FILE_SUFFIX)])
            except InputError:
                warnings.append(f"ignoring {show(entry.path, 300)}: the name is not PEER_IPV4{C.ROUTE_FILE_SUFFIX}")
                continue
            if entry.is_symlink():
                warnings.append(f"ignoring {entry.path}: a symbolic link, not a route file")
            elif not entry.is_file(follow_symlinks=False):
                warnings.append(f"ignoring {entry.path}: not a regular file")
            else:
                peers.append(peer)
        peers.sort()
        return peers, warnings

    def read_cache(self, name: str) -> bytes | None:
        """A cache file of this store (see dstindex), in the cache directory; None when it is missing,
        unreadable, not a regular file (a link is not followed, a FIFO not waited on), larger than
        MAX_CACHE_BYTES, or not written by this user alone (another owner, writable by others)."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(os.path.join(self.cache_dir, name), flags)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > C.MAX_CACHE_BYTES \
                    or info.st_uid != os.geteuid() or info.st_mode & 0o022:
                return None
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read(C.MAX_CACHE_BYTES + 1)
        except OSError:
            return None
        finally:
            os.close(fd)

    # -- writing -------------------------------------------------------------

    def replace_cache(self, name: str, data: bytes) -> None:
        """Put a cache file in place atomically, in the cache directory (made when missing). Call
        inside `locked()`. A cache that cannot be written is only slower next time, never wrong: it
        is checked against the files it covers. Whatever is in its place that is not a file (a link,
        a FIFO, an empty directory) is replaced; a directory with something in it is left alone."""
        import tempfile

        tmp = None
        path = os.path.join(self.cache_dir, name)
        prefix = f"{C.TEMP_FILE_PREFIX}{name.lstrip('.')}."
        try:
            os.makedirs(self.cache_dir, mode=0o755, exist_ok=True)
            for entry in os.scandir(self.cache_dir):  # under the lock: a leftover of a killed writer
                if entry.name.startswith(prefix) and entry.is_file(follow_symlinks=False):
                    _unlink_quietly(entry.path)
            fd, tmp = tempfile.mkstemp(prefix=prefix, dir=self.cache_dir)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, C.ROUTE_FILE_MODE)
            with contextlib.suppress(OSError):  # rename(2) cannot replace a directory; an empty one goes
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    os.rmdir(path)
            os.rename(tmp, path)
            tmp = None
        except OSError:
            pass
        finally:
            if tmp is not None:
                _unlink_quietly(tmp)

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
        except OSError as exc:  # a symlink (never followed), a directory, a read-only or unwritable store...
            raise store_fault(exc, f"cannot take the store lock {path_text(lock_path)}", lock_path) from None
        acquired = time.perf_counter()
        try:
            self._remove_stale_temporaries()
            yield
        finally:
            lock.release()
            if self.lock_times:
                self._note_hold(time.perf_counter() - acquired)

    def _note_hold(self, seconds: float) -> None:
        with contextlib.suppress(OSError), open(self.lock_times, "a") as handle:  # a measurement aid only
            handle.write(f"{seconds:.6f}\n")

    def write(self, peer: IPv4Address, lines: list[Line]) -> None:
        """Replace the peer's file atomically; remove it once no route (nor a line meant as
        one) is left in it.

        Call inside `locked()`.
        """
        with self.staged(peer, lines) as commit:
            commit()

    @contextlib.contextmanager
    def staged(self, peer: IPv4Address, lines: list[Line]) -> Iterator[Callable[[], None]]:
        """Prepare the peer's new file beside its place; the `commit()` this yields puts it there.

        What the disk can refuse (space, a read-only or unwritable store, I/O, open files) is met
        before the block runs, so a caller that changes the kernel inside the block does so only
        once the file is sure to follow. Leaving without commit() changes no file. Call inside `locked()`.
        """
        path = self.path(peer)
        keep = any(line.is_meant_as_route for line in lines)
        old = self._lstat(path)
        if not keep and old is None:
            yield lambda: None  # no file, none wanted
            return
        staged = _Staged(self, peer, serialize(lines) if keep else None, old)

        def commit() -> None:
            staged.commit()
            if self.on_commit is not None:
                self.on_commit(peer)

        try:
            yield commit
        finally:
            staged.close()

    def _lstat(self, path: str) -> os.stat_result | None:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise store_fault(exc, f"cannot read {path_text(path)}", path) from None
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{path} is not a regular file; remove it or replace it with a route file")
        return info

    def _ensure_directory(self) -> None:
        try:
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
        except OSError as exc:
            what = f"cannot create the route store {path_text(self.directory)}"
            raise store_fault(exc, what, self.directory) from None

    def _remove_stale_temporaries(self) -> None:
        # We hold the lock, so any temporary file is a leftover of a killed writer.
        try:
            for entry in os.scandir(self.directory):
                if entry.name.startswith(C.TEMP_FILE_PREFIX) and entry.is_file(follow_symlinks=False):
                    _unlink_quietly(entry.path)
        except OSError as exc:
            where = exc.filename if isinstance(exc.filename, str) else self.directory
            raise store_fault(exc, f"cannot clean up the route store {path_text(where)}", where) from None


class _Staged:
    """A route file written as a temporary beside its place (or, for a removal, a probe that
    shows the directory can be changed), with the directory open for its fsync: commit()
    opens nothing, so a full file table cannot stop it halfway."""

    def __init__(self, store: Store, peer: IPv4Address, data: bytes | None, old: os.stat_result | None):
        import tempfile

        self.path = store.path(peer)
        self.directory = store.directory
        self.data = data
        self.tmp: str | None = None
        self.dir_fd = _open_directory(self.directory)
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f"{C.TEMP_FILE_PREFIX}{peer}.", dir=self.directory)
        except OSError as exc:
            if data is None and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return  # a full disk still lets a file go, and that frees space
            os.close(self.dir_fd)
            raise store_fault(exc, f"cannot create a file in the route store {path_text(self.directory)}",
                              self.directory) from None
        try:
            self._fill(fd, old)
        except BaseException:
            self.close()
            raise

    def _fill(self, fd: int, old: os.stat_result | None) -> None:
        try:
            try:
                if self.data is not None:
                    view = memoryview(self.data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fchmod(fd, C.ROUTE_FILE_MODE)
                    if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                        os.fchown(fd, old.st_uid, old.st_gid)
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise store_fault(exc, f"cannot write {path_text(self.path)}", self.path) from None

    def commit(self) -> None:
        tmp, self.tmp = self.tmp, None
        try:
            if self.data is not None:
                os.rename(tmp, self.path)
            else:
                os.unlink(self.path)
                if tmp is not None:
                    os.unlink(tmp)
        except OSError as exc:
            self.tmp = tmp
            verb = "replace" if self.data is not None else "remove"
            raise store_fault(exc, f"cannot {verb} {path_text(self.path)}", self.path) from None
        try:
            os.fsync(self.dir_fd)
        except OSError as exc:
            raise store_fault(exc, f"cannot save the route store {path_text(self.directory)} to disk",
                              self.directory) from None

    def close(self) -> None:
        if self.tmp is not None:
            _unlink_quietly(self.tmp)
            self.tmp = None
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


def _open_directory(directory: str) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise store_fault(exc, f"cannot open the route store {path_text(directory)}", directory) from None


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):  # a leftover is removed by the next writer
        os.unlink(path)
