"""OpenVPN's management socket: who is connected, as OpenVPN itself says it.

The server config has `management RUN_DIR/openvpn.sock unix` and `management-client-user
root` (the installer puts them on its command line). The root worker checks every connecting
client there before it routes anything, and the timer's apply checks recorded sessions.
OpenVPN serves one management client at a time: while another program holds the socket, a
read waits or is refused, so reads are tried again until a deadline.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from dataclasses import dataclass

from l2tproute.core.model import IPv4Address, IPv6Address
from l2tproute.system.settings import setting

#: OpenVPN's management socket (`management RUN_DIR/openvpn.sock unix` and
#: `management-client-user root` in the server config): the one source of who is connected.
MANAGEMENT_SOCKET = "openvpn.sock"
#: How long the worker waits for OpenVPN to list a connecting client (or drop a leaving one):
#: the hook spools its event before OpenVPN has taken the client in.
CLIENT_WAIT = 10.0
CLIENT_WAIT_ENV = "L2TP_OPENVPN_CLIENT_WAIT"
MANAGEMENT_TIMEOUT = 5.0
MAX_MANAGEMENT_REPLY = 16 << 20


@dataclass(frozen=True)
class VpnClient:
    """A client as OpenVPN's `status 3` lists it."""

    user: str
    address: IPv4Address | None
    address6: IPv6Address | None = None


class ManagementError(RuntimeError):
    """OpenVPN's management socket cannot be asked. `busy`: it is there but another program holds
    it (no answer in time, or its backlog full), so asking again can help; otherwise no server
    listens there (it stopped), and asking again cannot."""

    def __init__(self, message: str, busy: bool = False):
        super().__init__(message)
        self.busy = busy


def read_clients(path: str, timeout: float = MANAGEMENT_TIMEOUT) -> list[VpnClient]:
    """The clients OpenVPN has now, from its management socket."""
    data = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"status 3\n")
            while b"\nEND" not in data:
                chunk = sock.recv(65536)
                if not chunk or len(data) > MAX_MANAGEMENT_REPLY:
                    break
                data += chunk
            with contextlib.suppress(OSError):
                sock.sendall(b"quit\n")
    except OSError as exc:
        raise ManagementError(f"cannot ask OpenVPN at {path}: {exc.strerror or exc}; the server config needs "
                              f"management {path} unix",
                              busy=isinstance(exc, (socket.timeout, BlockingIOError))) from None
    if b"\nEND" not in data:
        raise ManagementError(f"OpenVPN at {path} gave no complete status")
    return parse_status(data.decode("utf-8", "replace"))


def parse_status(text: str) -> list[VpnClient]:
    """CLIENT_LIST rows of `status 3` (tab separated): common name, real address, virtual
    address, virtual IPv6 address, bytes in, bytes out, since, since (time_t), username, ..."""
    found = []
    for line in text.splitlines():
        fields = line.rstrip("\r").split("\t")
        if fields[0] != "CLIENT_LIST" or len(fields) < 10:
            continue
        user = fields[9] if fields[9] and fields[9] != "UNDEF" else fields[1]
        try:
            address: IPv4Address | None = ipaddress.IPv4Address(fields[3])
        except ValueError:
            address = None  # not yet given one
        try:
            address6: IPv6Address | None = ipaddress.IPv6Address(fields[4])
        except ValueError:
            address6 = None  # no server-ipv6
        found.append(VpnClient(user, address, address6))
    return found


class Clients:
    """OpenVPN's clients, read again (until a deadline) while an event is not yet visible there.

    OpenVPN serves one management client at a time: while another program holds the socket, a
    read waits or is refused, so it is tried again until the deadline, then ManagementError; a
    socket nobody listens on (the server stopped) is that error at once."""

    def __init__(self, path: str, wait: float = CLIENT_WAIT):
        self.path = path
        self.deadline = time.monotonic() + wait
        self.known: list[VpnClient] | None = None

    def _read(self) -> list[VpnClient]:
        while True:
            left = self.deadline - time.monotonic()
            try:
                self.known = read_clients(self.path, timeout=min(MANAGEMENT_TIMEOUT, max(left, 1.0)))
                return self.known
            except ManagementError as exc:
                if not exc.busy or time.monotonic() >= self.deadline:
                    raise
                time.sleep(0.2)

    def holding(self, address: IPv4Address, present: bool) -> list[VpnClient]:
        """The clients with `address`, once that is non-empty (present) or empty (not present), or at
        the deadline; never decided on a list read before this call began (a storm's pass is long)."""
        clients, fresh = (self.known, False) if self.known is not None else (self._read(), True)
        while True:
            mine = [c for c in clients if c.address == address]
            if bool(mine) == present or (fresh and time.monotonic() >= self.deadline):
                return mine
            if fresh:
                time.sleep(0.2)
            clients, fresh = self._read(), True


def client_wait(environ=os.environ) -> float:
    """CLIENT_WAIT; L2TP_OPENVPN_CLIENT_WAIT shortens it for tests, never under sudo."""
    text = setting(CLIENT_WAIT_ENV, "", environ)
    if not text.replace(".", "", 1).isdigit():
        return CLIENT_WAIT
    return min(float(text), CLIENT_WAIT)
