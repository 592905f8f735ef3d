"""Faults of the machine, made for real, each end a command with one line that names the cause,
the path or program and what to do; exit 1; the store byte for byte and the kernel as they were.

    this test                       the command, in its own mount namespace (unshare -m)
    ---------                       ----------------------------------------------------
    seed store: PEER.routes         store: the seed, on a full tmpfs / a read-only bind /
    (hand-written, two routes)             a directory not writable for the caller
    netns: ppp0 = PEER, routes on   ip:    /bin/false, a missing or unrunnable ip, one killed
                                    limits: ulimit -n

Every command runs the console script of this interpreter with --netns, in a namespace the
netns fixture made; the mounts exist only in the command's private mount namespace.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import routectl_path, run_routectl

from l2tproute.core import constants as C
from l2tproute.core import errors

PEER = "10.255.10.2"
SEED = f"# edited by hand\r\n192.168.20.0/24 via {PEER}\r\n192.168.22.0/24 via {PEER} dev ppp0\n".encode()
ERROR = f"{C.PROG}: error: "
UNSAFE = set("'\"<>&")
# What each command would change: a route in the file and the kernel (add), one out of both (del),
# the file and the kernel routes (del all), the kernel (apply after a route went missing).
COMMANDS = {
    "add": ["add", "--peer", PEER, "--dst", "192.168.21.0/24"],
    "del": ["del", "--peer", PEER, "--dst", "192.168.20.0/24"],
    "del all": ["del", "--peer", PEER, "--dst", "all"],
    "apply": ["apply"],
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    # Under sudo the tool ignores L2TP_ROUTES_DIR; these tests must never reach the real store.
    for name in ("SUDO_UID", "SUDO_USER", "SUDO_GID", "SUDO_COMMAND"):
        monkeypatch.delenv(name, raising=False)


class Scene:
    """A connected peer whose hand-edited file is applied, and the state nothing may change."""

    def __init__(self, tmp_path: Path, netns):
        self.tmp = tmp_path
        self.netns = netns
        self.store = tmp_path / "store" / "routes.d"
        self.store.mkdir(parents=True)
        (self.store / f"{PEER}{C.ROUTE_FILE_SUFFIX}").write_bytes(SEED)
        netns.add_ppp("ppp0", PEER)
        applied = run_routectl("apply", ns=netns, env=self.env())
        assert applied.returncode == 0, applied.stderr
        # One stored route is missing from the kernel, so that apply too would change it.
        netns.ip("route", "del", "192.168.22.0/24", "dev", "ppp0")
        self.files = files_of(self.store)
        assert set(self.files) == {f"{PEER}{C.ROUTE_FILE_SUFFIX}", C.LOCK_FILE_NAME}
        self.kernel = netns.snapshot()
        assert ("192.168.20.0/24", PEER, "ppp0", "main") in netns.tagged_set()

    def env(self, store: Path | None = None) -> dict:
        return {C.STORE_DIR_ENV: str(store or self.store)}

    def argv(self, command: str) -> list[str]:
        return [routectl_path(), *COMMANDS[command], "--netns", self.netns.name]

    def assert_unchanged(self, files: dict | None = None) -> None:
        assert (files if files is not None else files_of(self.store)) == self.files
        assert self.netns.snapshot() == self.kernel


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture
def scene(tmp_path, netns) -> Scene:
    return Scene(tmp_path, netns)


def in_mount_namespace(setup: str, argv: list[str], env: dict, after: str = "", prefix: str = "") \
        -> subprocess.CompletedProcess:
    """`argv` after the shell lines `setup`, in a private mount namespace; then `after`."""
    script = f'set -e\n{setup}\nset +e\n{prefix}"$@"\nrc=$?\n{after}\nexit $rc\n'
    full_env = dict(os.environ, **env)
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv],
                          capture_output=True, text=True, env=full_env, timeout=120)


def fault_line(proc: subprocess.CompletedProcess, *parts: str) -> str:
    """The one error line of a command that met a fault; it must contain every one of `parts`."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == C.EXIT_FAILURE, proc
    assert len(lines) == 1 and lines[0].startswith(ERROR), proc.stderr
    assert proc.stdout == "", proc.stdout
    line = lines[0]
    assert "internal error" not in line and "please report" not in line, line
    assert not UNSAFE & set(line), line
    for part in parts:
        assert part in line, (part, line)
    return line


# -- the disk --------------------------------------------------------------------------

FULL = {
    # Every block in use: the new file cannot be written.
    "blocks": ("size=1m", "dd if=/dev/zero of=\"$T/filler\" bs=64k 2>/dev/null || true", "cannot write "),
    # Every inode in use: not even an empty file can be made.
    "inodes": ("size=4m,nr_inodes=32", "i=0; while touch \"$T/i$i\" 2>/dev/null; do i=$((i+1)); done",
               "cannot create a file in the route store "),
}


@pytest.mark.parametrize("full", sorted(FULL))
@pytest.mark.parametrize("command", ["add", "del"])
def test_a_full_disk_is_one_clear_line_and_changes_neither_file_nor_kernel(scene, command, full):
    options, fill, doing = FULL[full]
    tmpfs = scene.tmp / "tmpfs"
    tmpfs.mkdir()
    store, out = tmpfs / "routes.d", scene.tmp / "after"
    out.mkdir()
    setup = (f'T={tmpfs}\nmount -t tmpfs -o {options},mode=0755 tmpfs "$T"\nmkdir "$T/routes.d"\n'
             f'cp -a {scene.store}/. "$T/routes.d/"\n{fill}')
    proc = in_mount_namespace(setup, scene.argv(command), scene.env(store), after=f'cp -a "$T/routes.d/." {out}/')
    fault_line(proc, f"{doing}{store}", "no space left on the device (ENOSPC)",
               f"free space on the filesystem of {store} (see: df -h {store}; df -i {store}), then try again")
    scene.assert_unchanged(files_of(out))


def test_a_route_file_can_go_from_a_full_disk(scene):
    # Deleting the last route removes the file: that needs no space, and frees some.
    tmpfs, out = scene.tmp / "tmpfs", scene.tmp / "after"
    tmpfs.mkdir()
    out.mkdir()
    setup = (f'T={tmpfs}\nmount -t tmpfs -o size=4m,nr_inodes=32,mode=0755 tmpfs "$T"\nmkdir "$T/routes.d"\n'
             f'cp -a {scene.store}/. "$T/routes.d/"\n' + FULL["inodes"][1])
    proc = in_mount_namespace(setup, scene.argv("del all"), scene.env(tmpfs / "routes.d"),
                              after=f'cp -a "$T/routes.d/." {out}/')
    assert proc.returncode == 0, proc.stderr
    assert files_of(out) == {C.LOCK_FILE_NAME: b""}
    assert scene.netns.tagged() == []


@pytest.mark.parametrize("command", ["add", "del", "del all", "apply"])
def test_a_read_only_store_is_one_clear_line(scene, command):
    store = scene.store
    setup = f'mount --bind {store} {store}\nmount -o remount,bind,ro {store}'
    proc = in_mount_namespace(setup, scene.argv(command), scene.env())
    fault_line(proc, f"cannot take the store lock {store / C.LOCK_FILE_NAME}: the filesystem is read-only (EROFS)",
               f"remount the filesystem of {store} read-write (see: findmnt -T {store};")
    scene.assert_unchanged()


def test_a_missing_store_that_cannot_be_created_is_one_clear_line(scene):
    # The store directory is gone and its parent is on a read-only filesystem.
    parent = scene.tmp / "readonly"
    parent.mkdir()
    store = parent / "l2tp-manager" / "routes.d"
    setup = f'mount --bind {parent} {parent}\nmount -o remount,bind,ro {parent}'
    proc = in_mount_namespace(setup, scene.argv("add"), scene.env(store))
    fault_line(proc, f"cannot create the route store {store}: the filesystem is read-only (EROFS)",
               f"remount the filesystem of {parent} read-write")
    assert list(parent.iterdir()) == []
    scene.assert_unchanged()


@pytest.mark.parametrize("command", ["add", "del"])
def test_a_lock_path_that_is_a_directory_is_one_clear_line(scene, command):
    lock = scene.store / C.LOCK_FILE_NAME
    lock.unlink()
    lock.mkdir()
    proc = run_routectl(*COMMANDS[command], ns=scene.netns, env=scene.env())
    fault_line(proc, f"cannot take the store lock {lock}: a directory is where a file belongs (EISDIR)",
               f"remove that directory (rmdir {lock}, after looking inside); the file is created again")
    lock.rmdir()
    lock.write_bytes(b"")
    scene.assert_unchanged()


# -- permissions -----------------------------------------------------------------------

# Root without the capabilities that override file permissions: the kernel checks the
# owner and mode bits as for any unprivileged user (the test interpreter may sit under
# /root, which a real unprivileged user could not even reach).
UNPRIVILEGED = ["setpriv", "--inh-caps=-dac_override,-dac_read_search,-fowner",
                "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def run_unprivileged(scene: Scene, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(UNPRIVILEGED + scene.argv(command), capture_output=True, text=True,
                          env=dict(os.environ, **scene.env()), timeout=120)


@pytest.mark.parametrize("lock_exists", [True, False], ids=["lock-file-there", "no-lock-file"])
@pytest.mark.parametrize("command", ["add", "del", "del all"])
def test_a_store_the_caller_may_not_write_is_one_clear_line(scene, command, lock_exists):
    if not lock_exists:
        (scene.store / C.LOCK_FILE_NAME).unlink()
        scene.files.pop(C.LOCK_FILE_NAME)
    os.chown(scene.store, 65534, 65534)  # nobody's, mode 0755
    try:
        proc = run_unprivileged(scene, command)
    finally:
        os.chown(scene.store, 0, 0)
    where = "cannot create a file in the route store" if lock_exists else "cannot take the store lock"
    fault_line(proc, where, str(scene.store), "permission denied (EACCES)",
               "run l2tp-routectl as root (the panel runs it through sudo)",
               f"check the owner and mode of {scene.store} (see: ls -ld {scene.store})")
    scene.assert_unchanged()


def test_an_unreadable_route_file_stops_apply_instead_of_removing_its_routes(scene):
    path = scene.store / f"{PEER}{C.ROUTE_FILE_SUFFIX}"
    scene.netns.ip("route", "add", "192.168.22.0/24", "via", PEER, "dev", "ppp0", "proto", str(C.RT_PROTO))
    scene.kernel = scene.netns.snapshot()
    os.chown(path, 65534, 65534)
    path.chmod(0o000)
    try:
        proc = run_unprivileged(scene, "apply")
        listed = subprocess.run(UNPRIVILEGED + [routectl_path(), "list", "--peer", PEER], capture_output=True,
                                text=True, env=dict(os.environ, **scene.env()), timeout=60)
    finally:
        path.chmod(0o644)
        os.chown(path, 0, 0)
    fault_line(proc, f"cannot read {path}: permission denied (EACCES)", f"(see: ls -ld {path})")
    fault_line(listed, f"cannot read {path}: permission denied (EACCES)")
    scene.assert_unchanged()


# -- the ip program --------------------------------------------------------------------

def ip_program() -> str:
    """The ip the command finds: the first on PATH, then the system directories."""
    search = os.pathsep.join(filter(None, [os.environ.get("PATH"), "/usr/sbin:/sbin:/usr/bin:/bin"]))
    found = shutil.which("ip", path=search)
    assert found, "no ip on this machine"
    return found


def bind_over_ip(replacement: Path) -> str:
    return f"mount --bind {replacement} {os.path.realpath(ip_program())}"


@pytest.mark.parametrize("command", ["add", "del", "apply"])
def test_an_ip_that_fails_without_a_word_is_one_clear_line(scene, command):
    proc = in_mount_namespace(bind_over_ip(Path(shutil.which("false"))), scene.argv(command), scene.env())
    program = ip_program()
    fault_line(proc, "exited with status 1 without a message", f"{program} does not behave as the ip of iproute2",
               f"(try: {program} -V) or reinstall it with: apt-get install --reinstall iproute2")
    scene.assert_unchanged()


def test_an_ip_killed_by_a_signal_is_one_clear_line(scene, tmp_path):
    suicidal = tmp_path / "ip"
    suicidal.write_text("#!/bin/sh\nkill -KILL $$\n")
    suicidal.chmod(0o755)
    proc = in_mount_namespace(bind_over_ip(suicidal), scene.argv("add"), scene.env())
    # The first ip a command runs is the reader's look at what the installed iproute2 prints.
    fault_line(proc, "ip -N -V was killed by SIGKILL", "(see: dmesg, out of memory), then try again")
    scene.assert_unchanged()


def test_an_ip_that_is_not_executable_is_one_clear_line(scene, tmp_path):
    plain = tmp_path / "ip"
    plain.write_text("not a program\n")
    plain.chmod(0o644)
    proc = in_mount_namespace(bind_over_ip(plain), scene.argv("del"), scene.env())
    fault_line(proc, f"{ip_program()} cannot be run", "reinstall iproute2 with: apt-get install --reinstall iproute2")
    scene.assert_unchanged()


def test_a_missing_ip_is_one_clear_line(scene, tmp_path):
    # Every directory the command searches that holds an ip is replaced by a directory of
    # links to everything else in it (the interpreter may live there), reachable through a
    # second bind mount: merged /usr or not, no ip is left.
    search = os.pathsep.join(filter(None, [os.environ.get("PATH"), "/usr/sbin:/sbin:/usr/bin:/bin"]))
    holding = sorted({os.path.realpath(d) for d in search.split(os.pathsep) if d and os.path.isfile(f"{d}/ip")})
    assert holding, "no ip on this machine"
    setup = []
    for index, directory in enumerate(holding):
        real, fake = tmp_path / f"real{index}", tmp_path / f"fake{index}"
        real.mkdir()
        fake.mkdir()
        for name in os.listdir(directory):
            if name != "ip":
                (fake / name).symlink_to(real / name)
        setup += [f"mount --bind {directory} {real}", f"mount --bind {fake} {directory}"]
    setup.append(f'for d in $(echo "{search}" | tr : " "); do test ! -e "$d/ip" || exit 98; done')
    proc = in_mount_namespace("\n".join(setup), scene.argv("add"), scene.env())
    assert proc.returncode != 98, "an ip is still reachable after hiding every one found"
    fault_line(proc, "the ip program of iproute2 is missing (not in PATH nor in /usr/sbin:/sbin:/usr/bin:/bin)",
               "install it with: apt-get install iproute2, then try again")
    scene.assert_unchanged()


# -- limits ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["add", "del"])
def test_too_few_open_files_is_one_clear_line_or_success_never_half(scene, command):
    """From the lowest limit on: the interpreter cannot start (not our words), then our line
    with nothing changed, then, once the limit is enough, the command does its work."""
    seen = []
    for limit in range(3, 40):
        proc = in_mount_namespace("", scene.argv(command), scene.env(), prefix=f"ulimit -n {limit}; ")
        if proc.returncode == 0:
            seen.append("done")
            break
        if C.PROG not in proc.stderr:
            assert seen == [], (limit, proc.stderr)  # only below every limit our code ran at
            continue
        fault_line(proc, "too many open files in this process (EMFILE)",
                   "raise its open file limit to at least 1024 (ulimit -n; LimitNOFILE= in a systemd unit), "
                   "then try again")
        scene.assert_unchanged()
        seen.append("fault")
    assert seen[-1:] == ["done"] and "fault" in seen, seen
    routes = scene.netns.tagged_set()
    text = (scene.store / f"{PEER}{C.ROUTE_FILE_SUFFIX}").read_bytes()
    if command == "add":
        assert ("192.168.21.0/24", PEER, "ppp0", "main") in routes
        assert text == SEED + f"192.168.21.0/24 via {PEER}\n".encode()
    else:
        assert ("192.168.20.0/24", PEER, "ppp0", "main") not in routes
        assert text == SEED.replace(f"192.168.20.0/24 via {PEER}\r\n".encode(), b"")


# -- the wording, for faults this machine cannot make -----------------------------------

@pytest.mark.parametrize("code, cause, todo", [
    (errno.EIO, "input/output error (EIO)", "the disk or filesystem of {dir} is failing: check dmesg"),
    (errno.EDQUOT, "the disk quota is used up (EDQUOT)", "raise the quota on the filesystem of {dir}"),
    (errno.ENFILE, "too many open files on this system (ENFILE)", "raise fs.file-max"),
    (errno.EPERM, "operation not permitted (EPERM)", "(see: lsattr -d {dir})"),
])
def test_every_fault_has_a_cause_a_path_and_what_to_do(tmp_path, code, cause, todo):
    path = tmp_path / "10.0.0.1.routes"  # not there: the advice names its directory
    exc = OSError(code, os.strerror(code), str(path))
    line = errors.describe(exc)
    assert line.startswith(f"cannot use {path}: {cause}; "), line
    assert todo.format(dir=tmp_path) in line, line
    assert not UNSAFE & set(line), line


def test_a_path_with_characters_the_panel_mangles_is_shown_escaped(tmp_path):
    path = tmp_path / "a'b<c>&\"d"
    line = errors.describe(PermissionError(errno.EACCES, "Permission denied", str(path)))
    assert not UNSAFE & set(line), line
    assert "a\\x27b\\x3cc\\x3e\\x26\\x22d" in line, line


def test_a_bug_is_still_an_internal_error_to_report():
    assert errors.describe(ZeroDivisionError("boom")) == "internal error (ZeroDivisionError): boom; please report this"
    assert errors.exit_status(ZeroDivisionError()) == C.EXIT_FAILURE
    assert errors.exit_status(errors.InputError("x")) == C.EXIT_USAGE
    assert errors.exit_status(errors.SystemFault("x")) == C.EXIT_FAILURE
