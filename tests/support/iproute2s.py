"""The older `ip` programs the kernel tests also run against: iproute2 4.15.0 (Ubuntu 18.04) and
5.5.0 (Ubuntu 20.04), each built by hand from its upstream tag once per machine, kept like the
systemd root filesystem in /var/cache/l2tproute-tests (never in the repository).

A test marked `iproute2_versions` runs once per entry of IP_VERSIONS; the `ip_binary` fixture
points the tool at that `ip` through L2TP_IP_BINARY (the tests' own `ip` calls stay the
distribution's). A missing or different program fails the test with one line, never a skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from l2tproute.core import constants as C

CACHE = Path("/var/cache/l2tproute-tests")
DISTRO = "distro"
#: Version -> what its `ip -V` prints (the snapshot date of the tag).
BUILT = {"4.15.0": "iproute2-ss180129", "5.5.0": "iproute2-ss200127"}
IP_VERSIONS = (DISTRO, *BUILT)


def program(version: str) -> Path:
    return CACHE / f"iproute2-{version}" / "ip"


def problem(version: str) -> str | None:
    """Why the cached `ip` of that version cannot be used, in one line; None when it can."""
    path = program(version)
    if not (path.is_file() and os.access(path, os.X_OK)):
        return f"{path} is missing: build ip of iproute2 {version} from its upstream tag v{version} into it"
    try:
        said = subprocess.run([str(path), "-V"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{path} cannot be run ({exc}): rebuild ip of iproute2 {version} there"
    if BUILT[version] not in said:
        return f"{path} says {said or 'nothing'} to -V, not {BUILT[version]}: rebuild ip of iproute2 {version} there"
    return None


def ip_env() -> dict:
    """L2TP_IP_BINARY as the test set it, for a process started with a cleared environment (hooks, worker)."""
    return {C.IP_BINARY_ENV: os.environ[C.IP_BINARY_ENV]} if C.IP_BINARY_ENV in os.environ else {}
