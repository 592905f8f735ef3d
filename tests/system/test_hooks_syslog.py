"""The hooks' syslog client: delivers like glibc, but never waits for good on a stalled daemon."""

from __future__ import annotations

import re
import socket
import syslog

import pytest

from l2tproute.core import constants as C
from l2tproute.system.syslogger import Syslog, format_message

LINE = re.compile(rb"^<(\d+)>(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d "
                  rb"l2tp-routectl\[(\d+)\]: (.*)$", re.S)


@pytest.fixture
def daemon(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "log"
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def fill(path: str) -> int:
    """Queue datagrams until the kernel refuses more: a daemon that stopped reading."""
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler.connect(path)
    filler.setblocking(False)
    count = 0
    try:
        while count < 10000:
            filler.send(b"x")
            count += 1
    except BlockingIOError:
        return count
    finally:
        filler.close()
    raise AssertionError("the queue never filled")


def test_a_message_has_the_glibc_format_with_facility_daemon(daemon):
    sock, path = daemon
    log = Syslog(C.SYSLOG_IDENT, path=path)
    log(syslog.LOG_WARNING, "ip-up ppp1 peer 10.255.10.1: t\u00e9st")
    match = LINE.match(sock.recv(65536))
    assert match, "not in syslog format"
    assert int(match.group(1)) == syslog.LOG_DAEMON | syslog.LOG_WARNING
    assert match.group(4).decode() == "ip-up ppp1 peer 10.255.10.1: t\u00e9st"
    assert log.dropped == 0


def test_without_a_syslog_daemon_messages_are_dropped_quietly(tmp_path):
    log = Syslog(C.SYSLOG_IDENT, path=str(tmp_path / "nobody-listens"))
    log(syslog.LOG_ERR, "lost")
    log(syslog.LOG_ERR, "lost too")
    assert log.dropped == 2


def test_a_full_queue_spends_the_wait_budget_once_then_drops(daemon):
    sock, path = daemon
    queued = fill(path)
    log = Syslog(C.SYSLOG_IDENT, path=path, budget=0.2)
    for number in range(3):
        log(syslog.LOG_INFO, f"message {number}")
    assert log.dropped == 3 and log.budget == 0
    received = []
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        while True:
            received.append(sock.recv(65536))
    assert received == [b"x"] * queued


def test_a_message_waits_for_room_while_the_budget_lasts(daemon):
    sock, path = daemon
    queued = fill(path)
    log = Syslog(C.SYSLOG_IDENT, path=path, budget=30)
    sock.recv(65536)  # the daemon takes one: room for exactly one more
    log(syslog.LOG_INFO, "fits")
    assert log.dropped == 0
    received = [sock.recv(65536) for _ in range(queued)]
    assert received[:-1] == [b"x"] * (queued - 1) and LINE.match(received[-1]).group(4) == b"fits"


def test_a_restarted_daemon_gets_the_next_message(tmp_path):
    path = tmp_path / "log"
    first = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    first.bind(str(path))
    log = Syslog(C.SYSLOG_IDENT, path=str(path))
    log(syslog.LOG_INFO, "before")
    assert LINE.match(first.recv(65536)).group(4) == b"before"
    first.close()
    path.unlink()
    second = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    second.bind(str(path))
    second.settimeout(5)
    log(syslog.LOG_INFO, "after")
    assert LINE.match(second.recv(65536)).group(4) == b"after"
    assert log.dropped == 0
    second.close()


def test_a_stream_syslog_socket_gets_nul_terminated_messages(tmp_path):
    path = tmp_path / "log"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    log = Syslog(C.SYSLOG_IDENT, path=str(path))
    log(syslog.LOG_INFO, "one")
    log(syslog.LOG_INFO, "two")
    conn, _ = server.accept()
    conn.settimeout(5)
    data = b""
    while data.count(b"\0") < 2:
        data += conn.recv(65536)
    assert [LINE.match(part).group(4) for part in data.split(b"\0")[:2]] == [b"one", b"two"]
    conn.close()
    server.close()


def test_messages_are_cut_at_8_kib():
    assert len(format_message(syslog.LOG_INFO, C.SYSLOG_IDENT, 1, "x" * 20000)) == 8192
