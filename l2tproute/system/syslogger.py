"""A syslog client for the pppd hooks that cannot hold pppd up.

glibc's syslog(3) (and so Python's `syslog` module) sends on a blocking socket: when
the daemon behind /dev/log stops reading (journald stalled or restarting, rsyslog
with a full queue; a datagram socket's queue is only net.unix.max_dgram_qlen = 10
messages deep), the sender waits forever, and a signal only makes it retry. A hook
stuck there keeps the user's session waiting. This client sends without blocking
and waits for room in the queue only for a bounded total time per process; after
that, a message that finds the queue full is dropped (and counted).

Messages have the format glibc writes to /dev/log, `<PRI>Mmm dd hh:mm:ss IDENT[PID]: TEXT`,
so journald files them under the identifier (`journalctl -t IDENT`) and rsyslog as usual.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from typing import Callable

from l2tproute.core.constants import SYSLOG_IDENT

DEV_LOG = "/dev/log"
LOG_DAEMON = 3 << 3
#: Total seconds one process may spend waiting for room at /dev/log, over all its messages.
WAIT_BUDGET = 2.0
#: The kernel and the daemons accept more, but a log line longer than this is a bug.
MAX_MESSAGE_BYTES = 8192

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_message(priority: int, ident: str, pid: int, text: str, facility: int = LOG_DAEMON,
                   now: time.struct_time | None = None) -> bytes:
    """One syslog datagram, as glibc formats it (English month, whatever the locale)."""
    now = now or time.localtime()
    stamp = f"{_MONTHS[now.tm_mon - 1]} {now.tm_mday:2d} {now.tm_hour:02d}:{now.tm_min:02d}:{now.tm_sec:02d}"
    data = f"<{facility | (priority & 7)}>{stamp} {ident}[{pid}]: {text}".encode("utf-8", "replace")
    return data[:MAX_MESSAGE_BYTES]


class Syslog:
    """`log(priority, text)` to /dev/log; never raises, never waits more than its budget in total."""

    def __init__(self, ident: str, path: str = DEV_LOG, facility: int = LOG_DAEMON,
                 budget: float = WAIT_BUDGET, clock: Callable[[], float] = time.monotonic):
        self.ident = ident
        self.path = path
        self.facility = facility
        self.budget = budget
        self.clock = clock
        self.dropped = 0
        self._sock: socket.socket | None = None
        self._stream = False

    def __call__(self, priority: int, text: str) -> None:
        data = format_message(priority, self.ident, os.getpid(), text, self.facility)
        for _attempt in range(2):  # a daemon that restarted leaves a dead socket: reconnect once
            sock = self._sock or self._connect()
            if sock is None:
                self.dropped += 1  # no syslog daemon: nowhere to say it
                return
            try:
                if self._send(sock, data + (b"\0" if self._stream else b"")):
                    return
                self.dropped += 1
                return
            except OSError:
                self.close()
        self.dropped += 1

    def _connect(self) -> socket.socket | None:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EPROTOTYPE:
                    continue  # a syslog daemon that listens on a stream socket
                return None
            self._sock, self._stream = sock, kind == socket.SOCK_STREAM
            return sock
        return None

    def _send(self, sock: socket.socket, data: bytes) -> bool:
        """True when sent; False when the queue stayed full for the rest of the budget."""
        while True:
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return True
            if sent and self._stream:
                data = data[sent:]
            if self.budget <= 0:
                return False
            start = self.clock()
            _, writable, _ = select.select([], [sock], [], self.budget)
            self.budget -= self.clock() - start
            if not writable:
                self.budget = 0
                return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


#: log(priority, message): syslog's signature. Tests pass a list's recorder.
Log = Callable[[int, str], None]


def syslog_log(ident: str = SYSLOG_IDENT) -> Log:
    """Log to syslog (journald reads it): `journalctl -t l2tp-routectl`.

    Not the `syslog` module: glibc's syslog(3) blocks for good when the daemon stops
    reading /dev/log, and the worker with it (see syslogger.py).
    """
    return Syslog(ident)


def quiet_log() -> Log:
    """syslog, or nowhere when even that cannot be opened: a hook never fails for its log."""
    try:
        return syslog_log()
    except Exception:
        return lambda priority, message: None
