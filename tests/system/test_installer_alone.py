"""The released installer alone, as the panel's installer runs it: fetched by curl into a
temporary file and run with bash, its package by name from a package index.

tools/release.py makes the release (and runs its own check: the wheel alone installs what
the checkout installs). The wheel and its dependencies (built here, tests/support/wheelhouse.py)
are served as a simple package index (PEP 503) by one HTTP server, the script by another,
both on 127.0.0.1 in a network namespace of their own, where nothing else is reachable.
Installs are staged (--root), as in test_installer.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO
from support import wheelhouse
from test_installer import FILES, PROG, SITE_PACKAGES, STORE, VENV, expected_content, snapshot
from test_installer_wheels import PYTHON

sys.path.insert(0, str(REPO / "tools"))
import release as release_tool  # noqa: E402

VERSION = re.search(r'^__version__ = "(.+)"$', (REPO / "l2tproute/__init__.py").read_text(), re.M)[1]
INDEX_URL = "http://127.0.0.1:8081/simple/"
SCRIPT_URL = f"http://127.0.0.1:8082/{PROG}"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}

#: The panel's installer's way (its run_remote): the script by its URL into a temporary file,
#: run with bash. In a new network namespace with only lo: the two servers are all there is.
PANEL = r"""
set -u
INDEX=$1 SCRIPTS=$2 LOG=$3; shift 3
ip link set lo up
python3 -m http.server 8081 --bind 127.0.0.1 --directory "$INDEX" 2>"$LOG" >/dev/null & index=$!
python3 -m http.server 8082 --bind 127.0.0.1 --directory "$SCRIPTS" 2>/dev/null >/dev/null & scripts=$!
trap 'kill $index $scripts; wait' EXIT
tries=0
until curl -fso /dev/null http://127.0.0.1:8081/simple/ && curl -fso /dev/null http://127.0.0.1:8082/; do
    tries=$((tries + 1)); [ $tries -lt 200 ] || { echo "the servers did not start" >&2; exit 99; }; sleep 0.05
done
tmp=$(mktemp)
curl -fsSL "$SCRIPT_URL" -o "$tmp" || exit 98
bash "$tmp" "$@"; status=$?
rm -f "$tmp"
exit $status
"""


def panel_install(index: Path, scripts: Path, log: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-n", "bash", "-c", PANEL.replace("$SCRIPT_URL", SCRIPT_URL), "panel",
                           str(index), str(scripts), str(log), *args],
                          capture_output=True, text=True, env=ENV, cwd="/", timeout=900)


def make_index(directory: Path, wheels: list[Path]) -> Path:
    """A simple package index (PEP 503): /simple/NAME/ links each file with its sha256."""
    files = directory / "files"
    files.mkdir(parents=True)
    projects: dict[str, list[str]] = {}
    for wheel in wheels:
        shutil.copy2(wheel, files / wheel.name)
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        projects.setdefault(name, []).append(f'<a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a>')
    (directory / "simple").mkdir()
    links = "".join(f'<a href="{name}/">{name}</a>\n' for name in sorted(projects))
    (directory / "simple/index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    for name, anchors in projects.items():
        (directory / "simple" / name).mkdir()
        (directory / "simple" / name / "index.html").write_text(
            "<!DOCTYPE html><html><body>\n" + "\n".join(anchors) + "\n</body></html>\n")
    return directory


def errors(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": error: " in line]


@pytest.fixture(scope="module")
def dependencies(wheel_dirs) -> list[Path]:
    """typer, sh, filelock and theirs, as wheels built here for the system's python3."""
    return [w for w in wheel_dirs(PYTHON).glob("*.whl") if not w.name.startswith("l2tproute-")]


@pytest.fixture(scope="module")
def released(tmp_path_factory, dependencies) -> tuple[Path, str]:
    """The release step as docs/release.md says, its check offline from the same dependencies."""
    out = tmp_path_factory.mktemp("release") / "dist"
    wheels = tmp_path_factory.mktemp("dependency-wheels")
    for wheel in dependencies:
        shutil.copy2(wheel, wheels / wheel.name)
    done = subprocess.run([sys.executable, str(REPO / "tools/release.py"), "--out", str(out), "--wheels", str(wheels)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout


@pytest.fixture(scope="module")
def scripts(tmp_path_factory, released) -> Path:
    """What the second server serves: the released script, nothing else."""
    directory = tmp_path_factory.mktemp("scripts")
    shutil.copy2(released[0] / PROG, directory / PROG)
    return directory


@pytest.fixture(scope="module")
def index(tmp_path_factory, released, dependencies) -> Path:
    (wheel,) = released[0].glob("l2tproute-*.whl")
    return make_index(tmp_path_factory.mktemp("index"), [wheel, *dependencies])


@pytest.fixture(scope="module")
def staged(tmp_path_factory, index, scripts) -> tuple[Path, subprocess.CompletedProcess, str]:
    root = tmp_path_factory.mktemp("alone") / "root"
    log = root.parent / "index.log"
    result = panel_install(index, scripts, log, "--root", str(root), "--index-url", INDEX_URL)
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    return root, result, log.read_text()


# -- the release step ----------------------------------------------------------------

def test_the_release_writes_the_packages_and_the_script_with_their_version_and_hashes(released):
    out, said = released
    (wheel,) = out.glob("l2tproute-*.whl")
    (sdist,) = out.glob("l2tproute-*.tar.gz")
    assert (wheel.name, sdist.name) == (f"l2tproute-{VERSION}-py3-none-any.whl", f"l2tproute-{VERSION}.tar.gz")
    script = (out / PROG).read_text()
    hashes = " ".join(f"sha256:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in (wheel, sdist))
    assert f'\nRELEASE_VERSION="{VERSION}"\nRELEASE_HASHES="{hashes}"\n' in script
    # Only those two lines differ from the checkout's script.
    assert script.replace(f'"{VERSION}"', '""', 1).replace(f'"{hashes}"', '""', 1) == (REPO / PROG).read_text()
    assert stat.S_IMODE((out / PROG).stat().st_mode) == 0o755
    # The wheel carries every file the installer installs from bin/ and contrib/.
    names = set(zipfile.ZipFile(wheel).namelist())
    for _, source in FILES.values():
        assert f"l2tproute/files/{source}" in names, source
    lines = said.splitlines()
    assert "  the released script alone, from the wheel: Done: 20 changes. Route files were not touched." in lines
    assert "  the checkout's script, from the checkout: Done: 20 changes. Route files were not touched." in lines
    same = r"^  the same: \d+ paths \(28 outside the venv\), type, mode, owner and content$"
    assert re.search(same, said, re.M), said


def test_the_release_check_reports_every_path_that_differs(tmp_path):
    for side in ("wheel", "checkout"):
        (tmp_path / side / "etc").mkdir(parents=True)
        (tmp_path / side / "etc/unit").write_text("same\n")
        (tmp_path / side / "etc/mode").write_text("same\n")
    (tmp_path / "wheel/etc/mode").chmod(0o600)
    (tmp_path / "checkout/etc/unit").write_text("other\n")
    (tmp_path / "checkout/etc/only").write_text("\n")
    differences = release_tool.compare(release_tool.tree(tmp_path / "wheel"), release_tool.tree(tmp_path / "checkout"))
    assert [line.split(":")[0:2] for line in differences] == [
        ["differs", " etc/mode"], ["only from the checkout", " etc/only"], ["differs", " etc/unit"]]


# -- the panel's way: curl into a temporary file, bash, the package from the index ---------

def test_the_released_script_installs_its_package_from_the_index_and_says_so(staged):
    root, result, _ = staged
    lines = result.stdout.splitlines()
    assert lines[0] == f"Installing the released l2tproute {VERSION} into the staging root {root}"
    assert f"fetching l2tproute {VERSION} from {INDEX_URL} (hash checked) ..." in lines
    assert lines[-1] == "Done: 20 changes. Route files were not touched."


def test_every_file_is_in_place_with_its_content_mode_and_owner(staged):
    """What the checkout's install puts in place (test_installer.py), here from the package."""
    root = staged[0]
    for rel, (mode, source) in FILES.items():
        info = (root / rel).lstat()
        assert stat.S_ISREG(info.st_mode), rel
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (mode, 0, 0), rel
        assert (root / rel).read_bytes() == expected_content(source, REPO), rel
    store = root / STORE
    assert store.is_dir() and stat.S_IMODE(store.stat().st_mode) == 0o755 and list(store.iterdir()) == []


def test_the_venv_has_the_released_wheel_and_every_dependency_came_from_the_index(staged, released):
    root, _, served = staged
    (wheel,) = released[0].glob("l2tproute-*.whl")
    site = root / SITE_PACKAGES.lstrip("/")
    origin = json.loads((site / f"l2tproute-{VERSION}.dist-info/direct_url.json").read_text())
    assert re.fullmatch(rf"file:///tmp/l2tproute-install\.\w+/release/{re.escape(wheel.name)}", origin["url"]), origin
    with zipfile.ZipFile(wheel) as released_wheel:
        shipped = [name for name in released_wheel.namelist() if name.startswith("l2tproute/")]
        assert len(shipped) > 40
        for name in shipped:
            assert (site / name).read_bytes() == released_wheel.read(name), name
    imports = "import l2tproute.fronts.cli, l2tproute.fronts.entry, typer, sh, filelock; print(l2tproute.__version__)"
    result = subprocess.run([str(root / VENV / "bin/python3"), "-I", "-c", imports], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{VERSION}\n", ""), result
    fetched = set(re.findall(r'"GET /files/([^ ]+) HTTP', served))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")} - {"pip", "setuptools"}
    assert installed and {name.split("-")[0].lower() for name in fetched} == installed, (fetched, installed)


def test_a_second_run_changes_nothing_and_says_so(staged, index, scripts, tmp_path):
    root = staged[0]
    before = snapshot(root)
    result = panel_install(index, scripts, tmp_path / "log", "--root", str(root), "--index-url", INDEX_URL)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout.splitlines()[-1] == ("Nothing to do: l2tproute is already installed and up to date; "
                                              "nothing was changed.")
    assert snapshot(root) == before


def test_the_released_script_alone_uninstalls_everything(staged, index, scripts, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(staged[0]), str(root)], check=True)
    result = panel_install(index, scripts, tmp_path / "log", "--uninstall", "--root", str(root))
    assert (result.returncode, result.stderr) == (0, ""), result
    assert f"removed: {root / VENV}" in result.stdout.splitlines()
    assert [p for p in root.rglob("*") if not p.is_dir()] == []
    assert not (root / VENV).exists() and not (root / STORE).exists()


def test_a_tampered_wheel_is_refused_and_nothing_is_installed(released, dependencies, scripts, tmp_path):
    (wheel,) = released[0].glob("l2tproute-*.whl")
    tampered = tmp_path / "tampered" / wheel.name
    tampered.parent.mkdir()
    with zipfile.ZipFile(wheel) as original, zipfile.ZipFile(tampered, "w") as changed:
        for item in original.infolist():
            data = original.read(item)
            if item.filename == "l2tproute/files/bin/l2tp-routes-ip-up":
                data += b"echo changed on the way\n"
            changed.writestr(item, data)
    index = make_index(tmp_path / "index", [tampered, *dependencies])  # the index's own hash matches it
    root = tmp_path / "root"
    result = panel_install(index, scripts, tmp_path / "log", "--root", str(root), "--index-url", INDEX_URL)
    assert result.returncode == 1
    assert errors(result) == [f"{PROG}: error: the l2tproute {VERSION} wheel from {INDEX_URL} is not the one this "
                              "script was released with (its sha256 differs): refused; use the package released "
                              "with this script"], result.stderr
    assert not root.exists()


def test_a_package_of_another_version_is_refused_with_one_line(released, dependencies, scripts, tmp_path):
    source = wheelhouse.copy_package_source(REPO, tmp_path / "source")
    init = source / "l2tproute/__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{VERSION}"', '__version__ = "99.0"'))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w",
                            str(tmp_path / "other")], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built
    (other,) = (tmp_path / "other").glob("l2tproute-99.0-*.whl")
    index = make_index(tmp_path / "index", [other, *dependencies])
    root = tmp_path / "root"
    result = panel_install(index, scripts, tmp_path / "log", "--root", str(root), "--index-url", INDEX_URL)
    assert result.returncode == 1
    assert errors(result) == [f"{PROG}: error: {INDEX_URL} has no l2tproute {VERSION} wheel (it has: 99.0): this "
                              "script installs only the version it was released with; use the script released with "
                              "your version"], result.stderr
    assert not root.exists()


def test_the_checkouts_script_alone_is_refused_with_one_line(tmp_path):
    """Not released: no version to fetch. The one line says what to run instead."""
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy2(REPO / PROG, alone / PROG)
    root = tmp_path / "root"
    result = subprocess.run(["bash", str(alone / PROG), "--root", str(root)], capture_output=True, text=True,
                            env=ENV, cwd="/", timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"{PROG}: error: {alone} is not an l2tproute checkout and this copy of the script is not "
                             "a released one: run the released script (docs/release.md), or the one in a complete "
                             "checkout\n")
    assert not root.exists()


@pytest.mark.parametrize("args, message", [
    (["--index-url"], "--index-url needs a URL"),
    (["--index-url="], "--index-url needs a URL"),
    (["--index-url", "ftp://mirror/simple"], "--index-url 'ftp://mirror/simple': expected an http, https or file URL"),
    (["--index-url", INDEX_URL, "--wheels", "/tmp"], "--wheels and --index-url do not go together"),
])
def test_a_wrong_index_argument_is_one_line_and_exit_2(args, message, tmp_path):
    root = tmp_path / "root"
    result = subprocess.run(["bash", str(REPO / PROG), "--root", str(root), *args], capture_output=True, text=True,
                            env=ENV, cwd="/", timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"{PROG}: error: {message}") and result.stderr.count("\n") == 1, result.stderr
    assert not root.exists()


def test_a_venv_with_another_build_of_the_same_version_gets_the_released_package(staged, index, scripts, tmp_path):
    """As after an install from a checkout: pip would keep a package of the same version."""
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(staged[0]), str(root)], check=True)
    module = root / SITE_PACKAGES.lstrip("/") / "l2tproute/core/constants.py"
    released_text = module.read_text()
    module.write_text(released_text + "# built from other sources\n")
    (root / VENV / ".l2tproute-source").write_text("another source\n")
    result = panel_install(index, scripts, tmp_path / "log", "--root", str(root), "--index-url", INDEX_URL)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert f"installed: l2tproute into {root / VENV}" in result.stdout.splitlines()
    assert module.read_text() == released_text


# -- live, with the demo: the panel's installer on a server ------------------------------

LIVE_STEPS = r"""
set -u
OUT=$1
n=0
run() {
    bash "$OUT/panel.sh" "$OUT/index" "$OUT/scripts" "$OUT/index.log" "$@" >"$OUT/$n.out" 2>"$OUT/$n.err"
    echo $? >"$OUT/$n.rc"; n=$((n + 1))
}
run --demo --index-url %(url)s
run --index-url %(url)s
run --uninstall
for f in /opt/l2tproute /usr/local/sbin/l2tp-routectl /etc/ppp/ip-up.d/l2tp-routes /etc/cron.d/l2tproute; do
    if [ -e "$f" ]; then echo "$f present"; else echo "$f absent"; fi
done >"$OUT/after"
"""


def test_live_the_panels_way_installs_shows_the_demo_changes_nothing_twice_and_uninstalls(index, scripts, netns,
                                                                                           tmp_path):
    """Live (no --root), as on a server without systemd: in the sandbox of test_installer.py
    (an overlay of this machine's /, a scratch /run, a scratch network namespace)."""
    from test_installer import LIVE_SANDBOX

    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(index, out / "index")
    shutil.copytree(scripts, out / "scripts")
    (out / "panel.sh").write_text(PANEL.replace("$SCRIPT_URL", SCRIPT_URL))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    host_venv = sorted(str(p) for p in Path("/opt/l2tproute").rglob("*")) if Path("/opt/l2tproute").exists() else []
    command = ["ip", "netns", "exec", netns.name, "unshare", "--mount", "--propagation", "private", "sh", "-c",
               LIVE_SANDBOX, "sandbox", str(sandbox), str(out), LIVE_STEPS % {"url": INDEX_URL}]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done
    runs = [((out / f"{n}.rc").read_text().strip(), (out / f"{n}.out").read_text(), (out / f"{n}.err").read_text())
            for n in range(3)]
    for rc, stdout, stderr in runs:
        assert (rc, stderr) == ("0", ""), (stdout[-3000:], stderr)

    first = runs[0][1]
    assert first.startswith(f"Installing the released l2tproute {VERSION}\n"), first[:300]
    assert "installed: l2tproute into /opt/l2tproute" in first.splitlines()
    assert "Routes for peer 10.255.10.2:\n192.168.20.0/24 via 10.255.10.2\n10.20.0.0/16 via 10.255.10.2\n" in first
    assert "2 unchanged, 0 blocked, 0 failed." in first
    down, up = first.split("/etc/ppp/ip-down.d/l2tp-routes", 1)[1].split("/etc/ppp/ip-up.d/l2tp-routes", 1)
    assert "192.168.30.0/24" not in down.split("route show proto 157", 1)[1]  # ip-down took it out
    assert "192.168.30.0/24 via 10.255.10.2 dev ppp0" in up  # ip-up put it back through the worker
    assert first.rstrip().endswith("== Demo done: namespace and scratch store removed.")

    second = runs[1][1].splitlines()
    assert ("Nothing to do: l2tproute is already installed and up to date; nothing was changed."
            in second), runs[1][1]
    assert not [line for line in second if line.startswith(("installed", "updated", "created", "applied"))], second
    assert "removed: /opt/l2tproute" in runs[2][1].splitlines()
    assert (out / "after").read_text().split("\n")[0] == "/opt/l2tproute absent"
    # All of it happened in the sandbox: this machine's venv is as it was.
    assert (sorted(str(p) for p in Path("/opt/l2tproute").rglob("*")) if Path("/opt/l2tproute").exists()
            else []) == host_venv
