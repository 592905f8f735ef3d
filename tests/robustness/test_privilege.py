"""The panel's privilege: www-data runs the installed tool as root through the shipped
sudoers entry, exactly as the panel does (`sudo /usr/local/sbin/l2tp-routectl ARGS`).

No argument can make it write, create or delete a file outside the store, or read one
there: every run is traced (strace -f, the tool and the `ip` it starts) and every path
it touches is checked. Nothing but a validated route reaches `ip` (its argv is traced;
the namespace is compared). The caller's environment and working directory cannot move
the store or load code (L2TP_ROUTES_DIR, PYTHON*, PATH; the interpreter starts with -I).
Symlinks in the store are not followed, and errors never echo another file's content.

Needs the real install (.ci/run runs install-l2tp-per-user-routing.sh first); without it
the tests fail and say so. The real store is never touched: every run happens in a private
mount namespace where /etc/l2tp-manager/routes.d is a scratch directory (the tool still
opens exactly the paths it opens in the field), and in an empty network namespace of its
own, so whatever the arguments say, an `ip` without `-n` cannot reach this machine's table.
That namespace is the scratch one the routes go to: the panel may not use --netns, so its
process runs where its routes go, as on a server.

The panel's limits: as www-data, every way to the default route, a server network,
another user's destination, another namespace or another table is refused with one
line and nothing changes, while the panel's own calls pass and root keeps --force
(on the scratch server of panelworld.py, with its own store and settings).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Netns, _ip
from panelworld import REFUSED, A, check_refused, refused_argv, tagged, walk_the_panels_calls, world
from support.scratchroot import ScratchRoot

from l2tproute.core import constants as C

CTL = "/usr/local/sbin/l2tp-routectl"
PYTHON_CLI = "/opt/l2tproute/libexec/l2tp-routectl"
IP = shutil.which("ip", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/sbin/ip"
SUDOERS = "/etc/sudoers.d/l2tp-routectl"
VENV_PYTHON = "/opt/l2tproute/bin/python3"
STORE = C.DEFAULT_STORE_DIR
CHAP = "/etc/ppp/chap-secrets"
#: The destination index (system/dstindex.py): a cache `add` reads and rewrites, never the store.
CACHE = C.DEFAULT_CACHE_DIR
ONLINE, OFFLINE, LINKED = "10.255.251.1", "10.255.251.2", "10.255.251.3"
SECRET = "TOPSECRET-77c1d0"
PANEL_UID = 33  # www-data on Debian
WRITE_CALLS = {"rename", "renameat", "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat", "symlink", "symlinkat",
               "link", "linkat", "chmod", "fchmodat", "chown", "lchown", "fchownat", "truncate", "creat", "rmdir"}
TRACED = sorted(WRITE_CALLS | {"open", "openat", "execve", "clone", "clone3", "fork", "vfork"})
# Paths the tool may read that are not the store: its interpreter and libraries, system files.
# /run/l2tproute: the OpenVPN session records that status and apply read.
READ_OK = ("/opt/l2tproute/", "/usr/", "/lib", "/proc/", "/sys/", "/dev/", "/run/netns", "/var/run/netns",
           "/run/l2tproute/")
# Under /etc only what the dynamic loader, sudo's child, the name service, ip and the tool's
# policy need; never chap-secrets, shadow or another secret.
READ_OK_ETC = {"/etc/ld.so.cache", "/etc/ld.so.preload", "/etc/localtime", "/etc/nsswitch.conf", "/etc/passwd",
               "/etc/group", "/etc/l2tp-manager/l2tproute.conf", "/etc/resolv.conf", "/etc/host.conf",
               "/etc/hosts"}
READ_OK_ETC_DIRS = ("/etc/iproute2/", "/usr/share/iproute2/")


@pytest.fixture(scope="module")
def installed():
    missing = [p for p in (CTL, SUDOERS, VENV_PYTHON, STORE) if not os.path.exists(p)]
    tools = [t for t in ("sudo", "strace", "setpriv", "visudo", "unshare") if shutil.which(t) is None]
    if missing or tools:
        pytest.fail(f"the privilege tests need the real install and tools: missing {missing + tools}; run "
                    "sudo ./install-l2tp-per-user-routing.sh and apt-get install sudo strace (.ci/run does both)")
    assert subprocess.run(["visudo", "-c", "-f", SUDOERS], capture_output=True).returncode == 0
    # The command is the sh front; what it hands over to is Python started isolated.
    front = Path(CTL).read_text().splitlines()
    assert front[0] == "#!/bin/sh" and f"CLI={PYTHON_CLI}" in front, front[:12]
    assert Path(PYTHON_CLI).read_text().splitlines()[0].split()[-1] in ("-I", "-IS"), \
        "the Python CLI must start isolated"


class Panel:
    """Runs the installed tool as the panel does, traced, in a scratch world."""

    def __init__(self, root: Path, ns: Netns):
        self.root = root
        self.ns = ns
        # What the tool sees as /etc/l2tp-manager (routes.d, the settings), /run/l2tproute,
        # chap-secrets and resolv.conf.
        self.scratch = ScratchRoot(root / "scratch", "panel_users = www-data\n",
                                   chap=f"alice * {SECRET} {ONLINE}\n")
        self.store = self.scratch.store
        self.canary = root / "l2tc-canary"  # files an attacker would like read or overwritten
        self.cwd = root / "panel-cwd"  # the panel's working directory, writable by www-data
        self.markers = root / "markers"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        env.update(extra or {})
        return env

    def sandboxed(self, argv: list[str]) -> list[str]:
        """argv with the scratch copies mounted on the real paths, in the scratch network namespace."""
        return self.scratch.wrap([IP, "netns", "exec", self.ns.name, *argv])

    def host_path(self, path: str) -> Path:
        """Where a path the tool named is on this side of the mount."""
        if path == STORE or path.startswith(STORE + "/"):
            return self.store / path[len(STORE) + 1:]
        return Path(path)

    def run(self, *args: str, env: dict[str, str] | None = None, sudo: list[str] = (), trace: bool = True):
        log = self.root / "trace.log"
        argv = self.sandboxed(as_panel(*sudo, CTL, *args))
        if trace:
            argv = traced(log, argv)
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env(env), cwd=self.cwd, timeout=120)
        return proc, (Trace(log.read_text(), self, user_lookup="--user" in args) if trace else None)


def as_panel(*sudo_argv: str) -> list[str]:
    return ["setpriv", f"--reuid={PANEL_UID}", f"--regid={PANEL_UID}", "--clear-groups", "--", "sudo", "-n",
            *sudo_argv]


def traced(log: Path, argv: list[str]) -> list[str]:
    return ["strace", "-f", "-qq", "-s", "4096", "-o", str(log), "-e", "trace=" + ",".join(TRACED), *argv]


@dataclass(frozen=True)
class Open:
    path: str
    flags: str
    ok: bool  # the call returned a descriptor


class Trace:
    """What the tool's processes (the installed command and its children) did to files."""

    LINE = re.compile(r"^(\d+) +(\w+)\((.*)\) += (-?\d+|\?)")
    UNFINISHED = re.compile(r"^(\d+) +(.*) <unfinished \.\.\.>$")
    RESUMED = re.compile(r"^(\d+) +<\.\.\. \w+ resumed>(.*)$")

    def __init__(self, text: str, panel: Panel, user_lookup: bool = False):
        self.panel = panel
        #: --user names a chap-secrets user: the one call that may read chap-secrets.
        self.user_lookup = user_lookup
        self.writes: list[str] = []
        self.reads: list[str] = []
        self.opens: list[Open] = []
        self.ip_argvs: list[list[str]] = []
        calls = self.calls(text)
        # Whose calls count: from the execve of the command on, and all of its descendants.
        # Two passes, because with -f a child may log before its parent's clone returns.
        start = {}
        for index, (pid, call, args, ret) in enumerate(calls):
            paths = re.findall(r'"((?:[^"\\]|\\.)*)"', args)
            if call == "execve" and ret == "0" and paths and paths[0] in (CTL, VENV_PYTHON) and pid not in start:
                start[pid] = index
        grown = True
        while grown:
            grown = False
            for index, (pid, call, _args, ret) in enumerate(calls):
                if call in ("clone", "clone3", "fork", "vfork") and ret.isdigit() and index >= start.get(pid, 1 << 62) \
                        and int(ret) not in start:
                    start[int(ret)] = 0
                    grown = True
        self.pids = set(start)
        for index, (pid, call, args, ret) in enumerate(calls):
            if index < start.get(pid, 1 << 62):
                continue
            paths = re.findall(r'"((?:[^"\\]|\\.)*)"', args)
            if call == "execve" and paths and os.path.basename(paths[0]) == "ip":
                self.ip_argvs.append(re.findall(r'"((?:[^"\\]|\\.)*)"', args.split("[", 1)[1].split("]", 1)[0]))
            elif call in WRITE_CALLS:
                self.writes += [p for p in paths if p]
            elif call in ("open", "openat") and paths:
                flags = args.split(",")[2 if call == "openat" else 1]
                self.opens.append(Open(paths[0], flags.strip(), ret.isdigit()))
                (self.writes if re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", flags) else self.reads).append(paths[0])
        assert self.pids, "the trace did not see the installed command start"

    @classmethod
    def calls(cls, text: str) -> list[tuple[int, str, str, str]]:
        """(pid, call, arguments, return) for every call, an `<unfinished ...>` half joined to its
        `<... resumed>` half (with -f, another process's call often comes between them)."""
        pending: dict[int, str] = {}
        lines = []
        for raw in text.splitlines():
            unfinished = cls.UNFINISHED.match(raw)
            if unfinished:
                pending[int(unfinished.group(1))] = unfinished.group(2)
                continue
            resumed = cls.RESUMED.match(raw)
            if resumed:
                pid = int(resumed.group(1))
                assert pid in pending, f"a resumed call without its start: {raw}"
                raw = f"{pid} {pending.pop(pid)}{resumed.group(2)}"
            lines.append(raw)
        lines += [f"{pid} {head}) = ?" for pid, head in pending.items()]  # never returned (the process ended)
        calls = []
        for raw in lines:
            match = cls.LINE.match(raw)
            if match:
                calls.append((int(match.group(1)), match.group(2), match.group(3), match.group(4)))
        return calls

    def check(self, allow_store_writes: bool) -> None:
        for path in self.writes:
            device = path in ("/dev/null", "/dev/tty", "/dev/ptmx") or path.startswith("/dev/pts/")
            lock = path in (STORE, f"{STORE}/{C.LOCK_FILE_NAME}")  # makedirs(exist_ok) and the store lock
            route_file = path.startswith(STORE + "/") and not lock
            cache = path == CACHE or path.startswith(CACHE + "/")
            assert device or lock or (allow_store_writes and (route_file or cache)), f"wrote {path}"
        for path in self.reads:
            assert path.startswith(READ_OK) or path in (STORE, CACHE) \
                or path.startswith((STORE + "/", CACHE + "/")) \
                or path in READ_OK_ETC or path.startswith(READ_OK_ETC_DIRS) \
                or (self.user_lookup and path == CHAP), f"read {path}"
            assert "l2tc-canary" not in path and "panel-cwd" not in path, f"read {path}"
        forbidden = (str(self.panel.canary.resolve()), str(self.panel.cwd.resolve()))
        for opened in self.opens:
            # What was reached, not what was named: a symlink in the store resolves here.
            target = os.path.realpath(self.panel.host_path(opened.path))
            if opened.ok and (target + "/").startswith(tuple(f + "/" for f in forbidden)):
                raise AssertionError(f"opened {opened.path}, which is {target} ({opened.flags})")
        for argv in self.ip_argvs:
            for token in argv[1:]:
                assert re.fullmatch(r"[A-Za-z0-9_.:/+@-]{1,64}", token), f"ip got {token!r} in {argv}"


@pytest.fixture(scope="module")
def panel(installed, tmp_path_factory):
    root = tmp_path_factory.mktemp("privilege")
    os.chmod(root, 0o755)
    name = f"l2t-{os.getpid()}-priv"
    _ip("netns", "add", name)
    ns = Netns(name)
    ns.ip("link", "set", "lo", "up")
    ns.add_ppp("ppp0", ONLINE)
    p = Panel(root, ns)
    p.canary.mkdir()
    (p.canary / "secret").write_text(SECRET + "\n")
    (p.canary / "store").mkdir()
    (p.canary / "store" / f"{OFFLINE}.routes").write_text(f"{SECRET}\n")
    p.markers.mkdir(mode=0o777)
    os.chmod(p.markers, 0o777)
    p.cwd.mkdir()
    # Code an attacker leaves where a careless interpreter would import it from.
    evil = f"import os; open({str(p.markers)!r} + '/' + __name__ + '-' + str(os.getuid()), 'w').close()\n"
    for module in ("typer", "sh", "filelock", "sitecustomize", "usercustomize", "json", "ipaddress"):
        (p.cwd / f"{module}.py").write_text(evil)
    (p.cwd / "l2tproute").mkdir()
    (p.cwd / "l2tproute" / "__init__.py").write_text(evil)
    (p.cwd / "ip").write_text(f"#!/bin/sh\ntouch {p.markers}/ip-$(id -u)\n")
    os.chmod(p.cwd / "ip", 0o755)
    for path in [p.cwd, *p.cwd.rglob("*")]:
        os.chown(path, PANEL_UID, PANEL_UID)
    (p.store / f"{LINKED}.routes").symlink_to(p.canary / "secret")
    try:
        yield p
    finally:
        _ip("netns", "del", name, check=False)


def canaries(p: Panel) -> dict:
    found = {str(f): f.read_bytes() for f in p.canary.rglob("*") if f.is_file()}
    return {**found, "markers": sorted(os.listdir(p.markers))}


def store_state(p: Panel) -> dict:
    """Every entry of the store but the lock file (taking the lock creates it)."""
    return {n: (os.readlink(p.store / n) if (p.store / n).is_symlink() else (p.store / n).read_bytes())
            for n in os.listdir(p.store) if n != C.LOCK_FILE_NAME}


# {CANARY}: the canary directory; {CANARY_FROM_STORE} and {CANARY_FROM_NETNS}: the same, as a
# relative path from the store and from /run/netns (what a path built by joining would reach).
HOSTILE = [
    ["add", "--peer", "{CANARY_FROM_STORE}/secret", "--dst", "10.9.0.0/24"],
    ["add", "--peer", "{CANARY}/secret", "--dst", "10.9.0.0/24"],
    ["add", f"--peer={OFFLINE}/../{{CANARY_FROM_STORE}}/secret", "--dst", "10.9.0.0/24"],
    ["add", "--peer", OFFLINE, "--dst", "{CANARY}/secret"],
    ["add", "--peer", OFFLINE, "--dst", "10.9.0.0/24", "--dev", "{CANARY_FROM_STORE}"],
    ["add", "--peer", ONLINE, "--dst", "10.9.0.0/24", "--dev", "ppp0 table 255"],
    ["add", "--peer", ONLINE, "--dst", "10.9.0.0/24\nroute flush table main"],
    ["add", "--peer", ONLINE, "--dst", "10.9.0.0/24 dev lo"],
    ["add", "--peer", ONLINE, "--dst", "10.9.0.0/24", "--gw", f"{ONLINE}\nroute del default"],
    ["add", "--peer", ONLINE, "--dst", "10.9.0.0/24", "--table", "{CANARY}/secret"],
    ["add", "--peer", ONLINE, "--dst", "10.9.0.0/24", "--metric", "1 proto 4"],
    ["del", "--peer", "{CANARY_FROM_STORE}/secret", "--dst", "all"],
    ["del", "--peer", OFFLINE, "--dst", "{CANARY_FROM_STORE}/secret"],
    ["list", "--peer", "{CANARY}/secret"],
    ["list", "--peer", LINKED],
    ["add", "--peer", LINKED, "--dst", "10.9.0.0/24"],
    ["del", "--peer", LINKED, "--dst", "all"],
    ["list", "--user", "{CANARY_FROM_STORE}/secret"],
    ["apply", "--netns", "{CANARY_FROM_NETNS}"],
    ["apply", "--store", "{CANARY}/store"],
    ["--config", "{CANARY}/secret", "list"],
]


def aimed(args: list[str], p: Panel) -> list[str]:
    places = {"{CANARY}": str(p.canary), "{CANARY_FROM_STORE}": os.path.relpath(p.canary, STORE),
              "{CANARY_FROM_NETNS}": os.path.relpath(p.canary, "/run/netns")}
    out = []
    for arg in args:
        for mark, path in places.items():
            arg = arg.replace(mark, path)
        out.append(arg)
    return out


def test_the_hostile_paths_lead_to_the_canary(panel):
    """The attacks must aim at something that exists, or they prove nothing."""
    for args in HOSTILE:
        for arg in aimed(args, panel):
            if "l2tc-canary" in arg:
                path = arg.split("=", 1)[-1]
                base = STORE if "--netns" not in args else "/run/netns"
                reached = Path(os.path.normpath(os.path.join(base, path.replace(f"{OFFLINE}/../", ""))))
                assert reached.exists() and "l2tc-canary" in str(reached), (args, arg, reached)


@pytest.mark.parametrize("args", HOSTILE, ids=[" ".join(a)[:60] for a in HOSTILE])
def test_no_argument_reaches_outside_the_store_or_past_validation(panel, args):
    before, kernel, store = canaries(panel), panel.ns.snapshot(), store_state(panel)
    proc, trace = panel.run(*aimed(args, panel))
    assert proc.returncode in (1, 2), proc
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{C.PROG}: error: "), proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    trace.check(allow_store_writes=False)
    assert canaries(panel) == before and store_state(panel) == store and panel.ns.snapshot() == kernel


def test_the_panels_own_requests_work_and_write_only_in_the_store(panel):
    kernel = panel.ns.snapshot()
    proc, trace = panel.run("add", "--peer", ONLINE, "--dst", "10.9.0.0/24")
    assert proc.returncode == 0 and proc.stderr == "", proc
    trace.check(allow_store_writes=True)
    assert any(p.startswith(f"{STORE}/{ONLINE}.routes") or p.startswith(f"{STORE}/{C.TEMP_FILE_PREFIX}")
               for p in trace.writes), trace.writes
    assert (panel.store / f"{ONLINE}.routes").read_text() == f"10.9.0.0/24 via {ONLINE}\n"
    assert panel.ns.tagged_set() == {("10.9.0.0/24", ONLINE, "ppp0", "main")}
    proc, trace = panel.run("list", "--peer", ONLINE)
    assert proc.returncode == 0 and f"10.9.0.0/24 via {ONLINE}" in proc.stdout
    trace.check(allow_store_writes=False)
    proc, trace = panel.run("apply")
    assert proc.returncode == 0, proc
    assert any(argv[1:3] == ["-force", "-batch"] or "-json" in argv for argv in trace.ip_argvs), trace.ip_argvs
    assert not any("-n" in argv for argv in trace.ip_argvs), "the panel reached another namespace"
    trace.check(allow_store_writes=False)
    proc, trace = panel.run("del", "--peer", ONLINE, "--dst", "all")
    assert proc.returncode == 0, proc
    trace.check(allow_store_writes=True)
    assert not (panel.store / f"{ONLINE}.routes").exists() and panel.ns.snapshot() == kernel


def test_the_callers_environment_and_directory_change_nothing_under_sudo(panel):
    hostile = {C.STORE_DIR_ENV: str(panel.canary / "store"), "PYTHONPATH": str(panel.cwd),
               "PYTHONSTARTUP": str(panel.cwd / "typer.py"), "PYTHONINSPECT": "1", "PYTHONHOME": str(panel.cwd),
               "PYTHONUSERBASE": str(panel.cwd), "PATH": f"{panel.cwd}:/usr/bin:/bin",
               "LD_PRELOAD": str(panel.cwd / "x.so")}
    proc, trace = panel.run("list", "--peer", OFFLINE, env=hostile)
    assert (proc.returncode, proc.stdout) == (0, f"No routes found for peer: {OFFLINE}\n"), proc  # not the canary's
    assert SECRET not in proc.stdout + proc.stderr
    proc, trace = panel.run("apply", env=hostile)
    assert proc.returncode == 0, proc
    trace.check(allow_store_writes=False)
    assert os.listdir(panel.markers) == [], "code from the caller's directory or PYTHONPATH ran"
    # sudo refuses to keep or set the environment for this entry (no SETENV).
    for sudo in (["-E"], ["--preserve-env=L2TP_ROUTES_DIR,PYTHONPATH"]):
        proc, _ = panel.run("list", env=hostile, sudo=sudo, trace=False)
        assert proc.returncode != 0 and SECRET not in proc.stdout + proc.stderr, proc
    proc = subprocess.run(panel.sandboxed(["setpriv", f"--reuid={PANEL_UID}", f"--regid={PANEL_UID}",
                                           "--clear-groups", "--", "sudo", "-n",
                                           f"{C.STORE_DIR_ENV}={panel.canary / 'store'}", CTL, "list"]),
                          capture_output=True, text=True, cwd=panel.cwd, timeout=120)
    assert proc.returncode != 0 and SECRET not in proc.stdout + proc.stderr, proc
    assert os.listdir(panel.markers) == []


def test_the_tool_itself_ignores_the_store_variable_and_python_variables_when_run_by_sudo(panel):
    """Defence in depth: even if sudoers kept the environment, the tool would not follow it."""
    env = {"PATH": "/usr/bin:/bin", "SUDO_UID": str(PANEL_UID), "SUDO_USER": "www-data",
           C.STORE_DIR_ENV: str(panel.canary / "store"), "PYTHONPATH": str(panel.cwd),
           "PYTHONSTARTUP": str(panel.cwd / "typer.py"), "PYTHONINSPECT": "1"}
    (panel.store / f"{OFFLINE}.routes").write_text(f"10.9.9.0/24 via {OFFLINE}\n")
    try:
        proc = subprocess.run(panel.sandboxed([CTL, "list", "--peer", OFFLINE]), capture_output=True, text=True,
                              env=env, cwd=panel.cwd, timeout=120)
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            0, f"Routes for peer {OFFLINE}:\n10.9.9.0/24 via {OFFLINE}\n", ""), proc  # the store, not the variable's
        proc = subprocess.run(panel.sandboxed([CTL, "del", "--peer", OFFLINE, "--dst", "all"]),
                              capture_output=True, text=True, env=env, cwd=panel.cwd, timeout=120)
        assert proc.returncode == 0, proc
        assert not (panel.store / f"{OFFLINE}.routes").exists()
        assert (panel.canary / "store" / f"{OFFLINE}.routes").read_text() == f"{SECRET}\n"
        assert os.listdir(panel.markers) == []
    finally:
        (panel.store / f"{OFFLINE}.routes").unlink(missing_ok=True)


def test_a_symlink_in_the_store_is_never_followed(panel):
    before = canaries(panel)
    proc, trace = panel.run("apply")
    assert proc.returncode == 0, proc
    assert f"{LINKED}.routes: a symbolic link" in proc.stderr and SECRET not in proc.stdout + proc.stderr
    secret = (panel.canary / "secret").resolve()
    reached = [o for o in trace.opens if o.ok and Path(os.path.realpath(panel.host_path(o.path))) == secret]
    assert reached == [], f"the link was followed to the secret: {reached}"
    trace.check(allow_store_writes=False)
    assert canaries(panel) == before and (panel.store / f"{LINKED}.routes").is_symlink()


def test_the_trace_reader_joins_split_calls_and_sees_where_a_link_leads(tmp_path):
    """The checks above are only as good as the trace reader: a call strace split in two
    (another process logged in between) is one call, a child that logs before its parent's
    clone returns is the tool's, and opening the store's symlink counts as opening its target."""
    p = Panel(tmp_path, None)
    p.canary.mkdir()
    (p.canary / "secret").write_text(SECRET)
    (p.store / f"{LINKED}.routes").symlink_to(p.canary / "secret")
    link = f"{STORE}/{LINKED}.routes"
    text = "\n".join([
        f'100 execve("{CTL}", ["{CTL}", "apply"], 0x7ffc /* 3 vars */) = 0',
        "100 clone(child_stack=NULL, flags=CLONE_VM|CLONE_VFORK|SIGCHLD <unfinished ...>",
        '101 execve("/usr/sbin/ip", ["ip", "-n", "x", "route", "flush"], 0x7ffc /* 3 vars */) = 0',
        "100 <... clone resumed>) = 101",
        f'100 openat(AT_FDCWD, "{link}", O_RDONLY|O_CLOEXEC <unfinished ...>',
        '200 openat(AT_FDCWD, "/etc/passwd", O_RDONLY) = 3',
        "100 <... openat resumed>) = 4",
    ])
    trace = Trace(text, p)
    assert trace.pids == {100, 101}
    assert trace.ip_argvs == [["ip", "-n", "x", "route", "flush"]]
    assert trace.opens == [Open(link, "O_RDONLY|O_CLOEXEC", True)]
    with pytest.raises(AssertionError, match="which is .*l2tc-canary/secret"):
        trace.check(allow_store_writes=False)
    refused = Trace(text.replace(") = 4", ") = -1 ELOOP (Too many levels of symbolic links)"), p)
    refused.check(allow_store_writes=False)
    # Under /etc only the files the tool needs: a secret is a failure, chap-secrets only for --user.
    for secret in ("/etc/shadow", CHAP, "/etc/sudoers", "/etc/ssh/ssh_host_ed25519_key"):
        read = Trace(text.replace(") = 4", ") = -1 ELOOP (Too many levels of symbolic links)") + "\n"
                     + f'100 openat(AT_FDCWD, "{secret}", O_RDONLY|O_CLOEXEC) = 5', p)
        with pytest.raises(AssertionError, match=f"read {secret}"):
            read.check(allow_store_writes=False)
    read = Trace(text.replace(") = 4", ") = -1 ELOOP (Too many levels of symbolic links)") + "\n"
                 + f'100 openat(AT_FDCWD, "{CHAP}", O_RDONLY|O_CLOEXEC) = 5', p, user_lookup=True)
    read.check(allow_store_writes=False)


# -- the panel's limits, on the scratch server of panelworld.py ---------------------------

@pytest.fixture(scope="module")
def server(installed, tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    os.chmod(root, 0o755)
    with world(root, "priv-limits") as w:
        yield w


def sudo_in(w, *args: str, sudo: list[str] = (), log: Path | None = None) -> subprocess.CompletedProcess:
    argv = as_panel(*sudo, CTL, *args)
    return w.run("env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
                 *(traced(log, argv) if log is not None else argv))


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_the_panel_cannot_take_the_servers_routes_or_another_users(server, case):
    _, args, words = case
    before = server.state()
    log = server.root / "trace.log"
    proc = sudo_in(server, *refused_argv(server, args), log=log)
    check_refused(server, proc, words, before)
    view = Panel(server.root, server.server)
    view.store = server.store  # what the tool sees as the store, for the trace's checks
    trace = Trace(log.read_text(), view)
    trace.check(allow_store_writes=False)
    changes = [argv for argv in trace.ip_argvs if "-batch" in argv or {"add", "replace", "del"} & set(argv)]
    assert changes == [], changes


def test_the_panel_cannot_name_another_caller_to_sudo(server):
    before = server.state()
    # sudo refuses to take the variables from the caller, and sets them itself when it runs the command.
    for sudo in (["SUDO_USER=root"], ["--preserve-env=SUDO_USER"], ["-u", "root", "SUDO_UID=0"], ["-E"], []):
        proc = server.run("env", "SUDO_USER=root", "SUDO_UID=0", *as_panel(*sudo, CTL, "add", "--peer", A,
                                                                           "--dst", "0.0.0.0/1", "--force"))
        assert proc.returncode != 0, proc
        assert server.state() == before


def test_the_panels_own_calls_pass_through_sudo(server):
    walk_the_panels_calls(server, lambda *args: sudo_in(server, *args))


def test_root_through_sudo_keeps_force(server):
    before = server.state()
    proc = server.run("env", "-i", "PATH=/usr/bin:/bin", "sudo", "-n", CTL, "add", "--peer", A, "--dst",
                      "0.0.0.0/1", "--force")
    assert proc.returncode == 0, proc
    assert ("0.0.0.0/1", A, "ppp0", "main") in tagged(server.server)
    assert server.run("sudo", "-n", CTL, "del", "--peer", A, "--dst", "all").returncode == 0
    assert server.state() == before
