"""Network namespaces: which one a process is in, which one a name stands for, entering one.

A namespace is known by the device and inode of its nsfs file (namespaces(7): two processes
are in the same namespace exactly when /proc/PID/ns/net of each gives the same pair). Names
(`ip netns add NAME`, a bind mount at /run/netns/NAME) can be deleted and given again to
another namespace, and the host's namespace has none; the pair needs no name and two live
namespaces never share it. It is written `DEV-INO`: the spool's events (spool.py) and the
OpenVPN session records (transports/openvpn/sessions.py) are keyed by it.

The worker runs an event in the namespace it happened in (`find` and `entered`): its own
(where a hook started it), the host's (PID 1's) or a named one; a namespace with none of
these is not entered, as nothing could tell it from a later one that got the same inode.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from l2tproute.core.errors import InputError

NAMED_DIR = "/run/netns"
HOST = "/proc/1/ns/net"
#: CLONE_NEWNET: setns(2) then joins only a network namespace (systemd's RestrictNamespaces=net).
CLONE_NEWNET = 0x40000000

_ID_RE = re.compile(r"([0-9]{1,10})-([0-9]{1,20})", re.ASCII)


class NamespaceError(InputError):
    """A namespace that cannot be found or entered."""


@dataclass(frozen=True)
class NetnsId:
    """One network namespace: the device and inode of its nsfs file."""

    dev: int
    ino: int

    def __str__(self) -> str:
        return f"{self.dev}-{self.ino}"


def parse_id(text: str) -> NetnsId:
    match = _ID_RE.fullmatch(text)
    if match is None:
        raise InputError(f"invalid namespace {text[:40]}: expected DEV-INO, the device and inode of its nsfs file")
    return NetnsId(int(match.group(1)), int(match.group(2)))


def _self_path() -> str:
    # setns(2) moves one thread; /proc/self would name the main thread's namespace.
    return "/proc/thread-self/ns/net" if os.path.exists("/proc/thread-self") else "/proc/self/ns/net"


def of_path(path: str) -> NetnsId:
    info = os.stat(path)
    return NetnsId(info.st_dev, info.st_ino)


def current() -> NetnsId:
    """The namespace this thread is in."""
    return of_path(_self_path())


def named(name: str) -> NetnsId:
    """The namespace `ip netns` calls `name`; NamespaceError when there is none (a file in
    /run/netns that no namespace is mounted on is on another file system than nsfs)."""
    try:
        found = of_path(os.path.join(NAMED_DIR, name))
    except OSError:
        found = None
    if found is None or found.dev != current().dev:
        raise NamespaceError(f"no network namespace {name[:40]}: expected a name as shown by ip netns list")
    return found


def of_netns(name: str | None) -> NetnsId:
    """The namespace a runner works in: `--netns NAME`, or this thread's own."""
    return named(name) if name else current()


def host() -> NetnsId | None:
    """The host's namespace (PID 1's); None when this process may not look (not root)."""
    try:
        return of_path(HOST)
    except OSError:
        return None


@dataclass
class Found:
    """An open descriptor of a namespace (it cannot go away while open) and what it is called."""

    fd: int
    what: str  # for the log: this worker's, the host's, or the name

    def close(self) -> None:
        os.close(self.fd)


def _candidates() -> Iterator[tuple[str, str]]:
    yield _self_path(), "this worker's"
    yield HOST, "the host's"
    try:
        names = sorted(os.listdir(NAMED_DIR))
    except OSError:
        names = []
    for name in names:
        yield os.path.join(NAMED_DIR, name), name


def find(wanted: NetnsId) -> Found | None:
    """The namespace `wanted`, opened: this worker's own, the host's or a named one, checked on
    the open descriptor itself (so a name deleted and given again meanwhile is not taken)."""
    for path, what in _candidates():
        try:
            if of_path(path) != wanted:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        info = os.fstat(fd)
        if NetnsId(info.st_dev, info.st_ino) == wanted:
            return Found(fd, what)
        os.close(fd)
    return None


def _setns(fd: int) -> None:
    call = getattr(os, "setns", None)  # Python 3.12
    if call is not None:
        call(fd, CLONE_NEWNET)
        return
    import ctypes

    # The interpreter's own symbols hold libc's: ctypes.util.find_library would run
    # ldconfig -p, a process per call in a worker that is timed from the hook's start.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class LostNamespace(BaseException):
    """The worker could not go back to its own namespace: it must stop at once, as anything
    it did next would be done in the wrong one (a BaseException, so nothing swallows it)."""


@contextlib.contextmanager
def entered(found: Found) -> Iterator[None]:
    """This thread (and every process it starts, `ip` included) in `found`'s namespace, and back."""
    info = os.fstat(found.fd)
    if NetnsId(info.st_dev, info.st_ino) == current():
        yield  # already there: where a hook started the worker, always
        return
    home = os.open(_self_path(), os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(found.fd)
        except OSError as exc:
            raise NamespaceError(f"cannot enter the network namespace {found.what}: {exc.strerror or exc}; "
                                 "the worker needs CAP_SYS_ADMIN and setns") from None
        try:
            yield
        finally:
            try:
                _setns(home)
            except OSError as exc:
                raise LostNamespace(f"cannot go back to the worker's network namespace: {exc.strerror or exc}") \
                    from None
    finally:
        os.close(home)
