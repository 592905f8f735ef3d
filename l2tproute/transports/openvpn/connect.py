"""OpenVPN's client-connect for a burst of clients: one unprivileged Python serves them all.

Debian's openvpn@.service has TasksMax=10, and every hook and every process a hook leaves
behind counts: a Python per client would fail to fork in a storm, and cost a start each.
So bin/l2tp-routes-openvpn (POSIX sh, as the server's user and group) answers each
client-connect with the deferred form, writes one record into RUN_DIR/openvpn-connect and
starts this connector unless one holds the lock there (`flock -n`, the descriptor handed
over as --lock-fd, as the root worker's). The connector serves every record
(openvpnhook.answer: iroutes, vpn-up event, the answer in the deferred file), waits a
little for more, lets go of the lock and looks once more: a record queued while it was
finishing found the lock taken and started nobody, so this connector takes it.

A record is `.SEQ-PID` renamed to `SEQ-PID` (so never seen half written), holding
NAME=VALUE fields each ended by a NUL (no value can contain one): OpenVPN's values in
openvpnhook.CLIENT_NAMES and `config`, the client's dynamic config file. The directory is
writable by the server's group (the panel's www-data), so a record counts only when this
uid wrote it, with each known name once, and every value is then parsed as OpenVPN's own;
the two files it names are written only when they are regular files of this uid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import sys
import syslog
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from l2tproute.core.errors import describe
from l2tproute.core.model import InputError
from l2tproute.system.spool import run_dir_from_environment
from l2tproute.system.syslogger import Log, quiet_log
from l2tproute.transports.openvpn.hook import CLIENT_NAMES, CONFIG, Lookup, answer, finish

QUEUE = "openvpn-connect"
#: The hook's lock, taken with flock(1) there (bin/l2tp-routes-openvpn names it too).
LOCK = "connect.lock"
#: How long the connector waits for the next record before it lets go: a storm's hooks come
#: one after another (OpenVPN runs them in turn), so one connector serves the whole storm.
LINGER = 2.0
POLL = 0.02
#: chap-secrets and route files are read once per burst, but again after this many seconds,
#: so an edit reaches the clients of a long storm.
FRESH = 10.0
MAX_RECORD = 64 << 10
RECORD_FIELDS = (*CLIENT_NAMES, CONFIG)

_NAME_RE = re.compile(r"([0-9]{1,20})-([0-9]{1,10})", re.ASCII)


@dataclass(frozen=True)
class Record:
    """One queued client-connect: OpenVPN's values, not yet parsed (openvpnhook.parse_client does)."""

    name: str
    values: Mapping[str, str]

    @property
    def config(self) -> str:
        return self.values[CONFIG]

    @property
    def deferred(self) -> str:
        return self.values["client_connect_deferred_file"]


def parse_record(name: str, data: bytes) -> Record:
    """The fields of a record file; InputError says what is wrong with it."""
    if not _NAME_RE.fullmatch(name):
        raise InputError(f"queue entry {name[:80]} is not named SEQ-PID")
    if len(data) > MAX_RECORD or not data.endswith(b"\0"):
        raise InputError(f"queue entry {name} is not a list of NAME=VALUE fields each ended by a NUL")
    values: dict[str, str] = {}
    for item in data[:-1].split(b"\0"):
        key, equals, value = os.fsdecode(item).partition("=")
        if not equals or key not in RECORD_FIELDS or key in values:
            raise InputError(f"queue entry {name} has an unknown or repeated field {key[:40]}; expected each of "
                             f"{', '.join(RECORD_FIELDS)} once")
        values[key] = value
    missing = [key for key in RECORD_FIELDS if key not in values]
    if missing:
        raise InputError(f"queue entry {name} lacks {', '.join(missing)}")
    if not values[CONFIG] or not values["client_connect_deferred_file"]:
        raise InputError(f"queue entry {name} names no config file or no deferred file")
    return Record(name, values)


def _order(name: str) -> tuple[int, int]:
    match = _NAME_RE.fullmatch(name)
    return (int(match.group(1)), int(match.group(2))) if match else (-1, -1)


class Queue:
    """RUN_DIR/openvpn-connect: the records the sh hook left, in the order it wrote them."""

    def __init__(self, directory: str):
        self.directory = directory
        self.stuck: set[str] = set()  # rejected, and not ours to remove (the directory is sticky)

    def names(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        # Hidden names are records being written and the hook's kick flag; *.lock its locks.
        found = [n for n in names if not n.startswith(".") and not n.endswith(".lock") and n not in self.stuck]
        return sorted(found, key=_order)

    def read(self, name: str) -> Record:
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise InputError(f"queue entry {name[:80]} cannot be read: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                raise InputError(f"queue entry {name[:80]} is not a regular file written by uid {os.geteuid()}, "
                                 "the server hook")
            data = os.read(fd, MAX_RECORD + 1)
        finally:
            os.close(fd)
        return parse_record(name, data)

    def remove(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.directory, name))
        except FileNotFoundError:
            pass
        except OSError:
            self.stuck.add(name)

    def is_empty(self) -> bool:
        return not self.names()


def serve_pending(queue: Queue, lookup: Lookup, run_dir: str, log: Log) -> int:
    """Answer every record queued now; how many there were."""
    names = queue.names()
    for name in names:
        try:
            record = queue.read(name)
        except InputError as exc:
            log(syslog.LOG_ERR, f"openvpn connector: {describe(exc)}; removed")
            queue.remove(name)
            continue
        ok = answer(record.config, record.values, lookup, run_dir, log)
        finish(record.deferred, ok, log)
        queue.remove(name)
    return len(names)


def drain(queue: Queue, environ: Mapping[str, str], log: Log, linger: float = LINGER) -> int:
    """Serve records until none has come for `linger` seconds."""
    run_dir = run_dir_from_environment(environ)
    lookup = Lookup.from_environment(environ)
    served = 0
    quiet_since = time.monotonic()
    while True:
        if time.monotonic() - lookup.born > FRESH:
            lookup = Lookup.from_environment(environ)
        count = serve_pending(queue, lookup, run_dir, log)
        served += count
        now = time.monotonic()
        if count:
            quiet_since = now
        elif now - quiet_since >= linger:
            return served
        else:
            time.sleep(POLL)


def _lock(fd: int) -> bool:
    # fcntl, not filelock: the sh front took this lock with flock(1) on the same descriptor.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def run(queue: Queue, held_fd: int, environ: Mapping[str, str], log: Log, linger: float = LINGER) -> int:
    """Drain while holding the connector lock, then look again after letting it go."""
    served = 0
    try:
        while True:
            served += drain(queue, environ, log, linger)
            fcntl.flock(held_fd, fcntl.LOCK_UN)
            if queue.is_empty() or not _lock(held_fd):
                return served
    finally:
        with contextlib.suppress(OSError):
            os.close(held_fd)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """`l2tp-routes-openvpn-connect --lock-fd N`; always 0, everything it has to say goes to syslog."""
    argv = list(sys.argv[1:] if argv is None else argv)
    log = quiet_log()
    if len(argv) != 2 or argv[0] != "--lock-fd" or not argv[1].isdigit():
        log(syslog.LOG_ERR, "openvpn connector: unknown arguments; expected --lock-fd N")
        return 0
    queue = Queue(os.path.join(run_dir_from_environment(environ), QUEUE))
    try:
        served = run(queue, int(argv[1]), environ, log)
        log(syslog.LOG_INFO, f"openvpn connector: {served} client-connects served")
    except BaseException as exc:  # noqa: B902 - logged, never a traceback on a closed stdout
        log(syslog.LOG_ERR, f"openvpn connector: {describe(exc)}")
    return 0
