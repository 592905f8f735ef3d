"""The fuzz targets in tests/fuzz/ run for a bounded time and find nothing.

Each target's own properties are in its docstring. The argv target runs inside a
scratch namespace with a scratch store, so commands that pass validation touch
nothing real. Seconds per target: L2TP_TEST_FUZZ_SECONDS (default 10); the figures
(runs, coverage) are printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

SECONDS = int(os.environ.get("L2TP_TEST_FUZZ_SECONDS", "10"))
FUZZ = REPO / "tests" / "fuzz"


def seeds(directory) -> None:
    """Start the file parser from what the hostile corpus and the format look like."""
    cases = json.loads((REPO / "tests" / "data" / "hostile_cases.json").read_text())["cases"]
    samples = [bytes.fromhex(spec["hex"]) for case in cases for spec in case.get("files", {}).values() if "hex" in spec]
    samples += [b"10.9.0.0/24 via 10.255.10.2\n", b"10.9.0.0/24 via 10.255.10.2 dev ppp0 metric 5 table 100\n",
                b"2001:db8:100::/48 via 10.255.10.2\r\n", b"# comment\n\n  10.9.0.0/24  via 10.255.10.2 # x\n"]
    for index, data in enumerate(samples):
        (directory / f"seed-{index}").write_bytes(data)


def fuzz(argv, env=None, timeout=None) -> str:
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.fail("atheris is not installed: python3 -m pip install atheris (the CI script does)")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout or SECONDS * 3 + 60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    done = re.search(r"Done (\d+) runs in (\d+) second", output)
    assert done and int(done.group(1)) > 0, output[-2000:]
    cov = re.findall(r"cov: (\d+)", output)
    return f"{done.group(1)} runs in {done.group(2)} s, coverage {cov[-1] if cov else '?'} edges"


def test_fuzzing_the_route_file_parser_finds_nothing(tmp_path):
    corpus, seed_dir = tmp_path / "corpus", tmp_path / "seeds"
    corpus.mkdir()
    seed_dir.mkdir()
    seeds(seed_dir)
    figures = fuzz([sys.executable, str(FUZZ / "fuzz_routefile.py"), f"-max_total_time={SECONDS}", "-max_len=4096",
                    "-rss_limit_mb=1024", str(corpus), str(seed_dir)])
    print(f"\nfuzz routefile: {figures}")


def test_fuzzing_the_command_line_finds_nothing(tmp_path, netns):
    store = tmp_path / "routes.d"
    store.mkdir()
    netns.add_ppp("ppp0", "10.255.10.2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUDO_")}
    env["L2TP_ROUTES_DIR"] = str(store)
    figures = fuzz(["ip", "netns", "exec", netns.name, sys.executable, str(FUZZ / "fuzz_argv.py"),
                    f"-max_total_time={SECONDS}", "-max_len=256", "-rss_limit_mb=1024"], env=env)
    print(f"\nfuzz argv: {figures}")
