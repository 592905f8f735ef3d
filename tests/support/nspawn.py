"""Debian systems with a real systemd as PID 1: root filesystems built once, booted in systemd-nspawn.

    rootfs("bookworm")            debootstrap once per machine, cached in /var/cache/l2tproute-tests
    with Container(rootfs, workdir, binds={"/src": checkout}) as box:
        box.run("systemctl", "is-enabled", "x.timer")      a command inside: output and exit status
        box.journal("x.service")                            what the unit logged since this boot
        box.reboot()                                        a clean poweroff and a new boot of the same disk

The container's disk is an overlay: the cached root filesystem (never written) below, a
scratch directory of the test above, so what a test installs survives a reboot and the
cache stays clean for the next run. The container has a private network namespace: its
routes are its own, and it has no network access (installs in it are offline).

This machine's PID 1 is not systemd and has no machined or system bus: nspawn runs with
--register=no --keep-unit inside a cgroup of our own (else it puts its payload and
supervisor cgroups at the hierarchy's root), with a pure cgroup2 hierarchy inside
(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

CACHE = Path("/var/cache/l2tproute-tests")
#: What the tool needs on a server (no network in the container: python3-venv for the venv and
#: its bundled pip, iproute2, sudo, ppp for Debian's ip-up/ip-down dispatcher) and a booting systemd.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "iproute2", "python3", "python3-venv", "sudo", "ppp")
#: Timers that would start unrelated work during a test, and consoles nobody logs into.
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
          "e2scrub_reap.service", "fstrim.timer", "getty@.service", "console-getty.service", "getty.target",
          "systemd-pstore.service")
#: Bump when the way a root filesystem is made changes: cached ones are then rebuilt.
RECIPE_VERSION = 1
TOOLS = ("debootstrap", "systemd-nspawn", "nsenter", "unshare")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

_counter = itertools.count()


#: In a booted box: the checkout is bound at /src, and the units the installer puts in place.
INSTALLER = "/src/install-l2tp-per-user-routing.sh"
UNIT_DIR = "/etc/systemd/system"
SERVICE = "route-l2tp-apply-all.service"
TIMER = "route-l2tp-apply-all.timer"


class ContainerError(RuntimeError):
    """A prerequisite is missing or the container did not do what it must (the test fails, never skips)."""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


# -- the root filesystem ----------------------------------------------------------------

def apt_entries() -> list[tuple[str, list[str]]]:
    """(URI, suites) of every `deb` source this machine's apt uses, one-line and deb822 formats."""
    entries = []
    for path in sorted(Path("/etc/apt").glob("sources.list*")) + sorted(Path("/etc/apt/sources.list.d").glob("*")):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split():
                    entries += [(uri, fields.get("Suites", "").split()) for uri in fields.get("URIs", "").split()]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], [words[2]]))
    return entries


def debian_mirror() -> str:
    """The Debian archive this machine's apt is configured with (its main suite), else deb.debian.org."""
    os_release = dict(re.findall(r"^(\w+)=\"?([^\"\n]*)\"?$", Path("/etc/os-release").read_text(), re.M))
    if os_release.get("ID") == "debian":
        for uri, suites in apt_entries():
            if os_release.get("VERSION_CODENAME") in suites:
                return uri
    return DEFAULT_MIRROR


def rootfs(suite: str = "bookworm", mirror: str | None = None, cache: Path = CACHE,
           extra: tuple[str, ...] = ()) -> Path:
    """A bootable Debian `suite`, built by debootstrap the first time and reused after (45-90 s once).

    `extra` packages make another root filesystem, cached under its own name (rootfs-SUITE-EXTRA...):
    the plain one stays what the other tests boot.
    """
    packages = (*PACKAGES, *extra)
    name = "-".join(("rootfs", suite, *extra))
    recipe = json.dumps({"version": RECIPE_VERSION, "suite": suite, "packages": packages, "masked": MASKED})
    target = cache / name
    stamp = cache / f"{name}.recipe"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second test run on this machine waits for the first build
        if target.is_dir() and stamp.is_file() and stamp.read_text() == recipe:
            return target
        missing = missing_tools()
        if missing:
            raise ContainerError(f"missing {', '.join(missing)}: apt-get install debootstrap systemd-container")
        building = cache / f"{name}.new"
        shutil.rmtree(building, ignore_errors=True)
        mirror = mirror or debian_mirror()
        result = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite,
                                 str(building), mirror], capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise ContainerError(f"debootstrap {suite} from {mirror} failed:\n{result.stdout[-2000:]}"
                                 f"{result.stderr[-2000:]}")
        for unit in MASKED:
            link = building / "etc/systemd/system" / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        # Empty: each boot gets a fresh id (systemd's first-boot rule), the image stays shareable.
        (building / "etc/machine-id").write_text("")
        stamp.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
        stamp.write_text(recipe)
        return target


def rootfs_or_fail(suite: str = "bookworm", **kwargs) -> Path:
    """The cached root filesystem a test boots, or that test fails saying what is missing: CI
    installs the tools (run-tests.sh), so a missing one is a failure, never a skip."""
    import pytest

    if missing_tools():
        pytest.fail(f"missing {', '.join(missing_tools())}: apt-get install debootstrap systemd-container")
    try:
        return rootfs(suite, **kwargs)
    except ContainerError as error:
        pytest.fail(str(error))


def rootfs_python(root: Path) -> str:
    """X.Y of the root filesystem's python3 (/usr/bin/python3 -> python3.Y)."""
    found = re.fullmatch(r"python(\d+\.\d+)", os.readlink(root / "usr/bin/python3"))
    if not found:
        raise ContainerError(f"cannot tell the Python version of {root}")
    return found[1]


# -- cgroups ------------------------------------------------------------------------------

def cgroup_roots() -> list[Path]:
    """Where our own cgroup goes: both hierarchies nspawn uses on a hybrid host, or the one of a cgroup2 host."""
    base = Path("/sys/fs/cgroup")
    if (base / "unified/cgroup.procs").exists():
        return [base / "unified", base / "systemd"]
    return [base]


def remove_cgroup(path: Path) -> None:
    """rmdir from the leaves up (a cgroup directory is removed only when empty)."""
    if not path.is_dir():
        return
    for directory, _subdirs, _files in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
        for _ in range(50):
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)  # the last processes of a poweroff are still leaving


# -- the container ----------------------------------------------------------------------

class Container:
    """One Debian system with systemd as PID 1, booted from `root` with a writable overlay in `workdir`."""

    def __init__(self, root: Path, workdir: Path, binds: dict[str, Path] | None = None,
                 nspawn_args: tuple[str, ...] = ()):
        self.root = root
        self.name = f"l2t-{os.getpid()}-{next(_counter)}"
        self.workdir = workdir
        self.binds = dict(binds or {})
        self.nspawn_args = nspawn_args
        self.upper, self.overlay_work, self.merged = (workdir / "upper", workdir / "work", workdir / "merged")
        self.cgroups = [base / self.name for base in cgroup_roots()]
        self.console = workdir / "console.log"
        self.process: subprocess.Popen | None = None
        self.pid1 = 0
        self.boots = 0

    # -- lifecycle

    def __enter__(self) -> Container:
        self.boot()
        return self

    def __exit__(self, *exc) -> None:
        self.poweroff()

    def nspawn_argv(self) -> list[str]:
        binds = [f"--bind-ro={host}:{inside}" for inside, host in self.binds.items()]
        nspawn = ["systemd-nspawn", "-D", str(self.merged), "--boot", "--register=no", "--keep-unit",
                  "--private-network", "--link-journal=no", "--console=read-only", "--resolv-conf=off",
                  "--timezone=off", f"--machine={self.name}", *binds, *self.nspawn_args]
        # The overlay is mounted in a mount namespace of nspawn's own: it goes away with nspawn.
        script = ('mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"; shift 4; '
                  'exec "$@"')
        return ["unshare", "-m", "--propagation", "private", "sh", "-euc", script, "sh", str(self.root),
                str(self.upper), str(self.overlay_work), str(self.merged), *nspawn]

    def boot(self, timeout: float = 180) -> str:
        """Start the container and wait until systemd says the boot is over; returns its state."""
        if missing_tools():
            raise ContainerError(f"missing {', '.join(missing_tools())}: apt-get install systemd-container")
        for directory in (self.upper, self.overlay_work, self.merged, *self.cgroups):
            directory.mkdir(parents=True, exist_ok=True)
        procs = [str(cgroup / "cgroup.procs") for cgroup in self.cgroups]

        def join_cgroups() -> None:
            for path in procs:
                with open(path, "w") as handle:
                    handle.write("0")

        env = {"PATH": PATH, "LANG": "C", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        with open(self.console, "ab") as log:
            self.process = subprocess.Popen(self.nspawn_argv(), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=env, preexec_fn=join_cgroups)
        self.boots += 1
        deadline = time.monotonic() + timeout
        self.pid1 = self.wait_for(self.find_pid1, deadline - time.monotonic(), "systemd to start as PID 1")
        state = self.wait_for(self.boot_finished, deadline - time.monotonic(), "the boot to finish")
        return state

    def find_pid1(self) -> int:
        assert self.process is not None
        if self.process.poll() is not None:
            raise ContainerError(f"systemd-nspawn exited with {self.process.returncode}:\n{self.console_tail()}")
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            for child in task.read_text().split():
                try:
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                        return int(child)
                except OSError:
                    continue
        return 0

    def boot_finished(self) -> str:
        assert self.process is not None
        if self.process.poll() is not None:
            raise ContainerError(f"systemd-nspawn exited with {self.process.returncode}:\n{self.console_tail()}")
        result = self.run("systemctl", "is-system-running", "--wait", timeout=60)
        state = result.stdout.strip()
        return state if state in ("running", "degraded") else ""

    def poweroff(self, timeout: float = 60) -> None:
        """SIGTERM to nspawn is a clean poweroff; if nspawn is gone, SIGRTMIN+3 asks PID 1 directly."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.pid1:
                    os.kill(self.pid1, signal.SIGRTMIN + 3)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.pid1 = 0
        for cgroup in self.cgroups:
            remove_cgroup(cgroup)

    def reboot(self) -> str:
        self.poweroff()
        return self.boot()

    def console_tail(self, lines: int = 40) -> str:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- inside

    def run(self, *argv: str, input: str | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run argv in every namespace of the container, with a clean environment (as a unit would have)."""
        if not self.pid1:
            raise ContainerError("the container is not running")
        variables = [f"{key}={value}" for key, value in {"PATH": PATH, "LANG": "C", **(env or {})}.items()]
        return subprocess.run(["nsenter", "-t", str(self.pid1), "-a", "env", "-i", *variables, *argv],
                              input=input, capture_output=True, text=True, timeout=timeout)

    def check(self, *argv: str, **kwargs) -> str:
        """Like run, but a non-zero exit is an error that shows what the command printed."""
        result = self.run(*argv, **kwargs)
        if result.returncode != 0:
            raise ContainerError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result.stdout

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.check("sh", "-euc", 'mkdir -p "$(dirname "$1")"; cat >"$1"; chmod "$2" "$1"', "sh", path, mode,
                   input=text)

    def journal(self, unit: str | None = None, identifier: str | None = None) -> list[str]:
        """The messages of this boot, of one unit or one syslog identifier, oldest first."""
        argv = ["journalctl", "-b", "0", "--no-pager", "-o", "cat"]
        argv += ["-u", unit] if unit else []
        argv += ["-t", identifier] if identifier else []
        return self.check(*argv).splitlines()

    def unit_property(self, unit: str, name: str) -> str:
        return self.check("systemctl", "show", "--value", "-p", name, unit).strip()

    def routes(self, *selector: str) -> list[dict]:
        """The container's kernel routes as `ip -j -N route show` gives them (numeric protocols)."""
        out = self.check("ip", "-j", "-N", "route", "show", *selector).strip()
        return json.loads(out) if out else []

    def wait_for(self, probe: Callable[[], object], timeout: float, what: str, interval: float = 0.25):
        """Poll probe() until it returns something true; a bound on waiting, not a timed assertion."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise ContainerError(f"gave up waiting {timeout:.0f} s for {what}\n{self.console_tail()}")
            time.sleep(interval)
