"""Root's precompute of OpenVPN iroutes (transports/openvpn/iroutes.py) and the sh connect hook
that copies it (bin/l2tp-routes-openvpn), without a server: the hook is run as OpenVPN runs it,
with nothing but OpenVPN's variables. tests/system/test_openvpn*.py run the real servers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from l2tproute.core.model import parse_peer
from l2tproute.core.routefile import parse
from l2tproute.system import netns
from l2tproute.system.spool import parse_vpn_name
from l2tproute.system.store import Store
from l2tproute.transports.openvpn.iroutes import IROUTES, Precompute, PrecomputeError, user_file_name

ROUTES = ("192.168.20.0/24 via 10.255.10.1\n10.1.0.0/16 via 10.255.10.1 dev eth1\n"
          "2001:db8::/64 via 10.255.10.1\n# a comment\n172.16.4.0/22 via 10.255.10.1\n")
IPV4 = "iroute 192.168.20.0 255.255.255.0\niroute 172.16.4.0 255.255.252.0\n"


class Hook:
    """A scratch store, chap-secrets and run directory, root's precompute of them, and the hook."""

    def __init__(self, root: Path):
        self.root = root
        self.store = root / "routes.d"
        self.store.mkdir()
        (self.store / "10.255.10.1.routes").write_text(ROUTES)
        (self.store / "10.255.10.2.routes").write_text("10.2.0.0/16 via 10.255.10.2 dev eth1\n")
        self.chap = root / "chap-secrets"
        self.chap.write_text("user1 * p1 10.255.10.1\nroaming * p2 *\nnofile * p3 10.255.10.9\n"
                             "devonly * p4 10.255.10.2\n")
        self.run = root / "run"
        (self.run / "spool").mkdir(parents=True)
        (self.run / IROUTES).mkdir(mode=0o2750)
        (self.run / IROUTES).chmod(0o2750)
        self.config = root / "client.conf"
        self.config.write_text("")
        self.hook = root / "l2tp-routes-openvpn"
        text = (REPO / "bin" / "l2tp-routes-openvpn").read_text()
        for old, new in {"LIB=/opt/l2tproute/libexec/l2tproute.sh": f"LIB={REPO / 'lib' / 'l2tproute.sh'}",
                         "KICK=/opt/l2tproute/libexec/l2tp-routes-kick": f"KICK={root / 'no-kick'}"}.items():
            assert old in text
            text = text.replace(old, new)
        self.hook.write_text(text)
        self.hook.chmod(0o755)
        self.precompute = Precompute(str(self.run), Store(str(self.store)), str(self.chap))

    def connect(self, config: str | None = None, **values: str) -> subprocess.CompletedProcess:
        env = {"script_type": "client-connect", "dev": "tun0", "ifconfig_pool_remote_ip": "10.10.30.2",
               "L2TP_RUN_DIR": str(self.run), "L2TP_CHAP_SECRETS": str(self.chap), **values}
        argv = ["env", "-i", *(f"{k}={v}" for k, v in env.items() if v is not None), str(self.hook)]
        done = subprocess.run([*argv, str(self.config) if config is None else config][: len(argv) + (config != "")],
                              capture_output=True, timeout=30)
        assert done.returncode == 0 and done.stdout == done.stderr == b""
        return done

    def events(self) -> list[str]:
        """The spooled events without their namespace, tun and sequence (each in this test's namespace)."""
        names = os.listdir(self.run / "spool")
        assert {name.split(",", 1)[0] for name in names} <= {str(netns.current())}, names
        return sorted(name.split(",", 3)[3] for name in names)


@pytest.fixture
def hook(tmp_path):
    h = Hook(tmp_path)
    h.precompute.refresh()
    return h


def test_the_hook_copies_the_users_iroutes_and_spools_its_event(hook):
    hook.connect(username="user1")
    assert hook.config.read_text() == IPV4  # no IPv6 address: no iroute-ipv6; a line with its own dev: none
    assert hook.events() == ["vpn-up,10.10.30.2,10.255.10.1"]
    [name] = os.listdir(hook.run / "spool")
    assert parse_vpn_name(name).peer == parse_peer("10.255.10.1")
    # common_name when there is no username (or an empty one), as OpenVPN sets them without
    # username-as-common-name; with an IPv6 pool address the IPv6 lines too, and the event carries it.
    hook.config.write_text("")
    hook.connect(username="", common_name="user1", ifconfig_pool_remote_ip="10.10.30.3",
                 ifconfig_pool_remote_ip6="fd00:10:30::1000")
    assert hook.config.read_text() == "iroute 192.168.20.0 255.255.255.0\niroute-ipv6 2001:db8::/64\n" \
                                      "iroute 172.16.4.0 255.255.252.0\n"
    assert "vpn-up,10.10.30.3,10.255.10.1,fd00:10:30::1000" in hook.events()


@pytest.mark.parametrize("user", ["roaming", "nofile", "devonly", "stranger", "", "../users/user1", "user1/.."])
def test_a_user_without_a_fixed_address_or_usable_routes_connects_with_nothing(hook, user):
    hook.connect(username=user)
    assert hook.config.read_text() == "" and hook.events() == []


@pytest.mark.parametrize("change", [{"dev": "tun0;x"}, {"dev": ""}, {"ifconfig_pool_remote_ip": ""},
                                    {"ifconfig_pool_remote_ip": "10.10.30.02"},
                                    {"ifconfig_pool_remote_ip6": "fd00::1;x"}, {"ifconfig_pool_remote_ip6": "FD00::1"}])
def test_unusable_values_from_openvpn_give_no_routes_and_keep_the_client(hook, change):
    hook.connect(username="user1", **change)
    assert hook.config.read_text() == "" and hook.events() == []


def test_without_the_config_argument_or_the_spool_nothing_is_routed(hook):
    hook.connect(config="", username="user1")
    assert hook.events() == []
    (hook.run / "spool").rmdir()
    hook.connect(username="user1")
    assert hook.config.read_text() == ""
    # A config file the hook cannot write: the event it spooled is taken back.
    (hook.run / "spool").mkdir()
    hook.connect(config=str(hook.root / "missing" / "client.conf"), username="user1")
    assert hook.events() == []


def test_a_precompute_older_than_chap_secrets_is_not_used_until_refreshed(hook):
    # user1 moves to another address (and its old one to somebody else): until root refreshed
    # users/, the hook routes nothing rather than the old address's networks.
    hook.chap.write_text("user1 * p1 10.255.10.2\nother * p9 10.255.10.1\n")
    future = time.time() + 5
    os.utime(hook.chap, (future, future))
    hook.connect(username="user1")
    assert hook.config.read_text() == "" and hook.events() == []
    (hook.store / "10.255.10.2.routes").write_text("10.2.0.0/16 via 10.255.10.2\n")
    done = hook.precompute.refresh()
    assert (done.users_written, done.users_removed, done.peers_written) == (2, 2, 1)
    hook.connect(username="user1")
    assert hook.config.read_text() == "iroute 10.2.0.0 255.255.0.0\n"
    assert hook.events() == ["vpn-up,10.10.30.2,10.255.10.2"]
    # Nothing changed: nothing is written again.
    assert hook.precompute.refresh() == type(done)()


def test_never_precomputed_gives_no_routes(tmp_path):
    hook = Hook(tmp_path)
    hook.connect(username="user1")
    assert hook.config.read_text() == "" and hook.events() == []


def test_route_files_are_followed_by_commits_and_by_the_timers_refresh(hook):
    store = Store(str(hook.store))
    store.on_commit = hook.precompute.follow
    peer = parse_peer("10.255.10.1")
    peers = hook.run / IROUTES / "peers"
    with store.locked():
        store.write(peer, parse(b"192.168.30.0/24 via 10.255.10.1\n"))
    assert (peers / "10.255.10.1").read_text() == "iroute 192.168.30.0 255.255.255.0\n"
    with store.locked():
        store.write(peer, [])
    assert not (peers / "10.255.10.1").exists()
    # An edit by hand (in place, so only the file's time changes) and a removal: the timer's refresh.
    (hook.store / "10.255.10.2.routes").write_text("10.3.0.0/16 via 10.255.10.2\n")
    os.utime(hook.store / "10.255.10.2.routes", ns=(1, 1))
    (hook.store / "10.255.10.5.routes").write_text("10.5.0.0/16 via 10.255.10.5\n")
    done = hook.precompute.refresh()
    assert (done.peers_written, done.peers_removed) == (2, 0)
    assert (peers / "10.255.10.2").read_text() == "iroute 10.3.0.0 255.255.0.0\n"
    (hook.store / "10.255.10.5.routes").unlink()
    assert hook.precompute.refresh().peers_removed == 1 and sorted(os.listdir(peers)) == ["10.255.10.2"]


def test_the_precompute_is_readable_by_the_group_only_and_written_only_when_roots_own(hook):
    directory = hook.run / IROUTES
    # The writer's own (root's on a server; the unit layer also runs unprivileged).
    for path in [directory / "users" / "user1", directory / "peers" / "10.255.10.1", directory / "chap.stamp"]:
        info = path.stat()
        assert (info.st_uid, info.st_mode & 0o7777, info.st_gid) == (os.geteuid(), 0o640, directory.stat().st_gid)
    directory.chmod(0o2770)  # the group could plant what the hook copies
    with pytest.raises(PrecomputeError, match="only it may write"):
        hook.precompute.refresh(force=True)
    hook.precompute.follow(parse_peer("10.255.10.1"))  # a command's write is never failed by it
    directory.chmod(0o2750)
    (hook.run / IROUTES).rename(hook.root / "elsewhere")
    assert Precompute(str(hook.run), Store(str(hook.store)), str(hook.chap)).refresh() == type(hook.precompute
                                                                                              .refresh())()
    assert not (hook.run / IROUTES).exists()


HOSTILE = [b"a b", b"it's", b"x\\y", b"dollar$x", b"../etc", b"..", b".", b"-", b"%41", b"A", b"*", b"?", b"[a]",
           b"\xc3\xa9", b"tab\there", b'"q"', b"semi;colon", b"$(reboot)", b"~", b"x" * 255, b"x" * 256, b"." * 90]


def _octal(name: bytes) -> str:
    """A chap-secrets word that pppd reads as exactly these bytes."""
    return "".join(f"\\{b:03o}" for b in name)


@pytest.mark.parametrize("name", HOSTILE)
def test_the_hook_finds_exactly_the_user_root_resolved_whatever_its_name(tmp_path, name):
    """The sh hook to the Python rules: the name OpenVPN passes is looked up under the file name
    root gave the same bytes (user_file_name), and a name that resembles another's finds nothing."""
    hook = Hook(tmp_path)
    hook.chap.write_text(f"{_octal(name)} * p1 10.255.10.1\n")
    hook.precompute.refresh()
    expected = user_file_name(name)
    assert sorted(os.listdir(hook.run / IROUTES / "users")) == ([expected] if expected else [])
    value = os.fsdecode(name)
    hook.connect(username=value)
    assert hook.config.read_text() == (IPV4 if expected else "")
    for other in {b"A", b"%41", b"..", b"."} - {name}:
        hook.config.write_text("")
        hook.connect(username=os.fsdecode(other))
        assert hook.config.read_text() == ""


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=90).filter(lambda b: b"\0" not in b and b"=" not in b[:1]))
def test_the_sh_file_name_is_the_pythons_for_any_bytes(name):
    lib = REPO / "lib" / "l2tproute.sh"
    done = subprocess.run(["dash", "-c", f'. {lib}; l2t_user_name "$1" && printf %s "$l2t_name" || printf NONE',
                           "sh", name], capture_output=True, env={"LC_ALL": "C", "PATH": os.environ["PATH"]},
                          timeout=10)
    assert done.stdout.decode() == (user_file_name(name) or "NONE")


def test_users_and_resolve_all_give_what_resolve_user_gives_for_every_name(tmp_path):
    from l2tproute.core.model import InputError
    from l2tproute.system.chap import Users, resolve_user

    chap = tmp_path / "chap-secrets"
    chap.write_text('a * p 10.0.0.1\nroam * p *\nnone * p -\ntwo * p 10.0.0.2 10.0.0.3\nsplit * p 10.0.0.4\n'
                    'split * q 10.0.0.4/32\n"with space" * p 10.0.0.5\nnet * p 10.0.0.0/24\n"" * p 10.0.0.6\n'
                    'bad * p 10.0.0.01 -- ms-dns 1.1.1.1\nexcl * p !10.0.0.7 10.0.0.8\n')
    users = Users(str(chap))

    def outcome(call):
        try:
            return str(call())
        except InputError as exc:
            return f"error: {exc}"

    for name in ["a", "roam", "none", "two", "split", "with space", "net", "", "bad", "excl", "absent", "x" * 2000]:
        assert outcome(lambda n=name: users.peer(n)) == outcome(lambda n=name: resolve_user(n, str(chap))), name
