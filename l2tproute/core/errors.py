"""Every exception a command ends with, its exit status, and the one wording of each fault of the machine.

A full or read-only disk, a permission, a failing disk, too many open files, a missing or broken
`ip`: none of these is a bug, and none is the caller's input. Each becomes one line that names the
cause, the path or program, and what to do. `describe()` gives that line for any exception, so the
CLI, the hooks and the worker say the same thing; only what is left is an internal error to report.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass

from l2tproute.core import constants as C
from l2tproute.core.text import one_line, path_text


class InputError(ValueError):
    """A value from the command line or a file is wrong (exit status 2)."""

    exit_status = C.EXIT_USAGE


class Refused(InputError):
    """A valid request that would harm the server or another user (exit 2, `--force` passes)."""


class Fault(RuntimeError):
    """The command could not finish as asked: the store, the disk or `ip` (exit status 1)."""

    exit_status = C.EXIT_FAILURE


class StoreError(Fault):
    """The store cannot be read or written as asked (exit status 1)."""


class SystemFault(StoreError):
    """The machine refused a store operation (disk full, read-only, permission, I/O, open files).

    Unlike a broken route file, whose peer is skipped with a warning, this stops the whole
    command: the file is most likely fine, and acting without it would undo its routes.
    """


class IpError(Fault):
    """An `ip` command failed or timed out (exit status 1)."""


def exit_status(exc: BaseException) -> int:
    """What a command that ends with `exc` exits with: 2 for a wrong request, else 1."""
    return getattr(exc, "exit_status", C.EXIT_FAILURE) if isinstance(exc, (InputError, Fault)) else C.EXIT_FAILURE


def describe(exc: BaseException) -> str:
    """The one line a command, a hook or the worker reports when `exc` stops it.

    The CLI prints it after `l2tp-routectl: error: `; a hook or the worker logs it as it is.
    Faults of the machine name their cause and what to do; anything else is a bug to report.
    """
    if isinstance(exc, (InputError, Fault)):
        return one_line(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        name = exc.filename if isinstance(exc.filename, str) else None
        return one_line(os_fault_line(exc, f"cannot use {path_text(name)}" if name else "", name))
    if isinstance(exc, MemoryError):
        return one_line(os_fault_line(OSError(errno.ENOMEM, os.strerror(errno.ENOMEM)), "", None))
    return f"internal error ({type(exc).__name__}): {one_line(exc)}; please report this"


# -- faults of the machine ------------------------------------------------------


@dataclass(frozen=True)
class _Advice:
    cause: str
    #: What to do; `{path}` is the path or its nearest existing parent, `{fs}` the nearest existing directory.
    todo: str
    #: What to do when no path is known (the same as `todo` when that names none).
    general: str = ""


_THEN = ", then try again"
_ADVICE = {
    errno.ENOSPC: _Advice("no space left on the device",
                          "free space on the filesystem of {fs} (see: df -h {fs}; df -i {fs})" + _THEN,
                          "free space on the disk of the route store (see: df -h; df -i)" + _THEN),
    errno.EDQUOT: _Advice("the disk quota is used up",
                          "free space or raise the quota on the filesystem of {fs} (see: quota -v)" + _THEN,
                          "free space or raise the disk quota (see: quota -v)" + _THEN),
    errno.EROFS: _Advice("the filesystem is read-only",
                         "remount the filesystem of {fs} read-write (see: findmnt -T {fs}; dmesg tells why it "
                         "became read-only)" + _THEN,
                         "remount the filesystem read-write (see: findmnt; dmesg tells why it became read-only)"
                         + _THEN),
    errno.EACCES: _Advice("permission denied",
                          "run l2tp-routectl as root (the panel runs it through sudo) and check the owner and mode "
                          "of {path} (see: ls -ld {path})",
                          "run l2tp-routectl as root (the panel runs it through sudo)"),
    errno.EPERM: _Advice("operation not permitted",
                         "run l2tp-routectl as root and check that {path} is not immutable (see: lsattr -d {path})",
                         "run l2tp-routectl as root"),
    errno.EIO: _Advice("input/output error",
                       "the disk or filesystem of {fs} is failing: check dmesg and the disk" + _THEN,
                       "a disk or filesystem is failing: check dmesg and the disks" + _THEN),
    errno.EMFILE: _Advice("too many open files in this process",
                          "raise its open file limit to at least 1024 (ulimit -n; LimitNOFILE= in a systemd unit)"
                          + _THEN),
    errno.ENFILE: _Advice("too many open files on this system",
                          "find what holds so many files open (see: lsof) or raise fs.file-max" + _THEN),
    errno.ENOMEM: _Advice("out of memory", "free memory (see: free -m; dmesg)" + _THEN),
    errno.EAGAIN: _Advice("no new process or thread could be started",
                          "too many processes or too little memory: check ulimit -u and free -m" + _THEN),
    errno.ENOTDIR: _Advice("a part of the path is not a directory",
                           "make each parent of the path a directory (see: ls -ld {path})",
                           "make each parent of the path a directory"),
    errno.EISDIR: _Advice("a directory is where a file belongs",
                          "remove that directory (rmdir {path}, after looking inside); the file is created again",
                          "remove the directory where the file belongs"),
    errno.ELOOP: _Advice("it is a symbolic link, and l2tp-routectl never follows links in the store",
                         "remove the link (rm {path}); the file is created again",
                         "remove the symbolic link"),
    errno.ENOENT: _Advice("it does not exist", "check the path (see: ls -ld {path})", "check the path"),
    errno.ENAMETOOLONG: _Advice("the path is too long", "use a shorter store path (L2TP_ROUTES_DIR)"),
}
def _nearest_existing(path: str, directory: bool = False) -> str:
    """`path` if it exists, else its nearest existing parent: what `ls -ld` can be asked about;
    with `directory`, the nearest existing directory: what `df` or `findmnt` can be asked about."""
    current = os.path.abspath(path)
    while not (os.path.isdir(current) if directory else os.path.lexists(current)):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def os_fault_line(exc: OSError, what: str, path: str | None) -> str:
    """`what` (e.g. `cannot write /etc/...`), then why the system said no and what to do about it.

    `path` is the file or directory concerned, for the advice; None when it is not known.
    """
    code = exc.errno or 0
    name = errno.errorcode.get(code, f"errno {code}")
    advice = _ADVICE.get(code)
    if advice is None:
        cause = (exc.strerror or str(exc)).rstrip(".")
        advice = _Advice(cause[:1].lower() + cause[1:], "check {path} and its filesystem" + _THEN,
                         "check the system log (journalctl -p err; dmesg)" + _THEN)
    if path is not None:
        todo = advice.todo.format(path=path_text(_nearest_existing(path)), fs=path_text(_nearest_existing(path, True)))
    else:
        todo = advice.general or advice.todo
    head = f"{what}: " if what else ""
    return f"{head}{advice.cause} ({name}); {todo}"


def store_fault(exc: OSError, what: str, path: str) -> SystemFault:
    """The store's exception for `exc`, met while doing `what` (which names the path) to `path`."""
    return SystemFault(os_fault_line(exc, what, path))


# -- the ip program ------------------------------------------------------------

_REINSTALL = "apt-get install --reinstall iproute2"


def ip_missing(system_path: str) -> IpError:
    return IpError(f"the ip program of iproute2 is missing (not in PATH nor in {path_text(system_path)}); install it "
                   f"with: apt-get install iproute2{_THEN}")


def ip_not_runnable(program: str) -> IpError:
    return IpError(f"{path_text(program)} cannot be run (not an executable program); reinstall iproute2 with: "
                   f"{_REINSTALL}{_THEN}")


def ip_binary_env(variable: str, program: str) -> IpError:
    return IpError(f"{variable} names {path_text(program)}, which is not an executable program; point it at an ip "
                   f"of iproute2 or unset it")


def ip_cannot_start(program: str, exc: OSError) -> IpError:
    return IpError(os_fault_line(exc, f"cannot start {path_text(program)}", None))


def ip_silent(command: str, program: str, status: int) -> IpError:
    """ip exited non-zero and said nothing: not what the ip of iproute2 does."""
    return IpError(f"{command} exited with status {status} without a message; {path_text(program)} does not behave as "
                   f"the ip of iproute2: check it (try: {path_text(program)} -V) or reinstall it with: {_REINSTALL}")


def ip_killed(command: str, signum: int) -> IpError:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return IpError(f"{command} was killed by {name}; if nobody killed it, the kernel did (see: dmesg, out of "
                   f"memory){_THEN}")


def ip_timeout(command: str, seconds: float) -> IpError:
    return IpError(f"{command} did not finish within {seconds:g} s; ip or the kernel is stuck: look for hung ip "
                   f"processes (ps -C ip) and kernel messages (dmesg){_THEN}")
