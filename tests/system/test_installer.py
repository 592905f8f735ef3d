"""install-l2tp-per-user-routing.sh into staging roots (--root): every file, twice, upgrade, uninstall, failures.

One real install (venv + pip from this checkout) is shared by the module; the upgrade
and failure tests start from a copy of its venv so they do not pay for pip again.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import REPO
from fronts import wait_for_worker

from l2tproute.core import constants as C
from l2tproute.ops.policy import Config, load_config
from l2tproute.system.netns import named

INSTALLER = REPO / "install-l2tp-per-user-routing.sh"
PROG = INSTALLER.name
MARKER = "# Installed by install-l2tp-per-user-routing.sh (l2tproute)"
VENV = "opt/l2tproute"
SHEBANG = "#!/opt/l2tproute/bin/python3 -IS"
#: The venv's site-packages, which the installed scripts add themselves (-S skips site).
SITE_PACKAGES = "/opt/l2tproute/lib/python{}/site-packages".format(subprocess.run(
    ["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
    capture_output=True, text=True, check=True).stdout.strip())
PATH_LINES = f'import sys\nsys.path.append("{SITE_PACKAGES}")  # -S skipped site, which would add it\n'
STORE = "etc/l2tp-manager/routes.d"
CONF = "etc/l2tp-manager/l2tproute.conf"

#: Every file the installer puts in place: path under the root, mode, source in the checkout.
FILES = {
    "opt/l2tproute/libexec/l2tp-routectl": (0o755, "bin/l2tp-routectl.py"),
    "opt/l2tproute/libexec/l2tp-routes-worker": (0o755, "bin/l2tp-routes-worker"),
    "opt/l2tproute/libexec/l2tp-routes-event": (0o755, "bin/l2tp-routes-event"),
    "opt/l2tproute/libexec/l2tp-routes-kick": (0o755, "bin/l2tp-routes-kick"),
    "opt/l2tproute/libexec/l2tp-routes-openvpn": (0o755, "bin/l2tp-routes-openvpn"),
    "opt/l2tproute/libexec/l2tproute.sh": (0o644, "lib/l2tproute.sh"),
    "usr/local/sbin/l2tp-routectl": (0o755, "bin/l2tp-routectl"),
    "etc/ppp/ip-up.d/l2tp-routes": (0o755, "bin/l2tp-routes-ip-up"),
    "etc/ppp/ip-down.d/l2tp-routes": (0o755, "bin/l2tp-routes-ip-down"),
    "etc/systemd/system/route-l2tp-apply-all.service": (0o644, "contrib/systemd/route-l2tp-apply-all.service"),
    "etc/systemd/system/route-l2tp-apply-all.timer": (0o644, "contrib/systemd/route-l2tp-apply-all.timer"),
    "etc/systemd/system/l2tproute-worker.service": (0o644, "contrib/systemd/l2tproute-worker.service"),
    "etc/systemd/system/l2tproute-worker.path": (0o644, "contrib/systemd/l2tproute-worker.path"),
    "etc/sysctl.d/99-l2tp-routing.conf": (0o644, "contrib/sysctl/99-l2tp-routing.conf"),
    "etc/iproute2/rt_protos.d/l2tproute.conf": (0o644, "contrib/iproute2/l2tproute.conf"),
    "etc/sudoers.d/l2tp-routectl": (0o440, "contrib/sudoers/l2tp-routectl"),
}

#: What the old bash system left on a server: its tool, hooks, units and sudoers entry.
OLD_SYSTEM = {
    "usr/local/sbin/l2tp-routectl": (0o755, "#!/bin/bash\n# old l2tp-routectl\necho old tool\n"),
    "etc/ppp/ip-up.d/l2tp-routes": (0o755, "#!/bin/sh\n/usr/local/sbin/l2tp-routectl apply --peer $5\n"),
    "etc/ppp/ip-down.d/l2tp-routes": (0o755, "#!/bin/sh\nip route show | grep \"via $5\" | while read r; do "
                                             "ip route del $r; done\n"),
    "etc/systemd/system/route-l2tp-apply-all.service": (0o644, "[Service]\nType=oneshot\n"
                                                               "ExecStart=/usr/local/sbin/l2tp-routectl apply\n"),
    "etc/systemd/system/route-l2tp-apply-all.timer": (0o644, "[Timer]\nOnBootSec=15s\nOnUnitActiveSec=60s\n"),
    "etc/sudoers.d/l2tp-routectl": (0o440, "www-data ALL=(root) NOPASSWD: /usr/local/sbin/l2tp-routectl\n"),
}
ROUTE_FILES = {
    "10.255.10.1.routes": b"192.168.50.0/24 via 10.255.10.1\n10.9.0.0/16 via 10.255.10.1 dev ppp1\n",
    "10.255.10.11.routes": b"# hand edit\r\n192.168.111.0/24 via 10.255.10.11  \r\n\r\nnot a route\n",
}


#: Root in a user namespace that belongs to nobody, without a network: `id -u` says 0, so the
#: installer goes down its live path, yet it can change nothing on this machine (no file it
#: does not own, no sysctl, no systemctl, no apt, no pip download).
POWERLESS_ROOT = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                  "unshare", "--user", "--map-root-user", "--net", "--"]


def installer(*args: str, script: Path = INSTALLER, user: str | None = None,
              powerless: bool = False) -> subprocess.CompletedProcess:
    argv = ["bash", str(script), *args]
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    if powerless:
        argv = POWERLESS_ROOT + argv
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, cwd="/")


def expected_content(source: str, checkout: Path) -> bytes:
    text = (checkout / source).read_text()
    first, rest = text.split("\n", 1)
    if source.startswith("bin/") and first.endswith("python3"):  # the Python programs, started -IS
        return f"{SHEBANG}\n{MARKER}\n{PATH_LINES}{rest}".encode()
    if source.startswith(("bin/", "lib/")):  # the sh fronts and their library, marked on their second line
        return f"{first}\n{MARKER}\n{rest}".encode()
    return text.encode()


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: type, mode, owner, mtime and content digest (or link target)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                detail = os.readlink(path)
            elif stat.S_ISREG(info.st_mode) and VENV in str(path):
                detail = info.st_size  # thousands of files that pip wrote: size and mtime tell
            elif stat.S_ISREG(info.st_mode):
                detail = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                detail = ""
            key = str(path.relative_to(root))
            found[key] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid,
                          info.st_mtime_ns if not stat.S_ISDIR(info.st_mode) else 0, detail)
    return found


def outside_venv(snap: dict[str, tuple]) -> dict[str, tuple]:
    return {key: value for key, value in snap.items() if not key.startswith(VENV + "/")}


def seed_venv(staged: Path, root: Path) -> None:
    """The staged venv copied in: these tests are about files, the staged test covers pip."""
    (root / "opt").mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(staged / VENV), str(root / VENV)], check=True)
    (root / VENV / ".l2tproute-dirs").unlink()  # the directories the staged install made, not this root's


def lay_out_old_system(root: Path) -> None:
    for rel, (mode, text) in OLD_SYSTEM.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    store = root / STORE
    store.mkdir(parents=True)
    for name, data in ROUTE_FILES.items():
        (store / name).write_bytes(data)
        (store / name).chmod(0o644)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the checkout: the working tree may change while the module runs."""
    return copy_checkout(tmp_path_factory.mktemp("checkout")).parent


@pytest.fixture(scope="module")
def staged(tmp_path_factory, checkout) -> Path:
    root = tmp_path_factory.mktemp("staged") / "root"
    result = installer("--root", str(root), script=checkout / PROG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[-1] == "Done: 20 changes. Route files were not touched."
    assert "--force" not in result.stdout  # nothing of an old tool to take over
    return root


# -- a fresh install ------------------------------------------------------------

def test_every_file_is_in_place_with_its_content_mode_and_owner(staged, checkout):
    for rel, (mode, source) in FILES.items():
        path = staged / rel
        info = path.lstat()
        assert stat.S_ISREG(info.st_mode), rel
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (mode, 0, 0), rel
        assert path.read_bytes() == expected_content(source, checkout), rel
    store = staged / STORE
    assert store.is_dir() and stat.S_IMODE(store.stat().st_mode) == 0o755 and list(store.iterdir()) == []


def test_the_venv_is_byte_compiled_and_names_the_final_paths(staged, checkout):
    site = next((staged / VENV / "lib").glob("python3*/site-packages"))
    # l2tproute/files: bin/, lib/ and contrib/ shipped for the released installer, not modules.
    sources = [p for p in (site / "l2tproute").rglob("*.py") if p.relative_to(site).parts[1] != "files"]
    assert {str(p.relative_to(site)) for p in sources} == {str(p.relative_to(checkout))
                                                          for p in (checkout / "l2tproute").rglob("*.py")}
    for source in sources:
        compiled = list((source.parent / "__pycache__").glob(f"{source.stem}.*.pyc"))
        assert len(compiled) == 1, source
        code = compiled[0].read_bytes()
        assert b"/opt/l2tproute/lib/" in code and str(staged).encode() not in code, compiled


def in_staged_opt(staged: Path, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run argv with the staged /opt mounted on /opt (a private mount namespace), so the
    installed scripts start exactly as their first lines say."""
    mount = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             'mount --bind "$0" /opt && exec "$@"', str(staged / "opt"), *argv]
    return subprocess.run(mount, capture_output=True, text=True, timeout=60, **kwargs)


def test_the_staged_command_starts_isolated_without_site_and_ignores_python_variables(staged, netns, tmp_path):
    evil = tmp_path / "evil" / "l2tproute"
    evil.mkdir(parents=True)
    (evil / "__init__.py").write_text("raise SystemExit('the caller chose the code')\n")
    (evil / "entry.py").write_text("raise SystemExit('the caller chose the code')\n")
    store = tmp_path / "routes.d"
    store.mkdir()
    netns.add_ppp("ppp1", "10.255.10.1")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(evil.parent), "PYTHONHOME": "/nonexistent",
           "PYTHONSTARTUP": str(evil / "entry.py"), C.STORE_DIR_ENV: str(store)}
    # A .pth file that would end the process if Python processed it: -S processes none,
    # so the installed package must import without any.
    trap = staged / SITE_PACKAGES.lstrip("/") / "zz-l2tproute-test-trap.pth"
    trap.write_text("import os; os._exit(97)\n")
    try:
        command = [str(staged / "usr/local/sbin/l2tp-routectl"), "add", "--peer", "10.255.10.1",
                   "--dst", "192.168.50.0/24", "--netns", netns.name]
        result = in_staged_opt(staged, command, env=env, cwd=str(evil.parent))
        assert (result.returncode, result.stderr) == (0, ""), result
        assert netns.tagged_set() == {("192.168.50.0/24", "10.255.10.1", "ppp1", "main")}
        assert (store / "10.255.10.1.routes").read_text() == "192.168.50.0/24 via 10.255.10.1\n"
        # The installed lines before the docstring, then where everything came from.
        probe = PATH_LINES + ("import l2tproute.fronts.entry, l2tproute.fronts.link_events, l2tproute.fronts.cli\n"
                              "import typer, sh, filelock\n"
                              "print(sys.flags.isolated, sys.flags.no_site, 'site' in sys.modules)\n"
                              "print(*sys.path, sep='\\n')\n"
                              "print(*(m.__file__ for m in (l2tproute, typer, sh, filelock)), sep='\\n')\n")
        shown = in_staged_opt(staged, [SHEBANG[2:].split()[0], SHEBANG.split()[1], "-c", probe], env=env,
                              cwd=str(evil.parent))
        assert (shown.returncode, shown.stderr) == (0, ""), shown
    finally:
        trap.unlink()
    flags, *lines = shown.stdout.splitlines()
    assert flags == "1 1 False"
    stdlib = [p for p in lines[:-4] if p != SITE_PACKAGES]
    assert lines[:-4] == stdlib + [SITE_PACKAGES], lines
    assert stdlib and all(p.startswith("/usr/lib/python") for p in stdlib), lines
    assert all(f.startswith(SITE_PACKAGES + "/") for f in lines[-4:]), lines


def test_a_second_run_changes_nothing_and_says_so(staged, checkout):
    before = snapshot(staged)
    result = installer("--root", str(staged), script=checkout / PROG)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout.splitlines()[-1] == ("Nothing to do: l2tproute is already installed and up to date; "
                                              "nothing was changed.")
    assert not [line for line in result.stdout.splitlines() if line.startswith(("installed", "updated", "created"))]
    assert snapshot(staged) == before


# -- the panel's users and limits: /etc/l2tp-manager/l2tproute.conf -------------

def conf_text(users: str) -> str:
    return (f"{MARKER}\n#\n"
            "# The web panel's users and what they may route (docs/security.md). l2tp-routectl\n"
            "# reads it when it runs under sudo; a sudo call by one of panel_users (comma\n"
            "# separated) may not use --force, --netns or another table, nor route the\n"
            "# server's own addresses, networks, gateways or name servers, another user's\n"
            "# networks, or anything shorter than min_prefix (IPv4) / min_prefix6 (IPv6).\n"
            "# Keep it owned by root and writable by root only.\n"
            f"panel_users = {users}\nmin_prefix = 8\nmin_prefix6 = 32\n")


def test_the_settings_file_names_the_panel_and_keeps_what_the_administrator_set(staged, checkout, tmp_path):
    conf = staged / CONF
    info = conf.stat()
    assert (conf.read_text(), stat.S_IMODE(info.st_mode), info.st_uid) == (conf_text("www-data"), 0o644, 0)
    assert load_config(str(conf)) == Config(("www-data",), 8, 32)
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(staged), str(root)], check=True)
    conf, sudoers = root / CONF, root / "etc/sudoers.d/l2tp-routectl"
    conf.write_text(conf.read_text().replace("min_prefix = 8", "min_prefix = 16"))
    kept = installer("--root", str(root), script=checkout / PROG)
    assert kept.returncode == 0 and "Nothing to do" in kept.stdout and "min_prefix = 16" in conf.read_text(), kept

    result = installer("--root", str(root), "--panel-user", "apache", "--panel-user=nginx", script=checkout / PROG)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert f"updated: {conf}" in result.stdout and f"updated: {sudoers}" in result.stdout
    assert load_config(str(conf)) == Config(("apache", "nginx"), 16, 32)
    rule = [line for line in sudoers.read_text().splitlines() if not line.startswith("#") and line.strip()]
    assert rule == ["apache, nginx ALL=(root) NOPASSWD: /usr/local/sbin/l2tp-routectl"]
    assert subprocess.run(["visudo", "-cf", str(sudoers)], capture_output=True).returncode == 0
    again = installer("--root", str(root), script=checkout / PROG)  # the settings file now says who the panel is
    assert again.returncode == 0 and "Nothing to do" in again.stdout, again
    assert "apache, nginx ALL=" in sudoers.read_text()

    removed = installer("--uninstall", "--root", str(root))
    assert f"left alone: {conf} (changed since it was installed)" in removed.stdout and conf.exists(), removed
    conf.write_text(conf_text("apache, nginx"))  # as the installer wrote it: uninstall removes it
    removed = installer("--uninstall", "--root", str(root))
    assert f"removed: {conf}" in removed.stdout and not conf.exists(), removed


# -- upgrade from the old bash system, and uninstall -----------------------------

def test_upgrade_from_the_old_system_backs_up_once_and_uninstall_restores(staged, checkout, tmp_path):
    root = tmp_path / "root"
    lay_out_old_system(root)
    seed_venv(staged, root)
    routes_before = snapshot(root / STORE)

    result = installer("--root", str(root), script=checkout / PROG)
    assert (result.returncode, result.stderr) == (0, ""), result
    for rel, (mode, text) in OLD_SYSTEM.items():
        backup = root / f"{rel}.bak-l2tproute"
        assert backup.read_text() == text and stat.S_IMODE(backup.stat().st_mode) == mode, rel
        assert f"backed up: {root / rel} -> {backup}" in result.stdout
        assert (root / rel).read_bytes() == expected_content(FILES[rel][1], checkout), rel
    assert snapshot(root / STORE) == routes_before
    assert "--force" not in result.stdout  # apply adopts the old tool's routes by itself
    assert "taken over by the next apply" in result.stdout.splitlines()[-1]

    again = installer("--root", str(root), script=checkout / PROG)
    assert again.returncode == 0 and "Nothing to do" in again.stdout and "backed up" not in again.stdout
    assert not list(root.rglob("*.bak-l2tproute-*")), "a second backup was made"

    removed = installer("--uninstall", "--root", str(root), script=checkout / PROG)
    assert (removed.returncode, removed.stderr) == (0, ""), removed
    for rel, (mode, text) in OLD_SYSTEM.items():
        path = root / rel
        assert path.read_text() == text and stat.S_IMODE(path.stat().st_mode) == mode, rel
        assert not Path(f"{path}.bak-l2tproute").exists()
    for rel in set(FILES) - set(OLD_SYSTEM):
        assert not (root / rel).exists(), rel
    assert not (root / VENV).exists()
    assert snapshot(root / STORE) == routes_before
    assert "kept: " + str(root / STORE) + " (route files are never removed)" in removed.stdout

    nothing = installer("--uninstall", "--root", str(root))
    assert nothing.returncode == 0 and nothing.stdout.splitlines()[-1].startswith("Nothing to uninstall")


def test_uninstall_removes_all_it_installed_and_leaves_a_file_it_did_not_install(staged, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(staged), str(root)], check=True)
    mine = root / "etc/sysctl.d/99-l2tp-routing.conf"
    mine.write_text("# the admin's own file now\nnet.ipv4.ip_forward = 1\n")
    result = installer("--uninstall", "--root", str(root))
    assert (result.returncode, result.stderr) == (0, ""), result
    assert f"left alone: {mine} (not installed by this script)" in result.stdout
    assert [p for p in root.rglob("*") if not p.is_dir()] == [mine]
    assert mine.read_text().startswith("# the admin's own file now")
    assert not (root / STORE).exists() and "removed: " + str(root / STORE) + " (it was empty)" in result.stdout


# -- failures: clear message, non-zero, nothing half done -----------------------

def test_a_failure_half_way_rolls_every_change_back(staged, checkout, tmp_path):
    root = tmp_path / "root"
    lay_out_old_system(root)
    seed_venv(staged, root)
    (root / "etc/iproute2/rt_protos.d/l2tproute.conf").mkdir(parents=True)  # in the way, after 5 files
    before = snapshot(root)
    result = installer("--root", str(root), script=checkout / PROG)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert errors == [f"{PROG}: error: {root}/etc/iproute2/rt_protos.d/l2tproute.conf is a directory; expected a "
                      "file there (move it away)"], result.stderr
    assert "Rolled back: the system is as it was before this run." in result.stdout
    assert "updated: " + str(root / "usr/local/sbin/l2tp-routectl") in result.stdout  # there was something to undo
    assert "installed: " + str(root / CONF) in result.stdout
    assert snapshot(root) == before


def copy_checkout(target: Path) -> Path:
    """The files the installer installs from, in a scratch checkout that a test may break."""
    for rel in ("pyproject.toml", "README.md", INSTALLER.name):
        shutil.copy2(REPO / rel, target / rel)
    for rel in ("l2tproute", "bin", "lib", "contrib"):
        shutil.copytree(REPO / rel, target / rel, ignore=shutil.ignore_patterns("__pycache__"))
    return target / INSTALLER.name


def test_a_sudoers_file_that_visudo_rejects_is_never_installed(tmp_path):
    source = tmp_path / "checkout"
    source.mkdir()
    script = copy_checkout(source)
    (source / "contrib/sudoers/l2tp-routectl").write_text(
        f"{MARKER}\nwww-data ALL=(root) NOPASSWD /usr/local/sbin/l2tp-routectl\n")
    root = tmp_path / "root"
    result = installer("--root", str(root), script=script)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(f"{PROG}: error: checking the sudoers file with visudo -cf "
                                                     "failed"), result.stderr
    assert "syntax error" in result.stderr
    assert not root.exists() or [p for p in root.rglob("*")] == []


def test_an_incomplete_checkout_is_refused_before_anything_happens(tmp_path):
    source = tmp_path / "checkout"
    source.mkdir()
    script = copy_checkout(source)
    (source / "contrib/systemd/route-l2tp-apply-all.timer").unlink()
    root = tmp_path / "root"
    result = installer("--root", str(root), script=script)
    assert result.returncode == 1
    assert result.stderr == (f"{PROG}: error: {source}/contrib/systemd/route-l2tp-apply-all.timer is missing: "
                             "run the script from a complete l2tproute checkout\n")
    assert not root.exists()


@pytest.fixture(scope="module")
def readable_installer():
    """A complete copy of the checkout where nobody can read it (the checkout may be in root's
    home): a regression that let a wrong argument through would go on as far as it can."""
    directory = Path(tempfile.mkdtemp(prefix="l2t-installer-"))
    try:
        directory.chmod(0o755)
        yield copy_checkout(directory)
    finally:
        shutil.rmtree(directory)


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown argument '--bogus'"),
    (["--root"], "--root needs a directory"),
    (["--root", ""], "--root needs a directory"),
    (["--root", "/"], "--root /: run without --root to install on this system"),
    (["--root", "/nowhere/a b"], "--root '/nowhere/a b': use a path of letters, digits and / . _ + - only (see"),
    (["--demo", "--root", "/nowhere/x"], "--demo needs the live system; it does not go with --root"),
    (["--demo", "--uninstall"], "--demo and --uninstall do not go together"),
    (["--scheduler"], "--scheduler needs systemd or cron"),
    (["--scheduler", "anacron"], "--scheduler 'anacron': use systemd or cron"),
    (["--scheduler="], "--scheduler '': use systemd or cron"),
    (["--scheduler", "cron", "--uninstall"], "--scheduler does not go with --uninstall (it removes the files of both)"),
    (["--panel-user"], "--panel-user needs a user name"),
    (["--panel-user=", "--root", "/nowhere/x"], "panel user '': expected a user name like www-data"),
    (["--panel-user", "www-data ALL=(ALL) ALL"], "panel user 'www-data ALL=(ALL) ALL': expected a user name"),
    (["--panel-user", "apache", "--uninstall"], "--panel-user and --uninstall do not go together"),
])
def test_a_wrong_argument_is_one_line_and_exit_2(readable_installer, args, message):
    """As root, but a root that can change nothing: if parsing ever let one of these through,
    the run would fail here instead of reinstalling or uninstalling this machine's copy."""
    result = installer(*args, script=readable_installer, powerless=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"{PROG}: error: {message}") and result.stderr.count("\n") == 1, result.stderr


def test_the_live_install_needs_root():
    result = installer(user="nobody")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"{PROG}: error: run me as root: sudo ./{PROG}\n"


# -- the re-apply: systemd's timer or cron, exactly one ----------------------------

UNITS = ("etc/systemd/system/route-l2tp-apply-all.service", "etc/systemd/system/route-l2tp-apply-all.timer",
         "etc/systemd/system/l2tproute-worker.service", "etc/systemd/system/l2tproute-worker.path")
CRON_FILE = "etc/cron.d/l2tproute"


def test_by_default_a_staged_install_has_the_units_and_no_cron_file(staged):
    assert all((staged / unit).is_file() for unit in UNITS)
    assert not (staged / CRON_FILE).exists() and not (staged / "etc/cron.d").exists()


def test_the_cron_scheduler_installs_the_cron_file_and_no_units(staged, checkout, tmp_path):
    root = tmp_path / "root"
    seed_venv(staged, root)
    result = installer("--root", str(root), "--scheduler", "cron", script=checkout / PROG)
    assert (result.returncode, result.stderr) == (0, ""), result
    cron = root / CRON_FILE
    info = cron.lstat()
    assert stat.S_ISREG(info.st_mode) and (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o644, 0, 0)
    assert cron.read_bytes() == (checkout / "contrib/cron/l2tproute").read_bytes()
    assert not (root / "etc/systemd").exists()
    assert f"installed: {cron}" in result.stdout
    assert "cron on the target system runs /etc/cron.d/l2tproute" in result.stdout


def test_switching_the_scheduler_removes_the_other_one_and_a_second_run_changes_nothing(staged, checkout, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(staged), str(root)], check=True)
    to_cron = installer("--root", str(root), "--scheduler=cron", script=checkout / PROG)
    assert (to_cron.returncode, to_cron.stderr) == (0, ""), to_cron
    for unit in UNITS:
        assert f"removed: {root / unit} (cron re-applies instead)" in to_cron.stdout
        assert not (root / unit).exists()
    assert (root / CRON_FILE).is_file()
    assert to_cron.stdout.splitlines()[-1] == "Done: 5 changes. Route files were not touched."

    before = snapshot(root)
    again = installer("--root", str(root), "--scheduler", "cron", script=checkout / PROG)
    assert again.stdout.splitlines()[-1].startswith("Nothing to do"), again.stdout
    assert snapshot(root) == before

    back = installer("--root", str(root), "--scheduler", "systemd", script=checkout / PROG)
    assert (back.returncode, back.stderr) == (0, ""), back
    assert f"removed: {root / CRON_FILE} (systemd re-applies instead)" in back.stdout
    assert not (root / CRON_FILE).exists() and all((root / unit).is_file() for unit in UNITS)


def test_a_cron_file_that_is_not_ours_is_left_alone_by_the_systemd_scheduler_and_uninstall(staged, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(staged), str(root)], check=True)
    theirs = root / CRON_FILE
    theirs.parent.mkdir()
    theirs.write_text("* * * * * root /usr/local/sbin/l2tp-routectl apply\n")
    result = installer("--root", str(root))
    assert f"left alone: {theirs} (not installed by this script)" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("Nothing to do"), result.stdout
    removed = installer("--uninstall", "--root", str(root))
    assert removed.returncode == 0 and theirs.read_text().startswith("* * * * * root")


def test_a_failed_switch_rolls_back_to_the_units(staged, checkout, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(staged), str(root)], check=True)
    store = root / STORE
    store.rmdir()
    store.write_text("in the way\n")  # the store is made after the scheduler's files
    before = snapshot(root)
    result = installer("--root", str(root), "--scheduler", "cron", script=checkout / PROG)
    assert result.returncode == 1
    assert f"{PROG}: error: {store} is in the way: expected a directory there" in result.stderr
    assert f"removed: {root / UNITS[1]} (cron re-applies instead)" in result.stdout  # there was something to undo
    assert "Rolled back: the system is as it was before this run." in result.stdout
    assert snapshot(root) == before


def test_uninstall_removes_the_cron_file_and_the_directories_it_created_when_empty(staged, checkout, tmp_path):
    root = tmp_path / "root"
    (root / "etc/sysctl.d").mkdir(parents=True)  # the distribution's: stays even when empty
    seed_venv(staged, root)
    installed = installer("--root", str(root), "--scheduler", "cron", script=checkout / PROG)
    assert (installed.returncode, installed.stderr) == (0, ""), installed
    made = {line.rstrip("\n") for line in (root / VENV / ".l2tproute-dirs").read_text().splitlines()}
    assert made == {"/etc/cron.d", "/etc/iproute2", "/etc/iproute2/rt_protos.d", "/etc/ppp", "/etc/ppp/ip-up.d",
                    "/etc/ppp/ip-down.d", "/etc/sudoers.d", "/usr", "/usr/local", "/usr/local/sbin",
                    "/etc/l2tp-manager", "/etc/l2tp-manager/routes.d"}
    admins = root / "etc/ppp/ip-up.d/0000admin"
    admins.write_text("#!/bin/sh\n")

    removed = installer("--uninstall", "--root", str(root))
    assert (removed.returncode, removed.stderr) == (0, ""), removed
    assert f"removed: {root / CRON_FILE}" in removed.stdout
    assert f"removed: {root}/etc/iproute2/rt_protos.d (created by this script, now empty)" in removed.stdout
    assert f"kept: {root}/etc/ppp/ip-up.d (created by this script, but not empty)" in removed.stdout
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == ["etc", "etc/ppp", "etc/ppp/ip-up.d", "etc/ppp/ip-up.d/0000admin", "etc/sysctl.d",
                    "opt"], left  # opt: made by seed_venv, before the installer


# -- a live install (no --root) in a sandbox ------------------------------------------
#
# The installer runs as on a server without systemd: chrooted into an overlay of this
# machine's / (the writes land in a scratch upper layer), with a fresh /run (no
# /run/systemd/system), inside a scratch network namespace (sysctl net.* are its own).

LIVE_SANDBOX = r"""
set -eu
S=$1 OUT=$2; shift 2
mount -t tmpfs sandbox "$S"
mkdir "$S/up" "$S/work" "$S/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$S/up,workdir=$S/work" "$S/root"
mount --rbind /dev "$S/root/dev"
mount --rbind /sys "$S/root/sys"
mount -t proc proc "$S/root/proc"
mount -t tmpfs run "$S/root/run"
mount --bind "$OUT" "$S/root$OUT"
status=0
chroot "$S/root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C bash -c "$1" steps "$OUT" || status=$?
cp -a "$S/up/." "$OUT/upper"
exit "$status"
"""

LIVE_STEPS = r"""
set -u
OUT=$1 INSTALLER=%(installer)s
run() { "$@" >"$OUT/$n.out" 2>"$OUT/$n.err"; echo $? >"$OUT/$n.rc"; n=$((n + 1)); }
state() {
    for f in /etc/cron.d/l2tproute /etc/systemd/system/route-l2tp-apply-all.timer /etc/iproute2/rt_protos.d; do
        if [ -e "$f" ]; then echo "$f present"; else echo "$f absent"; fi
    done
    cat /proc/sys/net/ipv4/ip_forward
    cat /proc/sys/net/ipv4/conf/ppp0/rp_filter 2>/dev/null || echo no ppp0
}
n=0
echo 0 >/proc/sys/net/ipv4/ip_forward  # a new namespace starts with this machine's
rm -f /etc/cron.d/l2tproute  # in the overlay: as on a server that never had it
rm -rf /etc/iproute2/rt_protos.d  # made by the installer, then (as here) a package's directory
run bash "$INSTALLER"
state >"$OUT/state0"
ip tuntap add dev ppp0 mode tun
echo 0 >/proc/sys/net/ipv4/conf/ppp0/rp_filter
echo 0 >/proc/sys/net/ipv4/ip_forward
run bash "$INSTALLER"
state >"$OUT/state1"
run bash "$INSTALLER" --uninstall
state >"$OUT/state2"
"""


def test_live_without_systemd_cron_reapplies_and_sysctl_reports_each_setting(checkout, netns, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    host_cron = Path("/etc/cron.d/l2tproute")
    host_before = host_cron.read_bytes() if host_cron.exists() else None
    steps = LIVE_STEPS % {"installer": checkout / PROG}
    command = ["ip", "netns", "exec", netns.name, "unshare", "--mount", "--propagation", "private", "sh", "-c",
               LIVE_SANDBOX, "sandbox", str(sandbox), str(out), steps]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done
    runs = [((out / f"{n}.rc").read_text().strip(), (out / f"{n}.out").read_text(), (out / f"{n}.err").read_text())
            for n in range(3)]
    for rc, stdout, stderr in runs:
        assert (rc, stderr) == ("0", ""), (stdout, stderr)

    first = runs[0][1].splitlines()
    assert "installed: /etc/cron.d/l2tproute" in first
    assert not [line for line in first if "route-l2tp-apply-all" in line and not line.startswith("removed: ")]
    # Every setting as it went: ip_forward set, the ppp* glob on no link yet (Debian 11's
    # sysctl -p fails on exactly this, after it set ip_forward).
    assert "applied: /etc/sysctl.d/99-l2tp-routing.conf: net.ipv4.ip_forward = 1" in first
    assert ("note: net.ipv4.conf.ppp*.rp_filter: no such link now; the pppd hook sets it on each ppp link as it "
            "comes up") in first
    assert first[-1].startswith("Logs: grep l2tp-routectl /var/log/syslog")
    assert (out / "state0").read_text() == ("/etc/cron.d/l2tproute present\n"
                                            "/etc/systemd/system/route-l2tp-apply-all.timer absent\n"
                                            "/etc/iproute2/rt_protos.d present\n1\nno ppp0\n")

    second = runs[1][1].splitlines()
    assert ("applied: /etc/sysctl.d/99-l2tp-routing.conf: net.ipv4.ip_forward = 1; "
            "net.ipv4.conf.ppp*.rp_filter = 2 on ppp0") in second
    assert "Done: 1 changes. Route files were not touched." in second
    assert (out / "state1").read_text().splitlines()[3:] == ["1", "2"]

    removed = runs[2][1].splitlines()
    assert "removed: /etc/cron.d/l2tproute" in removed
    assert (out / "state2").read_text().splitlines()[0] == "/etc/cron.d/l2tproute absent"
    # The directory it made is empty again, but dpkg says iproute2 ships it: it stays.
    owned = subprocess.run(["dpkg-query", "-S", "/etc/iproute2/rt_protos.d"], capture_output=True, text=True)
    assert owned.returncode == 0, "this test needs a Debian whose iproute2 ships /etc/iproute2/rt_protos.d"
    owners = owned.stdout.split(":")[0]
    assert f"kept: /etc/iproute2/rt_protos.d (created by this script, now a package's: {owners})" in removed
    assert (out / "state2").read_text().splitlines()[2] == "/etc/iproute2/rt_protos.d present"
    # What the first run wrote stayed in the sandbox: this machine's file is as it was.
    assert (host_cron.read_bytes() if host_cron.exists() else None) == host_before


def test_the_readmes_first_command_installs_nothing_new_and_its_demo_shows_every_path_working():
    """`sudo ./install-l2tp-per-user-routing.sh --demo` on this machine, where run-tests.sh has just
    installed this checkout: nothing to change, then the demo in a scratch namespace and store
    (the command, the panel's sh front, apply, del, and the pppd hooks with their worker)."""
    before = subprocess.run(["ip", "-j", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    result = installer("--demo")
    assert (result.returncode, result.stderr) == (0, ""), result.stdout[-3000:] + result.stderr
    out = result.stdout
    assert "Nothing to do: l2tproute is already installed and up to date" in out, \
        "the live install is not this checkout's: run ./run-tests.sh (it installs first)"
    assert "Routes for peer 10.255.10.2:\n192.168.20.0/24 via 10.255.10.2\n10.20.0.0/16 via 10.255.10.2\n" in out
    assert "2 unchanged, 0 blocked, 0 failed." in out
    down, up = out.split("/etc/ppp/ip-down.d/l2tp-routes", 1)[1].split("/etc/ppp/ip-up.d/l2tp-routes", 1)
    assert "192.168.30.0/24" not in down.split("route show proto 157", 1)[1]  # ip-down took it out
    assert "192.168.30.0/24 via 10.255.10.2 dev ppp0" in up  # ip-up put it back through the worker
    assert out.rstrip().endswith("== Demo done: namespace and scratch store removed.")
    after = subprocess.run(["ip", "-j", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    assert after == before


PANEL_OVPN = ("port 8443\nproto tcp-server\ndev tun\ntopology subnet\nserver 10.10.30.0 255.255.255.0\n"
              "verify-client-cert none\nusername-as-common-name\nauth-user-pass-verify /etc/openvpn/auth.sh via-file\n"
              "script-security 2\nuser nobody\ngroup www-data\nduplicate-cn\npersist-tun\nkeepalive 10 120\n")
HOOK = "/opt/l2tproute/libexec/l2tp-routes-openvpn"
KICK = "/opt/l2tproute/libexec/l2tp-routes-kick"
PRECOMPUTE = "/opt/l2tproute/libexec/l2tp-routes-worker --iroutes"
#: What earlier versions put into server.conf itself (a rewrite by the panel dropped it).
OLD_BLOCK = (f"{MARKER}\n# l2tproute: the per-user routes for users connected over OpenVPN (--uninstall removes this "
             f"block)\nclient-connect {HOOK}\nclient-disconnect {HOOK}\n"
             "management /run/l2tproute/openvpn.sock unix\nmanagement-client-user root\n# l2tproute end\n")
OPTIONS = (f"--script-security 2 --client-connect {HOOK} --client-disconnect {HOOK} "
           "--management /run/l2tproute/openvpn.sock unix --management-client-user root")
PACKAGED_UNIT = Path("/lib/systemd/system/openvpn@.service")
DROP_IN = "etc/systemd/system/openvpn@server.service.d/l2tproute.conf"
OVPN_SUDOERS = "etc/sudoers.d/l2tproute-openvpn"
TMPFILES = "etc/tmpfiles.d/l2tproute.conf"


def packaged_exec_start() -> str:
    """ExecStart of Debian's openvpn@.service on this machine (run-tests.sh installs openvpn)."""
    assert PACKAGED_UNIT.is_file(), "needs Debian's openvpn package: apt-get install openvpn"
    return [line for line in PACKAGED_UNIT.read_text().splitlines() if line.startswith("ExecStart=")][-1]


def openvpn_root(staged: Path, root: Path, config: str = PANEL_OVPN) -> Path:
    """A server with the panel's OpenVPN (its config, Debian's units and init script) and the staged venv."""
    seed_venv(staged, root)
    conf = root / "etc/openvpn/server.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(config)
    conf.chmod(0o600)
    for packaged in (PACKAGED_UNIT, Path("/etc/init.d/openvpn"), Path("/etc/default/openvpn")):
        (root / packaged.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(packaged, root / packaged.relative_to("/"))
    return conf


@pytest.fixture(scope="module")
def wired(tmp_path_factory, staged, checkout) -> Path:
    """A staged install on a server with the panel's OpenVPN (systemd target)."""
    root = tmp_path_factory.mktemp("wired") / "root"
    openvpn_root(staged, root)
    result = installer("--root", str(root), script=checkout / PROG)
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    for rel in (DROP_IN, TMPFILES, OVPN_SUDOERS):
        assert f"installed: {root / rel}" in result.stdout.splitlines(), result.stdout
    return root


def test_the_openvpn_hooks_go_on_openvpns_command_line_before_its_config_which_stays_as_the_panel_wrote_it(
        wired, checkout):
    conf = wired / "etc/openvpn/server.conf"
    assert conf.read_text() == PANEL_OVPN and stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert not (wired / "etc/openvpn/server.conf.bak-l2tproute").exists()
    program, rest = packaged_exec_start().split(" ", 1)
    assert program == "ExecStart=/usr/sbin/openvpn" and " --config /etc/openvpn/%i.conf" in rest
    drop_in = (wired / DROP_IN).read_text()
    assert drop_in.startswith(MARKER + "\n") and stat.S_IMODE((wired / DROP_IN).stat().st_mode) == 0o644
    # The packaged command, our options first: the config's own lines win over them.
    # Root's precompute of the iroutes the hook copies, before the server takes clients.
    assert drop_in.endswith(f"\n[Service]\nExecStartPre=-{PRECOMPUTE}\nExecStart=\n{program} {OPTIONS} {rest}\n"), \
        drop_in
    assert "/lib/systemd/system/openvpn@.service" in drop_in
    assert (wired / TMPFILES).read_text() == (
        f"{MARKER}\nd /run/l2tproute 0755 root root -\nd /run/l2tproute/spool 1770 root www-data -\n"
        "d /run/l2tproute/openvpn-connect 1770 root www-data -\n"
        "d /run/l2tproute/openvpn-iroutes 2750 root www-data -\n")
    # Where systemd runs, Debian's defaults file is not touched.
    assert (wired / "etc/default/openvpn").read_bytes() == Path("/etc/default/openvpn").read_bytes()
    sudoers = wired / OVPN_SUDOERS
    info = sudoers.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o440, 0)
    rules = [line for line in sudoers.read_text().splitlines() if line and not line.startswith("#")]
    assert rules == [f'nobody ALL=(root) NOPASSWD: {KICK} ""']
    assert subprocess.run(["visudo", "-cf", str(sudoers)], capture_output=True).returncode == 0

    before = snapshot(wired)
    again = installer("--root", str(wired), script=checkout / PROG)
    assert (again.returncode, again.stderr) == (0, ""), again
    assert again.stdout.splitlines()[-1].startswith("Nothing to do"), again.stdout
    assert snapshot(wired) == before


def test_an_earlier_installs_block_in_server_conf_is_taken_out_and_uninstall_removes_the_rest(staged, checkout,
                                                                                          tmp_path):
    root = tmp_path / "root"
    conf = openvpn_root(staged, root, PANEL_OVPN + OLD_BLOCK)
    backup = root / "etc/openvpn/server.conf.bak-l2tproute"
    backup.write_text(PANEL_OVPN)  # as the earlier install left it
    store = root / STORE
    store.parent.mkdir(parents=True)
    store.write_text("in the way\n")  # the store is made after OpenVPN is wired: that run fails
    before = snapshot(root)
    failed = installer("--root", str(root), script=checkout / PROG)
    assert failed.returncode == 1 and f"unwired: {conf}" in failed.stdout, failed
    assert "Rolled back: the system is as it was before this run." in failed.stdout
    assert snapshot(root) == before  # the block and the backup are back
    store.unlink()
    result = installer("--root", str(root), script=checkout / PROG)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert f"unwired: {conf} (its l2tproute block removed; the hooks are on the command line of OpenVPN now)" \
        in result.stdout
    assert conf.read_text() == PANEL_OVPN and stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert not backup.exists() and (root / DROP_IN).is_file()
    again = installer("--root", str(root), script=checkout / PROG)
    assert again.stdout.splitlines()[-1].startswith("Nothing to do"), again.stdout

    gone = installer("--root", str(root), "--uninstall", script=checkout / PROG)
    assert (gone.returncode, gone.stderr) == (0, ""), gone
    for rel in (DROP_IN, TMPFILES, OVPN_SUDOERS):
        assert f"removed: {root / rel}" in gone.stdout.splitlines()
    assert not (root / "etc/systemd/system/openvpn@server.service.d").exists()
    assert not (root / "etc/tmpfiles.d").exists() and not (root / OVPN_SUDOERS).exists()
    assert conf.read_text() == PANEL_OVPN and not backup.exists()
    assert (root / PACKAGED_UNIT.relative_to("/")).read_bytes() == PACKAGED_UNIT.read_bytes()


def test_where_systemd_does_not_run_debians_init_script_gets_the_hooks_through_optargs(staged, checkout, tmp_path):
    """The real /etc/init.d/openvpn builds the command line (start-stop-daemon only records it),
    in a private mount and network namespace (its sysctl and /run/openvpn stay there)."""
    root = tmp_path / "root"
    conf = openvpn_root(staged, root)
    defaults = root / "etc/default/openvpn"
    debians = defaults.read_text()
    result = installer("--root", str(root), "--scheduler", "cron", script=checkout / PROG)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert not (root / DROP_IN).exists() and conf.read_text() == PANEL_OVPN
    assert defaults.read_text() == (
        f"{debians}{MARKER}\n# l2tproute: the hooks of the panel's OpenVPN server (docs/openvpn.md);"
        f"\n# --uninstall removes this block.\nOPTARGS=\"${{OPTARGS:-}} {OPTIONS}\"\n"
        "install -d -m 0755 -g root /run/l2tproute && install -d -m 1770 -g www-data /run/l2tproute/spool && "
        "install -d -m 1770 -g www-data /run/l2tproute/openvpn-connect && "
        "install -d -m 2750 -g www-data /run/l2tproute/openvpn-iroutes && true || :\n"
        f"{PRECOMPUTE} >/dev/null 2>&1 || :\n"
        "# l2tproute end\n")
    assert (root / "etc/default/openvpn.bak-l2tproute").read_text() == debians
    again = installer("--root", str(root), "--scheduler", "cron", script=checkout / PROG)
    assert again.stdout.splitlines()[-1].startswith("Nothing to do"), again.stdout

    record = tmp_path / "argv"
    recorder = tmp_path / "start-stop-daemon"
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >{record}\n')
    recorder.chmod(0o755)
    script = ('mount -t tmpfs none /run && mount --bind "$1/etc/openvpn" /etc/openvpn && '
              'mount --bind "$1/etc/default/openvpn" /etc/default/openvpn && '
              'mount --bind "$2" /sbin/start-stop-daemon && '
              '/etc/init.d/openvpn start server && '
              'ls -ld /run/l2tproute/spool /run/l2tproute/openvpn-connect /run/l2tproute/openvpn-iroutes')
    started = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", "sh", "-euc", script, "sh",
                              str(root), str(recorder)],
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started
    made = [line.split() for line in started.stdout.strip().splitlines()[-3:]]
    assert [(d[0], d[2], d[3], d[-1]) for d in made] == [
        ("drwxrwx--T", "root", "www-data", "/run/l2tproute/openvpn-connect"),
        ("drwxr-s---", "root", "www-data", "/run/l2tproute/openvpn-iroutes"),
        ("drwxrwx--T", "root", "www-data", "/run/l2tproute/spool")], started.stdout
    argv = record.read_text().splitlines()
    command = argv[argv.index("--") + 1:]
    assert " ".join(command).startswith(OPTIONS + " --writepid /run/openvpn/server.pid"), command
    assert command[-2:] == ["--config", "/etc/openvpn/server.conf"]

    gone = installer("--root", str(root), "--uninstall", script=checkout / PROG)
    assert (gone.returncode, gone.stderr) == (0, ""), gone
    assert defaults.read_text() == debians and not (root / "etc/default/openvpn.bak-l2tproute").exists()


def test_an_openvpn_config_with_its_own_hooks_is_left_alone_and_without_one_the_lines_are_printed(staged, checkout,
                                                                                                tmp_path):
    root = tmp_path / "root"
    seed_venv(staged, root)
    bare = installer("--root", str(root), script=checkout / PROG)
    assert f"    client-connect {HOOK}" in bare.stdout.splitlines()
    assert "    management-client-user root" in bare.stdout.splitlines()
    assert ("and make /run/l2tproute/spool and /run/l2tproute/openvpn-connect writable by the server's group "
            "(root:GROUP, mode 1770), /run/l2tproute/openvpn-iroutes readable by it (root:GROUP, mode 2750) and "
            f"run {PRECOMPUTE} before OpenVPN starts") in bare.stdout.splitlines()
    assert not (root / "etc/openvpn").exists() and not (root / "etc/tmpfiles.d").exists()

    own = PANEL_OVPN + "client-connect /etc/openvpn/mine.sh\n"
    conf = openvpn_root(staged, tmp_path / "own", own)
    root = tmp_path / "own"
    before = snapshot(root)
    second = installer("--root", str(root), script=checkout / PROG)
    assert second.returncode == 0
    assert "has its own client-connect, client-disconnect or management lines: not wired" in second.stderr
    assert conf.read_text() == own
    for rel in (DROP_IN, OVPN_SUDOERS, TMPFILES, "etc/openvpn/server.conf.bak-l2tproute"):
        assert not (root / rel).exists(), rel
    assert {k: v for k, v in snapshot(root).items() if k.startswith("etc/openvpn")} == \
        {k: v for k, v in before.items() if k.startswith("etc/openvpn")}


def in_sudo_box(root: Path, scratch: Path, argv: list[str], ns=None) -> subprocess.CompletedProcess:
    """argv with the staged /opt and sudoers file in place and a scratch /run/l2tproute and store
    (a private mount namespace; inside `ns` if given), so sudo decides by the staged rule and
    the kick it runs acts on scratch state only."""
    sudoers = scratch / "sudoers.d"
    if not sudoers.exists():
        subprocess.run(["cp", "-a", "/etc/sudoers.d", str(sudoers)], check=True)
        shutil.copy2(root / OVPN_SUDOERS, sudoers / "l2tproute-openvpn")
    script = ('mount --bind "$1" /etc/sudoers.d && mount --bind "$2/opt" /opt && mount -t tmpfs none /run && '
              'mkdir /run/l2tproute && mount --bind "$3" /run/l2tproute && '
              'mount --bind "$4" /etc/l2tp-manager/routes.d && shift 4 && exec "$@"')
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-euc", script, "sh", str(sudoers), str(root),
               str(scratch / "run"), str(scratch / "routes.d"), *argv]
    if ns is not None:
        command = ["ip", "netns", "exec", ns.name, *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/sbin:/usr/bin:"
                                                                                      "/sbin:/bin", "LANG": "C"})


def test_the_openvpn_servers_user_may_run_the_kick_through_sudo_and_nothing_else(wired, netns, tmp_path):
    """nobody -> sudo -> l2tp-routes-kick -> the root worker drains a spooled link event in a namespace."""
    (tmp_path / "run/spool").mkdir(parents=True)
    (tmp_path / "routes.d").mkdir()
    (tmp_path / "routes.d/10.255.10.2.routes").write_text("192.168.20.0/24 via 10.255.10.2\n")
    netns.add_ppp("ppp0", "10.255.10.2")
    event = tmp_path / "run/spool" / f"{named(netns.name)},ppp0,1,up,10.255.10.2"  # the kick runs in netns
    event.write_text("")
    assert in_sudo_box(wired, tmp_path, ["visudo", "-c"]).returncode == 0

    listed = in_sudo_box(wired, tmp_path, ["sudo", "-l", "-U", "nobody"])
    assert listed.returncode == 0, listed
    rules = listed.stdout.split("may run the following commands", 1)[1].splitlines()[1:]
    assert [line.strip() for line in rules if line.strip()] == [f'(root) NOPASSWD: {KICK} ""'], listed.stdout

    as_nobody = ["runuser", "-u", "nobody", "--", "sudo", "-n"]
    assert in_sudo_box(wired, tmp_path, [*as_nobody, "-l", KICK]).returncode == 0
    for denied in ([KICK, "now"], ["/bin/true"], ["-u", "www-data", KICK], ["L2TP_RUN_DIR=/tmp", KICK],
                   ["env", KICK], ["-E", KICK]):
        refused = in_sudo_box(wired, tmp_path, [*as_nobody, *denied])
        assert refused.returncode == 1, (denied, refused)
        assert re.match(r"sudo: (a password is required|sorry, you are not allowed to )", refused.stderr), refused
    others = in_sudo_box(wired, tmp_path, ["runuser", "-u", "www-data", "--", "sudo", "-n", "-l", KICK])
    assert others.returncode == 1, others
    assert netns.tagged_set() == set() and event.exists()

    kicked = in_sudo_box(wired, tmp_path, [*as_nobody, KICK], ns=netns)
    assert (kicked.returncode, kicked.stdout, kicked.stderr) == (0, "", ""), kicked
    wait_for_worker(tmp_path / "run")
    assert netns.tagged_set() == {("192.168.20.0/24", "10.255.10.2", "ppp0", "main")}


def test_an_earlier_versions_openvpn_connector_is_removed_and_a_file_without_the_mark_stays(staged, checkout,
                                                                                              tmp_path):
    root = tmp_path / "root"
    seed_venv(staged, root)
    connector = root / "opt/l2tproute/libexec/l2tp-routes-openvpn-connect"
    connector.write_text(f"#!/opt/l2tproute/bin/python3 -IS\n{MARKER}\nimport sys\n")
    connector.chmod(0o755)
    result = installer("--root", str(root), script=checkout / PROG)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert f"removed: {connector} (the hook needs no Python now)" in result.stdout.splitlines()
    assert not connector.exists()
    connector.write_text("#!/bin/sh\n# the administrator's own\n")
    again = installer("--root", str(root), script=checkout / PROG)
    assert again.stdout.splitlines()[-1].startswith("Nothing to do"), again.stdout
    assert connector.read_text() == "#!/bin/sh\n# the administrator's own\n"


def test_an_upgrade_moves_the_destination_index_out_of_the_store_and_uninstall_removes_the_cache(
        staged, checkout, tmp_path):
    """Issue 28: the index is a cache; the store keeps only route files (and the lock)."""
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(staged), str(root)], check=True)
    store = root / STORE
    index = store / ".l2tproute.dst-index"
    index.write_bytes(b'{"version":1,"files":{}}')
    routes_before = snapshot(store)

    result = installer("--root", str(root), script=checkout / PROG)
    assert (result.returncode, result.stderr) == (0, ""), result
    moved = root / "var/cache/l2tproute/dst-index"
    assert f"moved: {index} to {moved}" in result.stdout
    assert moved.read_bytes() == b'{"version":1,"files":{}}' and not index.exists()
    assert {name: data for name, data in routes_before.items() if not name.endswith("dst-index")} == snapshot(store)
    again = installer("--root", str(root), script=checkout / PROG)
    assert again.returncode == 0 and "Nothing to do" in again.stdout

    removed = installer("--uninstall", "--root", str(root))
    assert (removed.returncode, removed.stderr) == (0, ""), removed
    assert f"removed: {root}/var/cache/l2tproute (a cache of the route files)" in removed.stdout
    assert not (root / "var/cache/l2tproute").exists()
