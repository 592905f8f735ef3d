#!/usr/bin/env python3
"""Release l2tproute from this checkout (docs/release.md).

    python3 tools/release.py [--out DIR] [--wheels DIR]

1. builds the sdist and, from it, the wheel (python -m build, in a scratch venv);
2. writes the released installer, DIR/install-l2tp-per-user-routing.sh: the checkout's
   script with the version and the sha256 of the wheel and sdist filled in, so that, run
   alone, it installs exactly this package;
3. checks that the wheel alone installs the whole system: the released script, copied
   alone into an empty directory, stages an install (--root) from the wheel; the checkout's
   script stages one from the checkout; both are compared file by file (type, mode, owner,
   content).

--out DIR     where the release goes (default: dist/ in this checkout)
--wheels DIR  the dependencies' wheels for the check (offline); by default pip downloads them
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
SCRIPT = "install-l2tp-per-user-routing.sh"
#: What the package is built from; bin/, lib/ and contrib/ ship inside it (pyproject.toml).
SOURCES = ("pyproject.toml", "README.md", "l2tproute", "bin", "lib", "contrib")
SYSTEM_PYTHON = "/usr/bin/python3"
VENV = "opt/l2tproute"
#: Differ by design between an install from the wheel file and one by name from --wheels:
#: the venv's record of its source (the wheel's hash, or the checkout's files), and pip's
#: record of where the package came from (direct_url.json, and RECORD, which lists it).
NOT_COMPARED = re.compile(rf"{VENV}/\.l2tproute-source|"
                          rf"{VENV}/lib/python[^/]+/site-packages/l2tproute-[^/]+\.dist-info/(direct_url\.json|RECORD)")


class ReleaseError(Exception):
    pass


def run(argv: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ReleaseError(f"{what} failed (exit {result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def version() -> str:
    found = re.search(r'^__version__ = "(.+)"$', (CHECKOUT / "l2tproute/__init__.py").read_text(), re.M)
    if not found:
        raise ReleaseError("l2tproute/__init__.py names no __version__")
    return found[1]


def build(scratch: Path) -> tuple[Path, Path]:
    """The sdist, and the wheel built from it (so the sdist is complete), by `python -m build`."""
    source = scratch / "source"
    source.mkdir()
    for name in SOURCES:
        if (CHECKOUT / name).is_dir():
            shutil.copytree(CHECKOUT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(CHECKOUT / name, source / name)
    venv = scratch / "build-venv"
    run([sys.executable, "-m", "venv", str(venv)], "creating a venv for build")
    run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "build"],
        "pip install build")
    out = scratch / "dist"
    run([str(venv / "bin/python"), "-m", "build", "--outdir", str(out), str(source)], "python -m build")
    (wheel,) = out.glob("l2tproute-*.whl")
    (sdist,) = out.glob("l2tproute-*.tar.gz")
    return sdist, wheel


def released_script(release: str, hashes: list[str]) -> str:
    text = (CHECKOUT / SCRIPT).read_text()
    for name, value in (("RELEASE_VERSION", release), ("RELEASE_HASHES", " ".join(hashes))):
        line = f'{name}=""\n'
        if text.count(line) != 1:
            raise ReleaseError(f"{SCRIPT} has not exactly one line {line.strip()}")
        text = text.replace(line, f'{name}="{value}"\n')
    return text


def dependency_wheels(wheel: Path, wheels: Path, given: Path | None, scratch: Path) -> None:
    """The package's wheel and every dependency's, for the system's python3 (the venv's)."""
    wheels.mkdir()
    shutil.copy2(wheel, wheels / wheel.name)
    if given is not None:
        for found in given.glob("*.whl"):
            if not found.name.startswith("l2tproute-"):
                shutil.copy2(found, wheels / found.name)
        return
    target = run([SYSTEM_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], "python3 --version")
    run([str(scratch / "build-venv/bin/python"), "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "--only-binary=:all:", "--python-version", target.stdout.strip(), "-d", str(wheels), str(wheel)],
        "pip download of the dependencies")


def stage(script: Path, root: Path, wheels: Path) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
    done = run(["bash", str(script), "--root", str(root), "--wheels", str(wheels)], f"{script} --root {root}",
               env=env, cwd="/", timeout=900)
    return done.stdout.splitlines()[-1]


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root: type, mode, owner and content (a .pyc's code, after its header of
    its source's mtime; a link's target)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            key = str(path.relative_to(root))
            if NOT_COMPARED.fullmatch(key):
                continue
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                data = path.read_bytes()
                content = sha256_bytes(data[16:] if name.endswith(".pyc") else data)
            else:
                content = ""
            found[key] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, content)
    return found


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compare(from_wheel: dict[str, tuple], from_checkout: dict[str, tuple]) -> list[str]:
    differences = []
    for key in sorted(set(from_wheel) | set(from_checkout)):
        if key not in from_wheel:
            differences.append(f"only from the checkout: {key}")
        elif key not in from_checkout:
            differences.append(f"only from the wheel: {key}")
        elif from_wheel[key] != from_checkout[key]:
            differences.append(f"differs: {key}: {from_wheel[key][:4]} vs {from_checkout[key][:4]}")
    return differences


def release(out: Path, given_wheels: Path | None) -> int:
    release_version = version()
    scratch = Path(tempfile.mkdtemp(prefix="l2tproute-release."))
    try:
        print(f"building l2tproute {release_version} (sdist, then the wheel from it) ...", flush=True)
        sdist, wheel = build(scratch)
        hashes = [f"sha256:{sha256(wheel)}", f"sha256:{sha256(sdist)}"]
        out.mkdir(parents=True, exist_ok=True)
        for old in [*out.glob("l2tproute-*"), out / SCRIPT]:
            old.unlink(missing_ok=True) if not old.is_dir() else shutil.rmtree(old)
        for built in (sdist, wheel):
            shutil.copy2(built, out / built.name)
        script = out / SCRIPT
        script.write_text(released_script(release_version, hashes))
        script.chmod(0o755)
        for path, digest in ((out / sdist.name, hashes[1]), (out / wheel.name, hashes[0]), (script, None)):
            print(f"wrote {path}" + (f" ({digest})" if digest else f" (l2tproute {release_version}, both hashes)"))

        print("checking that the wheel alone installs the whole system ...", flush=True)
        wheels = scratch / "wheels"
        dependency_wheels(wheel, wheels, given_wheels, scratch)
        alone = scratch / "alone"
        alone.mkdir()
        shutil.copy2(script, alone / SCRIPT)
        # The same root path for both: the venv's own scripts name it.
        root = scratch / "root"
        last = stage(alone / SCRIPT, root, wheels)
        print(f"  the released script alone, from the wheel: {last}")
        root.rename(scratch / "root-wheel")
        last = stage(CHECKOUT / SCRIPT, root, wheels)
        print(f"  the checkout's script, from the checkout: {last}")
        from_wheel, from_checkout = tree(scratch / "root-wheel"), tree(root)
        differences = compare(from_wheel, from_checkout)
        if differences:
            print(*differences, sep="\n", file=sys.stderr)
            raise ReleaseError(f"the install from the wheel differs from the one from the checkout "
                               f"({len(differences)} paths)")
        outside = sum(1 for key in from_wheel if not key.startswith(VENV + "/"))
        print(f"  the same: {len(from_wheel)} paths ({outside} outside the venv), type, mode, owner and content")
        print(f"released: l2tproute {release_version} in {out}; an admin (or the panel's installer) runs:")
        print(f"  curl -fsSL RELEASE_URL/{SCRIPT} -o /tmp/l2tproute-install.sh && sudo bash /tmp/l2tproute-install.sh")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="tools/release.py", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=CHECKOUT / "dist", help="where the release goes (default: dist/)")
    parser.add_argument("--wheels", type=Path, help="the dependencies' wheels for the check (offline)")
    args = parser.parse_args()
    if args.wheels is not None and not args.wheels.is_dir():
        print(f"tools/release.py: error: --wheels {args.wheels} is not a directory", file=sys.stderr)
        return 2
    try:
        return release(args.out.resolve(), args.wheels.resolve() if args.wheels else None)
    except ReleaseError as error:
        print(f"tools/release.py: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
