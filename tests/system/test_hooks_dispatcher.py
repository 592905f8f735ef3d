"""The hooks under Debian's real dispatcher: `env -i /etc/ppp/ip-up IFACE TTY SPEED LOCAL PEER ''`.

/etc/ppp/ip-up and run-parts are the real ones from the ppp package. Each run happens
in a private mount namespace (nothing leaks to this machine) where
- /etc/ppp/ip-up.d and ip-down.d are this test's directories: Debian's own hooks
  (0000usepeerdns) plus the hook under test, named l2tp-routes as installed;
- /etc/l2tp-manager/routes.d is this test's route store (pppd clears the environment,
  so the hook uses the default path, as in the field);
- /usr/local/sbin holds an l2tp-routectl that runs this checkout (for the old hook);
- /dev/log is a datagram socket this test reads: what the hook sent to syslog;
- /run/l2tproute is this test's: the hooks' spool, drained by the worker they start (an
  installed l2tproute-worker.path is hidden: it would watch the real spool, and the test
  would wait for a worker that never comes where systemd is PID 1);
and then `ip netns exec NS` puts the dispatcher into the namespace that has the links
(with its own /proc/sys/net, so rp_filter is set on the namespace's link).
"""

from __future__ import annotations

import re
import select
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fronts import Fronts, wait_for_worker

from l2tproute.core import constants as C

PEER1, PEER11, PEER2, PEER3 = "10.255.10.1", "10.255.10.11", "10.255.10.2", "10.255.10.3"
LOCAL = "10.254.0.1"
TAG = ("proto", str(C.RT_PROTO))

_MOUNTS = r"""
set -eu
T=$1; shift
mount --make-rprivate /
mount -t tmpfs tmpfs "$T/overlay"
mkdir "$T/overlay/upper" "$T/overlay/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$T/overlay/upper,workdir=$T/overlay/work" /etc
# The hook starts its worker here: an installed path unit would watch the real spool, never this one.
rm -f /etc/systemd/system/l2tproute-worker.path
mkdir -p /etc/l2tp-manager/routes.d
mount --bind "$T/store" /etc/l2tp-manager/routes.d
# /run an overlay too, so that /run/l2tproute can be made where the machine has none (a mkdir
# through a private mount namespace would still make it on the machine's /run); the
# namespaces' mounts under /run/netns are put back on top.
mkdir "$T/overlay/run-upper" "$T/overlay/run-work"
mount --rbind /run/netns "$T/netns"
mount -t overlay overlay -o "lowerdir=/run,upperdir=$T/overlay/run-upper,workdir=$T/overlay/run-work" /run
mount --rbind "$T/netns" /run/netns
mkdir -p /run/l2tproute
mount --bind "$T/run" /run/l2tproute
mount --bind "$T/ip-up.d" /etc/ppp/ip-up.d
mount --bind "$T/ip-down.d" /etc/ppp/ip-down.d
mount --bind "$T/sbin" /usr/local/sbin
mount --rbind /dev "$T/olddev"
mount -t tmpfs -o mode=0755 tmpfs /dev
for name in null zero full random urandom tty; do
    touch "/dev/$name"
    mount --bind "$T/olddev/$name" "/dev/$name"
done
mkdir /dev/pts /dev/shm
mount --rbind "$T/olddev/pts" /dev/pts
mount --rbind "$T/olddev/shm" /dev/shm
ln -s pts/ptmx /dev/ptmx
ln -s /proc/self/fd /dev/fd
ln -s "$T/log.sock" /dev/log
exec "$@"
"""

_SYSLOG_LINE = re.compile(r"^<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d ([^\[:]+)\[(\d+)\]: (.*)$", re.S)


OLD_HOOK = '#!/bin/sh\n# the old bash system\'s hook\nl2tp-routectl apply --peer $5\n'


class Dispatcher:
    """Runs /etc/ppp/ip-up and ip-down as pppd does, with the hooks given, in a namespace."""

    def __init__(self, base: Path, ns, up_hooks: dict[str, str], down_hooks: dict[str, str],
                 routectl: str | None = None, reading: bool = True):
        self.base = base
        self.ns = ns
        for sub in ("overlay", "store", "run", "ip-up.d", "ip-down.d", "sbin", "olddev", "netns"):
            (base / sub).mkdir()
        for direction, hooks in (("up", up_hooks), ("down", down_hooks)):
            target = base / f"ip-{direction}.d"
            for existing in Path(f"/etc/ppp/ip-{direction}.d").iterdir():
                if existing.is_file() and not existing.name.startswith("l2tp-routes"):  # not an installed one
                    shutil.copy2(existing, target / existing.name)  # Debian's own hooks run too
            for name, source in hooks.items():
                path = target / name
                if source.startswith("#!"):
                    path.write_text(source)
                else:
                    shutil.copy2(source, path)
                path.chmod(0o755)
        routectl = routectl or str(Path(sys.executable).with_name("l2tp-routectl"))
        wrapper = base / "sbin" / "l2tp-routectl"
        wrapper.write_text(f'#!/bin/sh\nexec {routectl} "$@"\n')
        wrapper.chmod(0o755)
        (base / "mounts.sh").write_text(_MOUNTS)
        self.log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.log.bind(str(base / "log.sock"))
        self.log.setblocking(False)
        # A syslog daemon reads all the time: a datagram queue holds only
        # net.unix.max_dgram_qlen (10) messages, and a hook must not find it full.
        self._received: list[bytes] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reader: threading.Thread | None = None
        if reading:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            select.select([self.log], [], [], 0.1)
            self._drain()

    def _drain(self) -> None:
        with self._lock:
            while not self._closed.is_set():
                try:
                    self._received.append(self.log.recv(65536))
                except BlockingIOError:
                    return

    @property
    def store(self) -> Path:
        return self.base / "store"

    def write_routes(self, peer: str, *lines: str) -> None:
        (self.store / f"{peer}.routes").write_text("".join(line + "\n" for line in lines))

    def run(self, direction: str, iface: str, peer: str) -> subprocess.CompletedProcess:
        argv = ["unshare", "-m", "sh", str(self.base / "mounts.sh"), str(self.base),
                "ip", "netns", "exec", self.ns.name,
                "env", "-i", f"/etc/ppp/ip-{direction}", iface, "/dev/pts/3", "0", LOCAL, peer, ""]
        # A bound, not a measurement: the hooks kill themselves after 30 s (HARD_LIMIT).
        return subprocess.run(argv, capture_output=True, text=True, timeout=90)

    def up(self, iface: str, peer: str) -> None:
        self._quiet(self.run("up", iface, peer))
        wait_for_worker(self.base / "run")

    def down(self, iface: str, peer: str) -> None:
        self._quiet(self.run("down", iface, peer))
        wait_for_worker(self.base / "run")

    @staticmethod
    def _quiet(result: subprocess.CompletedProcess) -> None:
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result

    def messages(self) -> list[dict]:
        """Everything sent to /dev/log since the last call, parsed."""
        self._drain()
        with self._lock:
            received, self._received = self._received, []
        found = []
        for data in received:
            match = _SYSLOG_LINE.match(data.decode())
            assert match, data
            priority, ident, pid, text = match.groups()
            found.append({"facility": int(priority) >> 3, "severity": int(priority) & 7, "ident": ident,
                          "text": text})
        return found

    def close(self) -> None:
        self._closed.set()
        if self._reader is not None:
            self._reader.join()
        self.log.close()

    def rp_filter(self, iface: str) -> str:
        path = f"/proc/sys/net/ipv4/conf/{iface}/rp_filter"
        return subprocess.run(["ip", "netns", "exec", self.ns.name, "cat", path],
                              capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def sessions(netns):
    """Four users online; 10.255.10.1 and 10.255.10.11 share a prefix."""
    netns.add_ppp("ppp1", PEER1)
    netns.add_ppp("ppp11", PEER11)
    netns.add_ppp("ppp2", PEER2)
    netns.add_ppp("ppp3", PEER3)
    return netns


@pytest.fixture
def dispatcher_for(tmp_path, sessions):
    made = []

    def make(up_hooks, down_hooks=None, **kwargs) -> Dispatcher:
        base = tmp_path / f"d{len(made)}"
        base.mkdir()
        made.append(Dispatcher(base, sessions, up_hooks, down_hooks or {}, **kwargs))
        return made[-1]

    yield make
    for item in made:
        item.close()


def new_hooks(directory: Path):
    fronts = Fronts(directory)
    return {"l2tp-routes": str(fronts.hooks["up"])}, {"l2tp-routes": str(fronts.hooks["down"])}


def test_up_and_down_through_the_real_dispatcher_with_several_sessions(sessions, dispatcher_for, tmp_path):
    up, down = new_hooks(tmp_path / "bin")
    d = dispatcher_for(up, down)
    d.write_routes(PEER1, f"192.168.50.0/24 via {PEER1}", f"10.9.0.0/16 via {PEER1}")
    d.write_routes(PEER11, f"192.168.111.0/24 via {PEER11}", "2001:db8:11::/48 via 10.255.10.11")
    d.write_routes(PEER2, f"172.20.0.0/16 via {PEER2}")
    # Routes of other users and of the admin, without our tag: never ours to touch.
    sessions.ip("route", "add", "10.78.0.0/16", "via", PEER1, "dev", "ppp1", "proto", "static")
    sessions.ip("route", "add", "10.80.0.0/16", "dev", "ppp11")
    foreign = [r for r in sessions.snapshot()]

    d.up("ppp1", PEER1)
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main"), ("10.9.0.0/16", PEER1, "ppp1", "main")}
    assert d.rp_filter("ppp1") == "2" and d.rp_filter("ppp11") != "2"
    d.up("ppp11", PEER11)
    d.up("ppp2", PEER2)
    d.up("ppp3", PEER3)  # no route file
    all_up = {("192.168.50.0/24", PEER1, "ppp1", "main"), ("10.9.0.0/16", PEER1, "ppp1", "main"),
              ("192.168.111.0/24", PEER11, "ppp11", "main"), ("172.20.0.0/16", PEER2, "ppp2", "main")}
    assert sessions.tagged_set() == all_up
    assert [(r["dst"], r["dev"]) for r in sessions.tagged(6)] == [("2001:db8:11::/48", "ppp11")]
    assert [d.rp_filter(i) for i in ("ppp1", "ppp11", "ppp2", "ppp3")] == ["2", "2", "2", "2"]
    assert set(foreign) <= set(sessions.snapshot())

    up_log = d.messages()
    assert {m["ident"] for m in up_log} == {C.SYSLOG_IDENT}
    texts = [m["text"] for m in up_log]
    assert f"ip-up ppp1 peer {PEER1}: Installed route for peer {PEER1}: 192.168.50.0/24 via {PEER1}" in texts
    assert f"ip-up ppp3 peer {PEER3}: no routes stored (/etc/l2tp-manager/routes.d/{PEER3}.routes does not " \
           "exist); nothing to install" in texts
    for iface, peer in (("ppp1", PEER1), ("ppp11", PEER11), ("ppp2", PEER2), ("ppp3", PEER3)):
        assert any(t.startswith(f"ip-up {iface} peer {peer}: rp_filter set to 2") for t in texts), iface
    assert not [m for m in up_log if m["severity"] <= 4], up_log  # no warning, no error

    d.down("ppp1", PEER1)  # 10.255.10.1 leaves; 10.255.10.11 must keep everything
    assert sessions.tagged_set() == all_up - {("192.168.50.0/24", PEER1, "ppp1", "main"),
                                              ("10.9.0.0/16", PEER1, "ppp1", "main")}
    assert sessions.tagged(6) and set(foreign) <= set(sessions.snapshot())
    assert [m["text"] for m in d.messages()][-1] == f"ip-down ppp1 peer {PEER1}: Released ppp1 of peer {PEER1}: " \
                                                    "2 removed, 0 failed."

    d.down("ppp11", PEER11)
    assert sessions.tagged_set() == {("172.20.0.0/16", PEER2, "ppp2", "main")} and sessions.tagged(6) == []
    assert set(foreign) <= set(sessions.snapshot())
    assert [m["text"] for m in d.messages()][-1] == f"ip-down ppp11 peer {PEER11}: Released ppp11 of peer " \
                                                    f"{PEER11}: 2 removed, 0 failed."


def test_a_syslog_that_stopped_reading_does_not_hold_the_hook_up(sessions, dispatcher_for, tmp_path):
    """glibc's syslog(3) would wait for good on a full /dev/log queue; the hook drops its messages and goes on."""
    up, down = new_hooks(tmp_path / "bin")
    d = dispatcher_for(up, down, reading=False)
    d.write_routes(PEER1, f"192.168.50.0/24 via {PEER1}")
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler.connect(str(d.base / "log.sock"))
    filler.setblocking(False)
    queued = 0
    with pytest.raises(BlockingIOError):
        while queued < 10000:
            filler.send(b"<30>Jan  1 00:00:00 filler[1]: stuck daemon")
            queued += 1
    filler.close()
    d.up("ppp1", PEER1)
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main")}
    assert d.rp_filter("ppp1") == "2"
    d.up("ppp2", "10.255.10.2;reboot")  # refused: the hook itself logs, and gives up on the stalled log
    d.down("ppp1", PEER1)
    assert sessions.tagged_set() == set()
    assert [m["ident"] for m in d.messages()] == ["filler"] * queued  # the hook's messages were dropped


def test_garbage_from_the_dispatcher_is_logged_not_printed(sessions, dispatcher_for, tmp_path):
    up, down = new_hooks(tmp_path / "bin")
    d = dispatcher_for(up, down)
    before = sessions.snapshot()
    d.up("ppp1", "10.255.10.1;reboot")
    d.down("../ppp1", PEER1)
    assert sessions.snapshot() == before
    texts = [(m["severity"], m["ident"], m["text"]) for m in d.messages()]
    assert texts == [(3, C.SYSLOG_IDENT, "ip-up: ignored: invalid peer from arguments: expected a dotted IPv4 address "
                                         "like 10.255.10.1"),
                     (3, C.SYSLOG_IDENT, "ip-down: ignored: invalid device from arguments: expected an interface "
                                         "name like ppp0")]


def test_the_old_hook_left_in_place_still_installs_the_routes(sessions, dispatcher_for):
    d = dispatcher_for({"l2tp-routes": OLD_HOOK})
    d.write_routes(PEER1, f"192.168.50.0/24 via {PEER1}")
    d.write_routes(PEER11, f"192.168.111.0/24 via {PEER11}")
    result = d.run("up", "ppp1", PEER1)
    assert result.returncode == 0, result
    assert "Applied routes for peer 10.255.10.1 on ppp1: 1 installed" in result.stdout
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main")}
    result = d.run("up", "ppp11", PEER11)
    assert result.returncode == 0, result
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main"),
                                     ("192.168.111.0/24", PEER11, "ppp11", "main")}


def test_old_and_new_hook_side_by_side_agree(sessions, dispatcher_for, tmp_path):
    up, down = new_hooks(tmp_path / "bin")
    d = dispatcher_for(dict(up, **{"l2tp-routes-legacy": OLD_HOOK}), down)
    d.write_routes(PEER1, f"192.168.50.0/24 via {PEER1}")
    result = d.run("up", "ppp1", PEER1)
    assert result.returncode == 0 and result.stderr == "", result
    wait_for_worker(d.base / "run")
    # The new hook's worker and the old hook's apply take turns under the store lock: whichever
    # comes second finds the route in place, neither finds it blocked.
    assert "0 blocked, 0 failed." in result.stdout
    assert "1 installed" in result.stdout or "1 unchanged" in result.stdout
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main")}
    d.down("ppp1", PEER1)
    assert sessions.tagged_set() == set()


def test_the_installed_hooks_work_through_the_dispatcher(sessions, dispatcher_for):
    """/etc/ppp/ip-{up,down}.d/l2tp-routes as the installer put them (the venv in /opt), not this checkout."""
    marker = "# Installed by install-l2tp-per-user-routing.sh (l2tproute)"
    installed = {direction: Path(f"/etc/ppp/ip-{direction}.d/l2tp-routes") for direction in ("up", "down")}
    for path in installed.values():
        if not path.is_file() or marker not in path.read_text(errors="replace"):
            pytest.fail(f"{path} is not the installed hook; run `sudo ./install-l2tp-per-user-routing.sh` first "
                        "(.ci/run does)", pytrace=False)
    assert installed["up"].read_text().startswith(f"#!/bin/sh\n{marker}\n")
    d = dispatcher_for({"l2tp-routes": str(installed["up"])}, {"l2tp-routes": str(installed["down"])})
    d.write_routes(PEER1, f"192.168.50.0/24 via {PEER1}")
    d.write_routes(PEER11, f"192.168.111.0/24 via {PEER11}")
    d.up("ppp1", PEER1)
    d.up("ppp11", PEER11)
    assert sessions.tagged_set() == {("192.168.50.0/24", PEER1, "ppp1", "main"),
                                     ("192.168.111.0/24", PEER11, "ppp11", "main")}
    d.down("ppp1", PEER1)
    assert sessions.tagged_set() == {("192.168.111.0/24", PEER11, "ppp11", "main")}
    texts = [m["text"] for m in d.messages()]
    assert f"ip-up ppp1 peer {PEER1}: Applied routes for peer {PEER1} on ppp1: 1 installed, 0 updated, 0 removed, " \
           "0 unchanged, 0 blocked, 0 failed." in texts
    assert texts[-1] == f"ip-down ppp1 peer {PEER1}: Released ppp1 of peer {PEER1}: 1 removed, 0 failed."
