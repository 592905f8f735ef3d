"""Shared fixtures: a real network namespace with tun links named pppN, the CLI, and the
rules that keep every test off this machine.

The rules are structural, not case by case:

- every test runs with its own scratch store: L2TP_ROUTES_DIR names it and no SUDO_*
  variable is set (under sudo the tool ignores L2TP_ROUTES_DIR and would use the real
  /etc/l2tp-manager/routes.d); a test that wants SUDO_* sets them itself
  (monkeypatch.setenv or run_routectl's env=);
- every `ip` the tool runs from a test is bound to a namespace: in this process an
  `IpRoute2` built without one runs in a namespace that never exists (so `ip` fails,
  loudly), and `run_routectl` starts the command inside the test's namespace, or, when
  the test names none, inside an empty scratch namespace;
- the session fails if this machine's own routing table (`ip -j route show table all`,
  IPv4 and IPv6, of the namespace pytest starts in) or the real route store changed
  between the start and the end of the run. This assumes nothing else on the machine
  changes them while the tests run (true on a CI machine; on a shared box, another run
  of the suite from an older checkout that still writes the real store would trip it).
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
import stat
import subprocess
import sysconfig
from pathlib import Path

import pytest
from support import iproute2s, wheelhouse

from l2tproute.core import constants as C
from l2tproute.system.iproute2 import IpRoute2

REPO = Path(__file__).resolve().parent.parent
_counter = itertools.count()
#: A namespace name that is never created: an unbound runner in this process lands here.
NOWHERE = f"l2t-{os.getpid()}-nowhere"
#: An empty namespace for commands a test runs without naming one (made on first use, so that
#: tests that need no root, tests/unit, run without it).
SANDBOX = f"l2t-{os.getpid()}-sandbox"
_sandbox_made: list[str] = []


def _ip(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, check=check)


class Netns:
    """A scratch namespace; pppN links are tun devices with `LOCAL peer PEER`."""

    def __init__(self, name: str):
        self.name = name

    def ip(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        return _ip("-n", self.name, *args, check=check, stdin=stdin)

    def runner(self, **kwargs) -> IpRoute2:
        """The library's runner, bound to this namespace."""
        return IpRoute2(self.name, **kwargs)

    def sysctl(self, key: str) -> str:
        """A sysctl as this namespace sees it. A new namespace inherits the host's IPv4
        `default` values (net.core.devconf_inherit_init_net=0), so a test that expects a
        link's value to be untouched reads the default here instead of assuming one."""
        path = "/proc/sys/" + key.replace(".", "/")
        return subprocess.run(["ip", "netns", "exec", self.name, "cat", path], capture_output=True, text=True,
                              check=True).stdout.strip()

    def add_ppp(self, ifname: str, peer: str, local: str = "10.254.0.1") -> None:
        self.ip("tuntap", "add", "dev", ifname, "mode", "tun")
        self.ip("addr", "add", local, "peer", peer, "dev", ifname)
        self.ip("link", "set", ifname, "up")

    def add_many_ppp(self, peers: list[str], local: str = "10.254.0.1", first: int = 0) -> None:
        """Bring up many sessions with one `ip -batch` (thousands in a second or two)."""
        lines = []
        for index, peer in enumerate(peers, first):
            lines += [f"tuntap add dev ppp{index} mode tun", f"addr add {local} peer {peer} dev ppp{index}",
                      f"link set ppp{index} up"]
        self.ip("-batch", "-", stdin="\n".join(lines) + "\n")

    def del_link(self, ifname: str) -> None:
        self.ip("link", "del", ifname)

    def add_lan(self, ifname: str, cidr: str) -> None:
        """A non-PPP link of the server (LAN or uplink) with a connected network."""
        self.ip("tuntap", "add", "dev", ifname, "mode", "tun")
        self.ip("addr", "add", cidr, "dev", ifname)
        self.ip("link", "set", ifname, "up")

    def routes(self, family: int = 4, *extra: str) -> list:
        """The kernel table, as `ip -j route` shows it (numeric protocol and table ids)."""
        out = self.ip(f"-{family}", "-j", "-N", "route", "show", "table", "all", *extra).stdout.strip()
        rows = json.loads(out) if out else []
        return [r for r in rows if r.get("table") not in ("255", "local")]

    def tagged(self, family: int = 4) -> list:
        return self.routes(family, "proto", str(C.RT_PROTO))

    def tagged_set(self, family: int = 4) -> set:
        return {(r["dst"], r.get("gateway"), r["dev"], r.get("table", "main")) for r in self.tagged(family)}

    def snapshot(self) -> list:
        """Every route of both families, for 'nothing changed' assertions."""
        return sorted(json.dumps(r, sort_keys=True) for fam in (4, 6) for r in self.routes(fam))


@pytest.fixture
def netns():
    name = f"l2t-{os.getpid()}-{next(_counter)}"
    _ip("netns", "add", name)
    ns = Netns(name)
    ns.ip("link", "set", "lo", "up")
    try:
        yield ns
    finally:
        _ip("netns", "del", name, check=False)


@pytest.fixture(scope="session")
def wheel_dirs(tmp_path_factory):
    """Wheel directories for offline installs (`--wheels DIR`), one per target Python X.Y, built once a session."""
    built: dict[str, Path] = {}

    def for_python(version: str) -> Path:
        if version not in built:
            target = tmp_path_factory.mktemp("wheels") / f"py{version}"
            built[version] = wheelhouse.build_wheels(REPO, target, python_version=version)
        return built[version]

    return for_python


# -- the environment every test runs in ------------------------------------------------

def _without_sudo(environ) -> dict:
    return {k: v for k, v in environ.items() if not k.startswith("SUDO_")}


@pytest.fixture(scope="session", autouse=True)
def _session_world(tmp_path_factory):
    """For the whole session (module fixtures included): no SUDO_*, a scratch store, and
    no runner in this process without a namespace."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("SUDO_")]:
            mp.delenv(name)
        mp.setenv(C.STORE_DIR_ENV, str(tmp_path_factory.mktemp("session-routes.d")))
        mp.setenv(C.CACHE_DIR_ENV, str(tmp_path_factory.mktemp("session-cache")))
        unbound_init = IpRoute2.__init__

        def bound_init(self, netns=None, *args, **kwargs):
            unbound_init(self, netns or NOWHERE, *args, **kwargs)

        mp.setattr(IpRoute2, "__init__", bound_init)
        yield


@pytest.fixture(autouse=True)
def scratch_store(tmp_path_factory, monkeypatch) -> Path:
    """Every test's own empty store, named by L2TP_ROUTES_DIR; SUDO_* removed (again: a
    module fixture or an earlier test may have set them)."""
    path = tmp_path_factory.mktemp("routes.d")
    for name in [k for k in os.environ if k.startswith("SUDO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(C.STORE_DIR_ENV, str(path))
    return path


def pytest_generate_tests(metafunc):
    """A test marked iproute2_versions runs against each `ip` of support/iproute2s.IP_VERSIONS."""
    if metafunc.definition.get_closest_marker("iproute2_versions") and "ip_binary" in metafunc.fixturenames:
        metafunc.parametrize("ip_binary", iproute2s.IP_VERSIONS, indirect=True)


@pytest.fixture(autouse=True)
def ip_binary(request, monkeypatch) -> str:
    """The `ip` the tool runs in this test: the distribution's, or a built older one by L2TP_IP_BINARY
    (which the processes a test starts inherit with its environment)."""
    version = getattr(request, "param", iproute2s.DISTRO)
    monkeypatch.delenv(C.IP_BINARY_ENV, raising=False)
    if version != iproute2s.DISTRO:
        problem = iproute2s.problem(version)
        if problem:
            pytest.fail(problem, pytrace=False)
        monkeypatch.setenv(C.IP_BINARY_ENV, str(iproute2s.program(version)))
    return version


@pytest.fixture
def store_dir(scratch_store) -> Path:
    return scratch_store


#: The two peers of old_server, on ppp0 and ppp1.
OLD_SERVER_PEERS = ("10.255.10.1", "10.255.10.2")


@pytest.fixture
def old_server(netns, store_dir, monkeypatch) -> Netns:
    """A server as the old tool left it, before any route: two sessions (ppp0, ppp1), a LAN, and a
    caller that is not the panel (no sudo in the environment)."""
    for name in ("SUDO_UID", "SUDO_USER"):
        monkeypatch.delenv(name, raising=False)
    netns.add_ppp("ppp0", OLD_SERVER_PEERS[0])
    netns.add_ppp("ppp1", OLD_SERVER_PEERS[1])
    netns.add_lan("lan0", "192.168.50.1/24")
    return netns


def routectl_path() -> str:
    # The script pip made for this interpreter, not the first on PATH: after a real install
    # /usr/local/sbin/l2tp-routectl (the copy in /opt) may come first, and pyenv's shim
    # would add a bash start to every call.
    found = Path(sysconfig.get_path("scripts")) / "l2tp-routectl"
    if not found.is_file():
        pytest.fail(f"the console script {found} is not installed (pip install -e .)")
    return str(found)


def in_namespace(argv: list[str], ns: Netns | None = None) -> list[str]:
    """argv started inside `ns`, or inside the empty sandbox namespace when the test names none:
    whatever the arguments say, an `ip` without `-n` cannot reach this machine's table."""
    if ns is None and not _sandbox_made:
        _ip("netns", "add", SANDBOX)
        _sandbox_made.append(SANDBOX)
        _ip("-n", SANDBOX, "link", "set", "lo", "up")
    return ["nsenter", f"--net=/run/netns/{ns.name if ns is not None else SANDBOX}", "--", *argv]


def routectl_argv(*args: str, ns: Netns | None = None) -> list[str]:
    """The console script with args (and `--netns NS` when a namespace is given), started in a namespace."""
    return in_namespace([routectl_path(), *args, *(["--netns", ns.name] if ns is not None else [])], ns)


def routectl_env(env: dict | None = None) -> dict:
    """The test's environment without SUDO_*, plus what the caller asks for (which may be SUDO_*)."""
    return {**_without_sudo(os.environ), **(env or {})}


def run_routectl(*args: str, ns: Netns | None = None, env: dict | None = None,
                 timeout: float = 60, text: bool = True) -> subprocess.CompletedProcess:
    """Run the installed console script, as the panel and the hooks do."""
    return subprocess.run(routectl_argv(*args, ns=ns), capture_output=True, text=text, env=routectl_env(env),
                          timeout=timeout)


@pytest.fixture
def routectl(store_dir):
    return run_routectl


def require(present: bool, what: str) -> None:
    """A prerequisite that run-tests.sh installs: missing means the run is broken, never a skip."""
    if not present:
        pytest.fail(f"{what} is missing; run-tests.sh installs it (or install it by hand and run again)")


# -- the session guard: this machine's routing table and the real store ------------------

def host_routes() -> list[str]:
    """`ip -j route show table all` of the namespace pytest runs in, both families, one line a route."""
    found = []
    for family in ("-4", "-6"):
        out = _ip(family, "-j", "route", "show", "table", "all").stdout.strip()
        found += sorted(f"{family} {json.dumps(r, sort_keys=True)}" for r in (json.loads(out) if out else []))
    return found


def real_store() -> list[str]:
    """Every entry of /etc/l2tp-manager/routes.d, one line each: type and mode, owner, and
    the content's digest or the link's target."""
    top = Path(C.DEFAULT_STORE_DIR)
    if not top.exists() and not top.is_symlink():
        return [f"{top} missing"]
    found = []
    for path in [top, *sorted(top.rglob("*"))] if top.is_dir() and not top.is_symlink() else [top]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            detail = "-> " + os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            detail = "sha256 " + hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            detail = ""
        found.append(f"{path} {stat.filemode(info.st_mode)} {info.st_uid}:{info.st_gid} {detail}".rstrip())
    return found


_HOST_BEFORE = pytest.StashKey[dict]()


def pytest_sessionstart(session):
    session.config.stash[_HOST_BEFORE] = {"routing table": host_routes(), "real store": real_store()}


def pytest_sessionfinish(session):
    for name in _sandbox_made:
        _ip("netns", "del", name, check=False)
    before = session.config.stash.get(_HOST_BEFORE, None)
    if before is None:
        return
    after = {"routing table": host_routes(), "real store": real_store()}
    changes = []
    for what in before:
        if before[what] != after[what]:
            changes.append(f"this machine's {what} changed during the test session:")
            changes += [f"  {line}" for line in difflib.unified_diff(before[what], after[what], "before", "after",
                                                                    lineterm="", n=0)][2:]
    if changes:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for line in ["", "HOST GUARD FAILED: a test acted on this machine instead of its own namespace and store",
                     *changes]:
            if reporter is not None:
                reporter.write_line(line, red=True)
            else:
                print(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
