"""Validation at the edge: what is refused, and the error says what would be right."""

import pytest

from l2tproute.core.model import InputError, parse_destination, parse_device, parse_gateway, parse_peer


@pytest.mark.parametrize("text", ["10.255.10.1", "192.168.0.254", "1.2.3.4"])
def test_plain_unicast_peers_are_accepted(text):
    assert str(parse_peer(text)) == text


@pytest.mark.parametrize("text, expect", [
    ("010.255.10.1", "leading zeros"), ("10.255.10.256", "0-255"), ("10.255.10", "dotted IPv4"),
    ("::1", "IPv6"), ("10.255.10.1/32", "an address, not a network"), ("0.0.0.0", "unicast"),
    ("127.0.0.1", "unicast"), ("224.0.0.1", "unicast"), ("255.255.255.255", "unicast"),
    ("../../etc/passwd", "dotted IPv4"), ("10.255.10.1\n", "dotted IPv4"), (" 10.255.10.1", "dotted IPv4"),
    ("\u0661\u0660.1.1.1", "dotted IPv4"), ("", "dotted IPv4"),
])
def test_a_bad_peer_is_refused_with_a_hint(text, expect):
    with pytest.raises(InputError) as err:
        parse_peer(text)
    message = str(err.value)
    assert expect in message and "\n" not in message


def test_destination_with_host_bits_names_the_network_meant():
    with pytest.raises(InputError, match=r"did you mean 192\.168\.1\.0/24\?"):
        parse_destination("192.168.1.5/24")


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/024", "10.0.0.0/-1", "10.0.0.0/8 "])
def test_destination_prefix_must_be_0_to_32(text):
    with pytest.raises(InputError):
        parse_destination(text)


def test_destination_without_prefix_suggests_a_host_route():
    with pytest.raises(InputError, match=r"did you mean 10\.0\.0\.5/32"):
        parse_destination("10.0.0.5")


def test_ipv6_destinations_must_be_canonical_networks():
    assert str(parse_destination("2001:db8:100::/48")) == "2001:db8:100::/48"
    with pytest.raises(InputError, match="host bits"):
        parse_destination("2001:db8:100::1/48")
    with pytest.raises(InputError, match="canonical"):
        parse_destination("2001:0db8:100::/48")


@pytest.mark.parametrize("text", ["ppp0", "eth0.100", "wg-office", "a" * 15])
def test_interface_names_linux_accepts(text):
    assert parse_device(text) == text


@pytest.mark.parametrize("text", ["", "a" * 16, "ppp/0", "ppp:0", "ppp 0", ".", "..", "ppp0\n", "pp#p", "p'p"])
def test_interface_names_that_are_not_one_safe_token_are_refused(text):
    with pytest.raises(InputError, match="interface name"):
        parse_device(text)


def test_gateway_must_be_ipv4():
    with pytest.raises(InputError, match="gateway"):
        parse_gateway("fe80::1")
