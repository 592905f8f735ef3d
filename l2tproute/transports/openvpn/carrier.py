"""OpenVPN as a transport: a user is connected when the root worker recorded its client on a tun.

All clients share the server's tun, so a client's routes go via its own VPN address there
(`DST via ADDRESS dev TUN`); those routes are the live session's until it ends, whatever an
apply of the stored lines would prefer (first come wins between the VPNs).
"""

from __future__ import annotations

from l2tproute.core.carrier import Carrier, Hop
from l2tproute.core.kernel import Links
from l2tproute.core.model import IPv4Address
from l2tproute.system.iproute2 import Runner
from l2tproute.system.kernel_reads import addrs_of
from l2tproute.transports.openvpn.sessions import (
    Session,
    SessionRecords,
    check_sessions,
    live_next_hops,
)

NAME = "openvpn"


def carrier(session: Session) -> Carrier:
    return Carrier(session.peer, session.tun, NAME, session.address, session.address6, session.since)


class OpenVpnTransport:
    name = NAME

    def __init__(self, runner: Runner, run_dir: str):
        self.runner = runner
        self.run_dir = run_dir

    @property
    def netns(self) -> str | None:
        """The namespace whose sessions these are: the runner's --netns NAME, or None for this thread's own."""
        return getattr(self.runner, "netns", None)

    def _records(self) -> SessionRecords:
        return SessionRecords(self.run_dir, netns=self.netns)

    def carriers(self, links: Links) -> list[Carrier]:
        return [carrier(s) for s in self._records().all() if s.tun in links.names]

    def carriers_of(self, peer: IPv4Address) -> list[Carrier]:
        """This user's recorded sessions whose tun exists; only their tuns are asked about."""
        mine = [s for s in self._records().all() if s.peer == peer]
        present = {tun: bool(addrs_of(self.runner, tun)) for tun in {s.tun for s in mine}}
        return [carrier(s) for s in mine if present[s.tun]]

    def live_hops(self, link_names: set[str]) -> set[Hop]:
        return live_next_hops(self.run_dir, link_names, self.netns)

    def is_older_of(self, hop: Hop, of: Carrier) -> bool:
        return any(s.peer == of.peer and hop in s.next_hops for s in self._records().all())

    def check(self, link_names: set[str]) -> list[str]:
        """Sessions OpenVPN no longer has lose their record (so their routes are nobody's and go);
        clients the worker could not ask OpenVPN about are recorded once it lists them."""
        result = check_sessions(self.run_dir, link_names, self.netns)
        warnings = [f"the OpenVPN session of peer {s.peer} at {s.address} on {s.tun} ended without a "
                    "client-disconnect; its routes are removed" for s in result.ended]
        if result.waiting:
            warnings.append(f"{len(result.waiting)} OpenVPN clients wait to be checked: OpenVPN does not answer "
                            f"at {self.run_dir}/openvpn.sock (another program may hold its one management "
                            "connection)")
        return warnings
