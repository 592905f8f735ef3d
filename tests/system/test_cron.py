"""contrib/cron/l2tproute, the re-apply where systemd is not the running init, run by a real cron.

    scratch netns (ppp0 -> peer 10.255.10.2, no default route until the test adds one)
      +-- private mount namespace: scratch dirs over /etc/cron.d, /etc/crontab,
          /var/spool/cron/crontabs, /run (cron's pid and @reboot flag, the job's lock)
          and /dev (a /dev/log the test listens on)
            +-- cron -f -L 15, or the job's command line run by /bin/sh -c as cron runs it

The file the tests run is the shipped one with three substitutions: this checkout's
console script for /usr/local/sbin/l2tp-routectl, a scratch store (L2TP_ROUTES_DIR), and
for direct runs a scratch lock. Nothing of this machine's cron, syslog or routes is used.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, routectl_path
from fronts import Fronts, wait_for_worker
from support.polling import holds_for

from l2tproute.core import constants as C
from l2tproute.system.netns import named
from l2tproute.system.store import Store

SHIPPED = REPO / "contrib/cron/l2tproute"
MARKER = "# Installed by install-l2tp-per-user-routing.sh (l2tproute)"
COMMAND = "/usr/local/sbin/l2tp-routectl"
LOCK = "/run/l2tproute-cron.lock"
PEER, ROUTE = "10.255.10.2", "192.168.20.0/24"
LOG_PRIORITY = {"notice": 5, "warning": 4, "err": 3}
DAEMON = 3 << 3
SKIPPED = "cron: skipped, the previous apply still runs"
KICK = "/opt/l2tproute/libexec/l2tp-routes-kick"



ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class Job:
    schedule: str
    user: str
    command: str


def jobs(text: str) -> list[Job]:
    found = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or ASSIGNMENT.match(line):
            continue
        if line.startswith("@"):
            schedule, user, command = line.split(None, 2)
        else:
            fields = line.split(None, 6)
            schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
        found.append(Job(schedule, user, command))
    return found


def environment(text: str) -> dict[str, str]:
    """What cron gives a job of a system crontab: its own few variables and the file's."""
    env = {"HOME": "/root", "LOGNAME": "root", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
    env.update(m.groups() for m in map(ASSIGNMENT.match, text.splitlines()) if m)
    return env


def scratch_copy(store: Path, lock: str = LOCK, bound: int | None = None, kick: Path | None = None) -> str:
    """The shipped file with this checkout's command and a scratch store (and lock, and kick)."""
    text = SHIPPED.read_text()
    assert text.count(COMMAND) == 2 and text.count(LOCK) == 2 and text.count("\nPATH=") == 1
    assert text.count(f"root {KICK}\n") == 1
    text = text.replace(COMMAND, routectl_path()).replace(LOCK, lock)
    if kick is not None:
        text = text.replace(KICK, str(kick))
    text = re.sub(r"(?m)^PATH=.*$", lambda m: f"{m.group(0)}\n{C.STORE_DIR_ENV}={store}", text)
    if bound is not None:  # the boot job's wait for the network, shortened for a test
        assert text.count(" -ge 60 ]") == 1 and text.count(" -lt 60 ]") == 1
        text = text.replace(" -ge 60 ]", f" -ge {bound} ]").replace(" -lt 60 ]", f" -lt {bound} ]")
        text = text.replace("after 60 s", f"after {bound} s")
    return text


@dataclass(frozen=True)
class Message:
    priority: int
    tag: str
    text: str


class SyslogSink:
    """A /dev/log for the sandbox: every datagram, parsed."""

    PATTERN = re.compile(r"^<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d ([^:\[]+)(?:\[\d+\])?: (.*)$", re.S)

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[Message] = []
        self.raw: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.raw.append(data)
            match = self.PATTERN.match(data.decode(errors="replace"))
            if match:
                self.messages.append(Message(int(match.group(1)), match.group(2), match.group(3).rstrip("\n")))

    def ours(self) -> list[Message]:
        return [m for m in self.messages if m.tag == C.SYSLOG_IDENT]

    def count(self, predicate) -> int:
        return len([m for m in list(self.messages) if predicate(m)])

    def wait_for(self, predicate, timeout: float, count: int = 1) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.count(predicate) >= count:
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


SANDBOX = r"""
set -eu
S=$1; shift
for node in null zero full random urandom tty; do : >"$S/dev/$node"; mount --bind "/dev/$node" "$S/dev/$node"; done
ln -sfn /proc/self/fd "$S/dev/fd"
mount --bind "$S/cron.d" /etc/cron.d
mount --bind "$S/crontab" /etc/crontab
mount --bind "$S/crontabs" /var/spool/cron/crontabs
mount --bind "$S/run" /run
mount --bind "$S/dev" /dev
exec "$@"
"""


class Sandbox:
    """The scratch directories and syslog of one test; processes run in netns + a private mount ns."""

    def __init__(self, root: Path, netns):
        self.root, self.netns = root, netns
        root.mkdir()
        for name in ("cron.d", "crontabs", "run", "dev"):
            (root / name).mkdir()
        (root / "crontab").write_text("# the sandbox has no system crontab\n")
        (root / "cron.d").chmod(0o755)
        self.syslog = SyslogSink(root / "dev/log")
        self.processes: list[subprocess.Popen] = []

    def start(self, *argv: str) -> subprocess.Popen:
        command = ["ip", "netns", "exec", self.netns.name, "unshare", "--mount", "--propagation", "private",
                   "sh", "-c", SANDBOX, "sandbox", str(self.root), *argv]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        return process

    def run_job(self, crontab: str, index: int, timeout: float = 60) -> subprocess.CompletedProcess:
        """A job's command line as cron runs it: /bin/sh -c with the file's environment, in the sandbox."""
        process = self.start_job(crontab, index)
        out, _ = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, "")

    def start_job(self, crontab: str, index: int) -> subprocess.Popen:
        env = [f"{name}={value}" for name, value in environment(crontab).items()]
        return self.start("env", "-i", *env, "/bin/sh", "-c", jobs(crontab)[index].command)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        self.syslog.close()


@pytest.fixture
def sandbox(tmp_path, netns):
    box = Sandbox(tmp_path / "sandbox", netns)
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def connected_peer(tmp_path, netns) -> Path:
    """One session (ppp0, peer PEER) and a scratch store with one route for it."""
    netns.add_ppp("ppp0", PEER)
    store = tmp_path / "routes.d"
    store.mkdir()
    (store / f"{PEER}.routes").write_text(f"{ROUTE} via {PEER}\n")
    return store


def applied(message: Message) -> bool:
    return message.tag == C.SYSLOG_IDENT and message.text.startswith("Applied routes: ")


# -- the file ---------------------------------------------------------------------

def test_the_file_is_marked_and_runs_apply_at_boot_and_every_minute_under_one_lock_and_syslog():
    text = SHIPPED.read_text()
    assert text.splitlines()[0] == MARKER
    assert "%" not in text  # cron turns % into a newline
    assert "\nSHELL=/bin/sh\n" in text
    boot, minute, kick = jobs(text)
    assert (boot.schedule, boot.user, minute.schedule, minute.user) == ("@reboot", "root", "* * * * *", "root")
    assert kick == Job("* * * * *", "root", KICK)
    assert minute.command.startswith(f"{{ flock -n -E 75 {LOCK} {COMMAND} apply; ")
    assert minute.command.endswith(f"2>&1 | logger -t {C.SYSLOG_IDENT} -p daemon.notice")
    # The boot job is the minute job behind a bounded wait for the network: one command, once.
    assert boot.command.endswith("; " + minute.command)
    assert boot.command.startswith("n=0; until ip route show default | grep -q . || [ $n -ge 60 ]; do sleep 1;")


# -- a real cron daemon -----------------------------------------------------------

def test_a_real_cron_reads_the_file_without_error_and_runs_the_boot_and_the_minute_apply(sandbox, netns,
                                                                                        connected_peer, tmp_path):
    # A missing cron is a failure, not a skip: run-tests.sh installs it.
    assert Path("/usr/sbin/cron").is_file(), "needs Debian's cron package: apt-get install cron"
    cron_d = sandbox.root / "cron.d"
    kick = checkout_kick(tmp_path / "fronts")
    (cron_d / "l2tproute").write_text(scratch_copy(connected_peer, kick=kick))
    (cron_d / "l2tproute").chmod(0o644)
    # A broken file beside it: proves that cron's syslog names a file it cannot read.
    (cron_d / "broken").write_text("SHELL=/bin/sh\n61 * * * * root true\n")
    (cron_d / "broken").chmod(0o644)
    # Start away from a minute boundary, so the minute job cannot run before the checks of the boot job.
    while not 2 <= time.localtime().tm_sec <= 40:
        time.sleep(0.5)
    cron = sandbox.start("cron", "-f", "-L", "15")
    log = sandbox.syslog

    assert log.wait_for(lambda m: m.tag == "CRON" and "CMD (" in m.text and "n=0; until ip route" in m.text, 10), \
        log.raw
    # The boot job waits for the network: no default route in the namespace yet, nothing applied
    # at any look for 3 s (its loop looks every second).
    assert holds_for(lambda: netns.tagged_set() == set() and log.ours() == [], 3, 0.1), log.raw
    netns.add_lan("lan0", "192.0.2.1/24")
    netns.ip("route", "add", "default", "dev", "lan0")
    assert log.wait_for(applied, 15), log.raw
    assert netns.tagged_set() == {(ROUTE, PEER, "ppp0", "main")}
    first = log.ours()
    assert first[0] == Message(DAEMON | LOG_PRIORITY["notice"], C.SYSLOG_IDENT,
                               f"Installed route for peer {PEER}: {ROUTE} via {PEER}"), first
    assert first[1].text.startswith("Applied routes: 1 peers connected, 0 offline; 1 installed,"), first

    # A route removed by hand is back with the next minute's run.
    netns.ip("route", "del", ROUTE)
    assert log.wait_for(lambda m: m.tag == "CRON" and "CMD ([" in m.text and m.text.split("] ", 1)[1].startswith(
        "{ flock -n"), 70), log.raw
    assert log.wait_for(applied, 30, count=2), log.raw
    assert log.wait_for(lambda m: m.tag == "CRON" and "CMD ([" in m.text and m.text.endswith(f"] {kick})"), 5), log.raw
    assert netns.tagged_set() == {(ROUTE, PEER, "ppp0", "main")}
    assert cron.poll() is None

    about_ours = [m.text for m in log.messages if "l2tproute" in m.text and m.tag.lower() == "cron"]
    assert not [t for t in about_ours if "rror" in t], about_ours
    assert [m.text for m in log.messages if "/etc/cron.d/broken" in m.text and "rror" in m.text], log.raw
    assert not [m for m in log.ours() if m.priority & 7 < LOG_PRIORITY["notice"]], log.ours()


# -- the job's command line, run as cron runs it ---------------------------------------

def test_a_run_that_finds_the_previous_one_still_going_skips_and_logs_it(sandbox, netns, connected_peer):
    crontab = scratch_copy(connected_peer)
    lock = sandbox.root / "run" / Path(LOCK).name
    # The first run is slow: it waits for the store lock, which the test holds.
    with Store(str(connected_peer)).locked():
        slow = sandbox.start_job(crontab, 1)
        end = time.monotonic() + 20
        while time.monotonic() < end and subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            time.sleep(0.1)
        assert lock.exists() and subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 1
        second = sandbox.run_job(crontab, 1, timeout=20)
        assert (second.returncode, second.stdout) == (0, "")
        assert slow.poll() is None  # the second run did not wait for the first
        assert sandbox.syslog.wait_for(lambda m: m.text == SKIPPED, 5), sandbox.syslog.raw
        assert netns.tagged_set() == set()
    assert slow.wait(timeout=30) == 0
    assert sandbox.syslog.wait_for(applied, 5)
    assert netns.tagged_set() == {(ROUTE, PEER, "ppp0", "main")}
    # Once the first run is over, the next one runs again.
    assert sandbox.run_job(crontab, 1).returncode == 0
    assert sandbox.syslog.wait_for(lambda m: applied(m) and "1 unchanged" in m.text, 5), sandbox.syslog.raw
    ours = sandbox.syslog.ours()
    assert [m.priority for m in ours if m.text == SKIPPED] == [DAEMON | LOG_PRIORITY["warning"]], ours
    assert len([m for m in ours if applied(m)]) == 2, ours


def test_the_boot_run_applies_after_its_bounded_wait_without_a_network(sandbox, netns, connected_peer):
    result = sandbox.run_job(scratch_copy(connected_peer, bound=2), 0)
    assert (result.returncode, result.stdout) == (0, "")
    assert sandbox.syslog.wait_for(applied, 5), sandbox.syslog.raw
    ours = sandbox.syslog.ours()
    assert ours[0] == Message(DAEMON | LOG_PRIORITY["warning"], C.SYSLOG_IDENT,
                              "cron: no default route after 2 s, applying anyway"), ours
    assert netns.tagged_set() == {(ROUTE, PEER, "ppp0", "main")}


def test_a_failed_apply_is_logged_at_priority_err_with_its_exit_status(sandbox, netns, tmp_path):
    not_a_store = tmp_path / "not-a-directory"
    not_a_store.write_text("")
    result = sandbox.run_job(scratch_copy(not_a_store), 1)
    assert result.returncode == 0
    failed = Message(DAEMON | LOG_PRIORITY["err"], C.SYSLOG_IDENT, "cron: apply failed with exit status 1")
    assert sandbox.syslog.wait_for(lambda m: m == failed, 5), sandbox.syslog.raw
    errors = [m.text for m in sandbox.syslog.ours() if m.text.startswith(f"{C.PROG}: error: ")]
    assert errors and str(not_a_store) in errors[0], sandbox.syslog.raw


def checkout_kick(directory: Path) -> Path:
    """bin/l2tp-routes-kick as installed, but with this checkout's helpers and worker."""
    fronts = Fronts(directory)
    text = (REPO / "bin/l2tp-routes-kick").read_text()
    for old, new in {"WORKER=/opt/l2tproute/libexec/l2tp-routes-worker": f"WORKER={fronts.worker}",
                     "LIB=/opt/l2tproute/libexec/l2tproute.sh": f"LIB={REPO / 'lib/l2tproute.sh'}"}.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    kick = directory / "l2tp-routes-kick"
    kick.write_text(text)
    kick.chmod(0o755)
    return kick


def test_the_minute_kick_starts_the_worker_that_drains_the_spool_and_returns_at_once(sandbox, netns, connected_peer,
                                                                                   tmp_path):
    """OpenVPN's events wait a minute at most even if their hook could not start the worker:
    cron's kick starts it, as pppd's hook front does (the sandbox's /run is the real path)."""
    kick = checkout_kick(tmp_path / "fronts")
    run = sandbox.root / "run" / "l2tproute"
    (run / "spool").mkdir(parents=True)
    (run / "spool" / f"{named(netns.name)},ppp0,1,up,{PEER}").write_text("")
    result = sandbox.run_job(scratch_copy(connected_peer, kick=kick), 2)
    assert (result.returncode, result.stdout) == (0, "")
    wait_for_worker(run)
    assert netns.tagged_set() == {(ROUTE, PEER, "ppp0", "main")}
    assert sandbox.syslog.wait_for(lambda m: m.tag == C.SYSLOG_IDENT and PEER in m.text, 5), sandbox.syslog.raw
    # Called wrongly: one line saying so, nothing started.
    wrong = subprocess.run([str(kick), "now"], capture_output=True, text=True, timeout=10)
    assert (wrong.returncode, wrong.stdout) == (2, "")
    assert wrong.stderr == "l2tp-routes-kick: error: it takes no arguments; run it as l2tp-routes-kick\n"
