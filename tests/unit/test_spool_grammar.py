"""The spool's event names: the sh writer (lib/l2tproute.sh) and the Python writer and reader
(system/spool.py) are one grammar, and a name says which network namespace it happened in."""

from __future__ import annotations

import subprocess

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from l2tproute.core.model import InputError, parse_peer
from l2tproute.system import netns
from l2tproute.system.spool import DOWN, UP, VPN_DOWN, VPN_UP, Pending, Spool, event_name, parse_name, parse_vpn_name

LIB = REPO / "lib" / "l2tproute.sh"


def sh_name(*fields: str) -> str:
    """What l2t_event_name builds from these fields."""
    script = '. "$0"; l2t_event_name "$@"; printf %s "$l2t_name"'
    result = subprocess.run(["sh", "-c", script, str(LIB), *fields], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout


def sh_netns() -> str:
    result = subprocess.run(["sh", "-c", '. "$0"; l2t_get_netns; printf %s "$l2t_netns"', str(LIB)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result
    return result.stdout


def test_the_sh_front_names_this_namespace_as_python_does():
    assert sh_netns() == str(netns.current())
    assert netns.parse_id(sh_netns()) == netns.current()


HERE = netns.NetnsId(4, 4026531840)
OTHER = netns.NetnsId(4, 4026532999)


@settings(max_examples=40, deadline=None)
@given(ns=st.builds(netns.NetnsId, st.integers(0, 2**32 - 1), st.integers(1, 2**64 - 1)),
       iface=st.sampled_from(["ppp0", "ppp123456789012", "l2tp.7", "a_b-c+d@e"]),
       seq=st.integers(1, 10**18 - 1), direction=st.sampled_from([UP, DOWN]),
       peer=st.sampled_from(["10.255.10.1", "100.64.0.1", "192.0.2.254"]))
def test_a_link_event_written_in_sh_reads_back_in_python(ns, iface, seq, direction, peer):
    name = sh_name(str(ns), iface, str(seq), direction, peer)
    assert name == event_name(ns, iface, seq, direction, peer)
    event = parse_name(name)
    assert (event.netns, event.iface, event.seq, event.direction, str(event.peer)) == (ns, iface, seq, direction,
                                                                                         peer)


@pytest.mark.parametrize("fields", [
    ("tun0", "1796025175673307835", VPN_UP, "10.10.30.2", "10.255.10.1"),
    ("tun0", "17", VPN_UP, "10.10.30.2", "10.255.10.1", "fd00:10:30::1000"),
    ("tun9", "17", VPN_DOWN, "10.10.30.2"),
])
def test_an_openvpn_event_written_in_sh_reads_back_in_python(fields):
    name = sh_name(str(OTHER), *fields)
    tun, seq, kind, *rest = fields
    assert name == event_name(OTHER, tun, int(seq), kind, *rest)
    event = parse_vpn_name(name)
    assert (event.netns, event.tun, event.seq, event.direction, str(event.address)) == (OTHER, tun, int(seq), kind,
                                                                                        rest[0])
    assert event.peer == (parse_peer(rest[1]) if kind == VPN_UP else None)


@pytest.mark.parametrize("name", [
    "ppp0,1,up,10.255.10.1",  # the version before: no namespace
    "tun0,17,vpn-down,10.10.30.2",
    "x-1,ppp0,1,up,10.255.10.1", "4-,ppp0,1,up,10.255.10.1", "-4,ppp0,1,up,10.255.10.1",
    "4-4026531840-1,ppp0,1,up,10.255.10.1", "4_4026531840,ppp0,1,up,10.255.10.1",
])
def test_a_name_without_a_namespace_is_no_event(name):
    with pytest.raises(InputError):
        (parse_vpn_name if ",vpn-" in name else parse_name)(name)


def test_the_spool_keeps_each_namespace_apart_in_order(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    names = [event_name(OTHER, "ppp0", 2, DOWN, "10.255.10.1"), event_name(HERE, "ppp0", 1, UP, "10.255.10.1"),
             event_name(OTHER, "ppp0", 1, UP, "10.255.10.1"), event_name(HERE, "tun0", 5, VPN_DOWN, "10.10.30.2"),
             "ppp0,3,up,10.255.10.1"]
    for name in names:
        (spool / name).touch()
    pending = Spool(str(tmp_path)).pending()
    assert len(pending.rejected) == 1 and not (spool / names[-1]).exists()
    parts = pending.by_namespace()
    assert [part.netns for part in parts] == sorted([HERE, OTHER], key=str)
    by_ns = {part.netns: part for part in parts}
    assert [e.name for e in by_ns[OTHER].events] == [names[2], names[0]]
    assert [e.name for e in by_ns[HERE].events] == [names[1]] and [e.name for e in by_ns[HERE].vpn] == [names[3]]
    assert Pending([], []).by_namespace() == []
