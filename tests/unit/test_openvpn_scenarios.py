"""Users connected over OpenVPN, against the in-memory kernel (tests/netns/test_memkernel_parity.py
holds it to the real one): their lines go via the client's address on the tun, for every command."""

from __future__ import annotations

from support import scenarios as s
from support.scenarios import PEER1, PEER2, World


def test_a_user_over_openvpn_gets_its_lines_via_its_client_for_every_command(tmp_path):
    w = World.in_memory(tmp_path)
    s.openvpn_session_follows_the_user(w)
    first = w.steps["apply"].value
    assert first.ok
    assert sorted((str(c.peer), c.link, c.shared) for c in first.connected) == [
        (PEER1, "tun0", True), (PEER2, "ppp1", False)]
    assert sorted((r.line, r.link, r.shared) for r in first.installed) == [
        ("10.1.0.0/24 via 10.255.10.1", "tun0", True), ("10.2.0.0/24 via 10.255.10.1 metric 5", "tun0", True),
        ("10.3.0.0/24 via 10.255.10.2", "ppp1", False)]
    # PEER2 is on L2TP too and L2TP came first: its OpenVPN session leaves the slot to it.
    assert [(r.line, r.shared, r.detail) for r in first.blocked] == [
        ("10.3.0.0/24 via 10.255.10.2", True, "our route via 10.255.10.2 dev ppp1")]
    assert [r.text for r in first.removed] == ["10.8.0.0/24 dev tun0"]
    after = {(r["dst"], r.get("gateway"), r["dev"]) for r in w.steps["after_apply"]["routes4"]
             if r.get("protocol") == "157"}
    assert after == {("10.1.0.0/24", "10.10.30.2", "tun0"), ("10.2.0.0/24", "10.10.30.2", "tun0"),
                     ("10.3.0.0/24", PEER2, "ppp1")}  # 10.9.0.0/24 has its own dev: not over OpenVPN
    assert not [r for r in w.steps["after_apply"]["routes6"] if r.get("protocol") == "157"]
    again = w.steps["again"].value
    assert (again.installed, again.removed, len(again.unchanged)) == ([], [], 3)

    added = w.steps["add"].value
    assert added.installed and added.shared is not None and str(added.shared.via4) == "10.10.30.2"
    assert ("10.4.0.0/24", "10.10.30.2", "tun0", "main") in w.tagged()
    deleted = w.steps["del"].value
    assert deleted.kernel_removed == ["10.1.0.0/24 dev tun0"]
    peer = w.steps["apply_peer"].value
    assert [(r.line, r.shared) for r in peer.installed] == [("10.2.0.0/24 via 10.255.10.1 metric 5", True)]
    assert w.tagged() == {("10.2.0.0/24", "10.10.30.2", "tun0", "main"), ("10.4.0.0/24", "10.10.30.2", "tun0", "main"),
                          ("10.3.0.0/24", PEER2, "ppp1", "main")}
    status = w.steps["status"].value
    [entry] = status.peers
    assert [(str(x.link), str(x.via4)) for x in entry.shared] == [("tun0", "10.10.30.2")]
