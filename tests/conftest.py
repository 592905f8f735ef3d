"""Shared fixtures: a real network namespace with tun links named pppN, the CLI, and the
rules that keep every test off this machine.

The rules are structural, not case by case:

- every test runs with its own scratch state: L2TP_ROUTES_DIR (store), L2TP_RUN_DIR (the
  hooks' spool and the OpenVPN session records), L2TP_CHAP_SECRETS and L2TP_CACHE_DIR (the
  destination index) name scratch paths, and
  no SUDO_* variable is set (under sudo the tool ignores all three and uses the real
  /etc/l2tp-manager, /run/l2tproute and /etc/ppp/chap-secrets, and reads the real settings
  and /etc/resolv.conf); a test that wants SUDO_* sets them itself (monkeypatch.setenv or
  run_routectl's env=) and runs the command through support.scratchroot, which binds
  scratch copies over those paths in a private mount namespace;
- every `ip` the tool runs from a test is bound to a namespace: in this process an
  `IpRoute2` built without one runs in a namespace that never exists (so `ip` fails,
  loudly), and `run_routectl` starts the command inside the test's namespace, or, when
  the test names none, inside an empty scratch namespace;
- the session guard (support.hostguard) reads this machine at the start and at the end of
  the run: routes and rules of both families, links, addresses, network namespaces, the
  sysctls the tool sets, and every file the tool, its hooks and its installer write
  (/run/l2tproute, /etc/l2tp-manager, chap-secrets, the installed files). Any difference
  fails the run: exit status 1 and a failed report named HOST GUARD (in FAILURES, the short
  summary and the count of the summary line). SIGINT, SIGTERM and SIGHUP end the run through pytest's own interruption,
  so the guard runs then too; the run's leftover scratch namespaces are removed (and
  reported), and so are those of earlier runs that were killed outright. This assumes
  nothing else on the machine changes that state while the tests run (true on a CI machine;
  run-tests.sh installs the tool before pytest starts, so the installed files are part of
  the state that must not change).
"""

from __future__ import annotations

import atexit
import difflib
import itertools
import json
import os
import signal
import subprocess
import sysconfig
from pathlib import Path

import pytest
from support import hostguard, iproute2s, wheelhouse

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


#: The variables that move the tool's state (each ignored under sudo), and the scratch path each gets.
SCRATCH_ENV = {C.STORE_DIR_ENV: "routes.d", C.RUN_DIR_ENV: "run", C.CHAP_SECRETS_ENV: "chap-secrets",
               C.CACHE_DIR_ENV: "cache"}


def _scratch_state(tmp_path_factory, mp: pytest.MonkeyPatch, tag: str) -> dict[str, Path]:
    """Fresh scratch paths for SCRATCH_ENV, set in the environment; SUDO_* removed."""
    for name in [k for k in os.environ if k.startswith("SUDO_")]:
        mp.delenv(name)
    top = tmp_path_factory.mktemp(tag)
    paths = {}
    for variable, leaf in SCRATCH_ENV.items():
        paths[variable] = top / leaf
        mp.setenv(variable, str(paths[variable]))
    paths[C.STORE_DIR_ENV].mkdir()
    paths[C.CACHE_DIR_ENV].mkdir()
    paths[C.CHAP_SECRETS_ENV].write_text("# scratch chap-secrets of tests/conftest.py\n")
    return paths


@pytest.fixture(scope="session", autouse=True)
def _session_world(tmp_path_factory):
    """For the whole session (module fixtures included): no SUDO_*, scratch state, and
    no runner in this process without a namespace."""
    with pytest.MonkeyPatch.context() as mp:
        _scratch_state(tmp_path_factory, mp, "session")
        unbound_init = IpRoute2.__init__

        def bound_init(self, netns=None, *args, **kwargs):
            unbound_init(self, netns or NOWHERE, *args, **kwargs)

        mp.setattr(IpRoute2, "__init__", bound_init)
        yield


@pytest.fixture(autouse=True)
def scratch_state(tmp_path_factory, monkeypatch) -> dict[str, Path]:
    """Every test's own scratch state (again: a module fixture or an earlier test may have set
    SUDO_* or the variables)."""
    return _scratch_state(tmp_path_factory, monkeypatch, "state")


@pytest.fixture
def scratch_store(scratch_state) -> Path:
    """The test's own empty store, named by L2TP_ROUTES_DIR."""
    return scratch_state[C.STORE_DIR_ENV]


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


# -- the quick tier: `./run-tests.sh --quick` runs `-m "not slow"` ----------------------

#: Tests that are slow (tens of seconds each, or a Debian boot): the full run has them, the
#: quick tier leaves them out. A prefix of node ids; a test may also carry @pytest.mark.slow.
#: The variants of the iproute2_versions tests on the built older `ip` releases are slow too.
SLOW = (
    "tests/system/",
    "tests/robustness/test_concurrency.py::test_concurrent_writers_timer_and_readers_lose_nothing",
    "tests/robustness/test_fuzz.py::",
    "tests/robustness/test_crash.py::test_sigkill_at_random_moments",
    "tests/robustness/test_hang.py::test_a_stuck_lock_holder",
    # A pytest session inside the session, and every file of a mixed store through both fronts:
    # the two longest of the rest (12 and 18 s), each run in full by the whole suite.
    "tests/netns/test_session_guard.py::test_a_run_that_leaves_state_fails_in_its_summary_and_exit_status",
    "tests/netns/test_list_front.py::test_list_peer_of_every_file_in_the_store_is_answered_by_the_front_as_the_cli_does",
)
#: What the quick tier keeps of SLOW, so that it still runs every front once: the installed
#: command through the real sudo and the panel (PHP), and the OpenVPN hooks under a real server.
QUICK_ANYWAY = (
    "tests/system/test_panel.py::",
    "tests/system/test_openvpn.py::test_sessions_of_one_user_and_of_both_vpns_and_server_stop",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        # Node ids are relative to the rootdir, this checkout (pyproject.toml).
        if item.nodeid.startswith(SLOW) and not item.nodeid.startswith(QUICK_ANYWAY):
            item.add_marker(pytest.mark.slow)
        # The built older `ip` releases (iproute2_versions): the quick tier keeps the distribution's.
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("ip_binary", iproute2s.DISTRO) != iproute2s.DISTRO:
            item.add_marker(pytest.mark.slow)


# -- the session guard: this machine's state (support.hostguard) -----------------------

_HOST_BEFORE = pytest.StashKey[dict]()
_guard_done: list[bool] = []


def _remove_namespaces(names: list[str]) -> None:
    for name in names:
        _ip("netns", "del", name, check=False)


def _interrupted(signum, frame):
    # pytest ends a run on KeyboardInterrupt through its own path: fixtures torn down,
    # pytest_sessionfinish (the guard) run, exit status 2.
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def pytest_sessionstart(session):
    # Only root can remove them (tests/unit also runs unprivileged).
    orphans = hostguard.orphaned_namespaces() if os.geteuid() == 0 else []
    _remove_namespaces(orphans)
    if orphans:
        print(f"host guard: removed {len(orphans)} scratch namespaces of earlier runs that were killed: "
              + " ".join(orphans))
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    atexit.register(_guard_at_exit)
    session.config.stash[_HOST_BEFORE] = hostguard.snapshot()


def _changes(before: dict) -> list[str]:
    """What differs from before, as report lines; also removes this run's leftover namespaces."""
    changes = []
    leftover = hostguard.scratch_namespaces(os.getpid())
    _remove_namespaces(leftover)
    if leftover:
        changes.append("network namespaces of this run were left behind (removed now): " + " ".join(leftover))
    after = hostguard.snapshot()
    for what in before:
        if before[what] != after[what]:
            changes.append(f"this machine's {what} changed during the test session:")
            changes += [f"  {line}" for line in difflib.unified_diff(before[what], after[what], "before", "after",
                                                                    lineterm="", n=0)][2:]
    return changes


def _guard_at_exit() -> None:
    """When the run ends without pytest_sessionfinish (an error in pytest itself): clean up and say so."""
    if _guard_done:
        return
    _guard_done.append(True)
    _remove_namespaces(_sandbox_made)
    print("host guard: the run ended before its end-of-session check; leftover scratch namespaces "
          f"removed: {' '.join(hostguard.scratch_namespaces(os.getpid())) or 'none'}", flush=True)
    _remove_namespaces(hostguard.scratch_namespaces(os.getpid()))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    _guard_done.append(True)
    _remove_namespaces(_sandbox_made)
    before = session.config.stash.get(_HOST_BEFORE, None)
    if before is None:
        return
    changes = _changes(before)
    if changes:
        # A failed report of its own: FAILURES shows what changed, the summary line counts it
        # ("1 failed"), the short summary names it.
        text = "\n".join(["a test acted on this machine instead of its own namespace and store", *changes])
        session.config.hook.pytest_runtest_logreport(report=pytest.TestReport(
            nodeid="HOST GUARD", location=("tests/conftest.py", None, "HOST GUARD"), keywords={}, outcome="failed",
            longrepr=text, when="call"))
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
