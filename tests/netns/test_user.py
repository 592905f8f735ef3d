"""`--user NAME`: chap-secrets read as pppd reads it, and accepted wherever --peer is."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import routectl_argv
from hypothesis import given, settings
from hypothesis import strategies as st

from l2tproute.core.model import InputError
from l2tproute.system.chap import SecretsError, entries, resolve_user, words

SECRETS = b"""# Secrets for authentication using CHAP
# client\tserver\tsecret\t\t\tIP addresses
alice\t*\t"s3cret"\t10.255.10.2
"bob smith"\tl2tpd\t'pa ss # not a comment'\t10.255.10.3 -- mtu 1400
carol * x *
dave * x -
eve * x
frank * x 10.255.10.5 10.255.10.6
gina l2tpd x 10.255.10.7
gina other x 10.255.10.7/32
hank * x 10.255.10.0/24
ivan * x vpn.example.net
j\\sdoe * x 10.255.10.8#trailing comment
kim * x \\
    10.255.10.9
Alice * x 10.255.10.10
"""


def resolve(name: str):
    return resolve_user(name, "/test/chap-secrets", SECRETS)


# -- pppd's reading rules ------------------------------------------------------------

def test_words_follow_pppd_quotes_escapes_and_comments():
    got = [(w.text, w.starts_line) for w in words(b'a "b c"d \'e#f\' g\\ h i#j k\nl \\x41\\101\\s\\n\\q')]
    assert got == [(b"a", True), (b"b c", False), (b"d", False), (b"e#f", False), (b"g h", False), (b"i", False),
                   (b"l", True), (b"AA \nq", False)]


def test_backslash_newline_joins_lines_and_a_comment_ends_at_the_newline():
    got = [(w.text, w.starts_line) for w in words(b"a \\\n b # c \\\nd\n")]
    assert got == [(b"a", True), (b"b", False), (b"d", True)]


def test_an_entry_needs_client_server_and_secret_on_one_line():
    found = entries(b"lonely *\nalice * s 10.255.10.2 -- ms-dns 10.0.0.1\n")
    assert [(e.client, e.server, e.addresses, e.line) for e in found] == [(b"alice", b"*", (b"10.255.10.2",), 2)]


def test_entries_of_a_typical_file():
    found = {e.client: e.addresses for e in entries(SECRETS)}
    assert found[b"alice"] == (b"10.255.10.2",)
    assert found[b"bob smith"] == (b"10.255.10.3",)  # "--" starts options, not addresses
    assert found[b"j doe"] == (b"10.255.10.8",)
    assert found[b"kim"] == (b"10.255.10.9",)


@pytest.mark.parametrize("name, peer", [
    ("alice", "10.255.10.2"),
    ("bob smith", "10.255.10.3"),
    ("gina", "10.255.10.7"),  # two lines, one address (a /32 is one address)
    ("j doe", "10.255.10.8"),
    ("kim", "10.255.10.9"),
    ("Alice", "10.255.10.10"),  # names are case-sensitive, as in pppd
])
def test_a_user_resolves_to_its_one_address(name, peer):
    assert resolve(name) == ipaddress.IPv4Address(peer)


@pytest.mark.parametrize("name, message", [
    ("nobody", "user nobody is not in /test/chap-secrets"),
    ("ALICE", "is not in"),
    ("carol", "may use any address (* in /test/chap-secrets line 5)"),
    ("dave", "has no fixed IP address"),
    ("eve", "has no fixed IP address"),
    ("frank", "resolves to more than one IP (10.255.10.5, 10.255.10.6)"),
    ("hank", "a whole network (10.255.10.0/24"),
    ("ivan", "not a plain IPv4 address"),
    ("", "invalid user"),
    ("a\0b", "invalid user"),
    ("x" * 1024, "invalid user"),
])
def test_a_user_that_does_not_resolve_to_one_address_is_an_error_saying_why(name, message):
    with pytest.raises(InputError) as err:
        resolve(name)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_two_lines_with_different_addresses_are_ambiguous():
    data = b"gina l2tpd x 10.255.10.7\ngina other x 10.255.10.70\n"
    with pytest.raises(InputError, match=r"more than one IP \(10.255.10.7, 10.255.10.70\) in f lines 1, 2"):
        resolve_user("gina", "f", data)


def test_an_unreadable_file_is_a_clear_runtime_error(tmp_path):
    with pytest.raises(SecretsError, match="cannot read .*missing to resolve --user"):
        resolve_user("alice", str(tmp_path / "missing"))


def _pppd_quote(name: str) -> bytes:
    """How an admin would write any name in chap-secrets: double quotes, backslash-escaped."""
    raw = name.encode()
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40),
       st.integers(min_value=1, max_value=250))
def test_any_quoted_name_resolves(name, last):
    data = b"# users\nother * x 10.255.9.1\n" + _pppd_quote(name) + b" * 'sec ret' 10.255.10.%d\n" % last
    if name == "other":
        return
    assert resolve_user(name, "f", data) == ipaddress.IPv4Address(f"10.255.10.{last}")


# -- the command line ---------------------------------------------------------------

def run_with_secrets(etc_ppp: Path, *args, ns=None, env=None):
    """The installed command in a private mount namespace where /etc/ppp is `etc_ppp`."""
    argv = routectl_argv(*args, ns=ns)
    script = 'mount --bind "$1" /etc/ppp && shift && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           str(etc_ppp), *argv], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture
def etc_ppp(tmp_path) -> Path:
    if not os.path.isdir("/etc/ppp"):
        pytest.fail("/etc/ppp is missing: install the ppp package (the server this tool runs on has it)")
    path = tmp_path / "etc-ppp"
    path.mkdir()
    (path / "chap-secrets").write_bytes(SECRETS)
    os.chmod(path / "chap-secrets", 0o600)
    return path


def test_user_works_wherever_peer_does(etc_ppp, store_dir, netns):
    netns.add_ppp("ppp0", "10.255.10.3")
    added = run_with_secrets(etc_ppp, "add", "--user", "bob smith", "--dst", "192.168.30.0/24", ns=netns)
    assert added.returncode == 0, added.stderr
    assert added.stdout == "Added route: 192.168.30.0/24 via 10.255.10.3\nInstalled on ppp0.\n"
    assert (store_dir / "10.255.10.3.routes").read_bytes() == b"192.168.30.0/24 via 10.255.10.3\n"
    assert netns.tagged_set() == {("192.168.30.0/24", "10.255.10.3", "ppp0", "main")}
    by_user = run_with_secrets(etc_ppp, "list", "--user", "bob smith")
    by_peer = run_with_secrets(etc_ppp, "list", "--peer", "10.255.10.3")
    assert by_user.returncode == 0 and by_user.stdout == by_peer.stdout
    assert by_user.stdout == "Routes for peer 10.255.10.3:\n192.168.30.0/24 via 10.255.10.3\n"
    netns.ip("route", "flush", "proto", "157")
    applied = run_with_secrets(etc_ppp, "apply", "--user", "bob smith", ns=netns)
    assert applied.returncode == 0 and "Installed route for peer 10.255.10.3" in applied.stdout
    state = run_with_secrets(etc_ppp, "status", "--user", "bob smith", "--json", ns=netns)
    doc = json.loads(state.stdout)
    assert state.returncode == 0 and doc["peer"] == "10.255.10.3" and doc["summary"]["installed"] == 1
    deleted = run_with_secrets(etc_ppp, "del", "--user", "bob smith", "--dst", "all", ns=netns)
    assert deleted.returncode == 0 and not (store_dir / "10.255.10.3.routes").exists()
    assert netns.tagged_set() == set()


@pytest.mark.parametrize("args, message", [
    (["add", "--user", "carol", "--dst", "10.0.0.0/8"], "may use any address (* in"),
    (["add", "--user", "frank", "--dst", "10.0.0.0/8"], "resolves to more than one IP"),
    (["del", "--user", "nobody", "--dst", "all"], "user nobody is not in /etc/ppp/chap-secrets"),
    (["list", "--user", "dave"], "has no fixed IP address"),
    (["apply", "--user", "nobody"], "is not in"),
    (["status", "--user", "carol"], "may use any address"),
    (["add", "--user", "alice", "--peer", "10.255.10.2", "--dst", "10.0.0.0/8"], "either --peer or --user"),
    (["add", "--dst", "10.0.0.0/8"], "give the address of the user with --peer IP"),
    (["del", "--user", "alice", "--user", "bob", "--dst", "all"], "more than once"),
])
def test_user_errors_are_one_line_and_exit_2(etc_ppp, store_dir, args, message):
    result = run_with_secrets(etc_ppp, *args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("l2tp-routectl: error: ") and len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert list(store_dir.iterdir()) == []
