"""The shipped units on systemd 237 (Ubuntu 18.04): every directive known there or harmless when ignored.

systemd ignores a directive it does not know with a warning, so on an older systemd the sandbox is
only what that version understands. tests/data/systemd-v237-directives.txt and
tests/data/systemd-v237-syscall-groups.txt are systemd v237's own tables (how they were derived is
in their headers); the units are read here as 237 reads them.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import REPO
from support.systemd237 import directives_237, entries, filter_on_237, groups_237

UNITS = sorted((REPO / "contrib/systemd").glob("*.*"))

#: Directives newer than 237 in the units, each with why ignoring it there is harmless (what already
#: stands in for it on 237), or what is lost.
HARMLESS_ON_237 = {
    "Service.PrivateMounts": "239. ProtectSystem=, ReadWritePaths= and PrivateTmp= already give the service a mount "
                             "namespace of its own on 237, and it mounts nothing.",
    "Service.ProtectClock": "247. CapabilityBoundingSet=CAP_NET_ADMIN drops CAP_SYS_TIME, so the clock cannot be set, "
                            "and PrivateDevices= hides /dev/rtc.",
    "Service.ProtectHostname": "242. CapabilityBoundingSet=CAP_NET_ADMIN drops CAP_SYS_ADMIN, which sethostname and "
                               "setdomainname need.",
    "Service.ProtectKernelLogs": "244. PrivateDevices= hides /dev/kmsg; /proc/kmsg and syslog(2) need CAP_SYSLOG, "
                                "which the bounding set drops, and 237's reading of SystemCallFilter= has no syslog.",
    "Service.ProtectProc": "247. No 237 equivalent: other processes stay listed in /proc, but without "
                           "CAP_SYS_PTRACE their memory and descriptors are out of reach.",
    "Service.ProcSubset": "247. No 237 equivalent: /proc keeps its non-process files, read-only under "
                          "ProtectKernelTunables=.",
    "Service.RestrictSUIDSGID": "242 (Ubuntu's 237-3ubuntu10.40 sources have it backported). Without it the "
                                "service could make a set-uid file in the two places it may write (the store, "
                                "root's, and /run/l2tproute); NoNewPrivileges= keeps such bits inert for itself.",
}


def used() -> dict[str, list[str]]:
    """Section.Directive: the units that use it."""
    seen: dict[str, list[str]] = {}
    for path in UNITS:
        for section, key, _ in entries(path):
            seen.setdefault(f"{section}.{key}", []).append(path.name)
    return seen


def test_the_v237_tables_are_systemds_and_complete_enough_to_judge():
    known = directives_237()
    # What 237 knows and its successors added: the table is 237's, neither older nor newer.
    assert {"Service.LogExtraFields", "Service.IPAddressDeny", "Service.LockPersonality",
            "Path.DirectoryNotEmpty", "Timer.AccuracySec", "Install.WantedBy"} <= known
    assert not {"Service.PrivateMounts", "Service.LogRateLimitIntervalSec", "Service.ProtectHostname"} & known
    assert len(known) > 800
    assert "@system-service" not in groups_237() and len(groups_237()) == 26


def test_every_directive_in_the_units_is_known_to_systemd_237_or_harmless_when_ignored():
    unknown = {name: units for name, units in used().items()
               if name not in directives_237() and name not in HARMLESS_ON_237}
    assert not unknown, unknown


def test_the_harmless_list_names_only_what_237_lacks_and_the_units_use():
    assert not set(HARMLESS_ON_237) & directives_237()
    assert set(HARMLESS_ON_237) <= set(used()), set(HARMLESS_ON_237) - set(used())
    assert all(re.match(r"\d{3}[. ]", reason) for reason in HARMLESS_ON_237.values())


def modern_group(name: str) -> set[str]:
    listing = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager", name], capture_output=True,
                             text=True, check=True).stdout.splitlines()[1:]
    found = set()
    for line in (line.strip() for line in listing):
        if line.startswith("@"):
            found |= modern_group(line)
        elif line and not line.startswith("#"):
            found.add(line)
    return found


SERVICES = [path for path in UNITS if path.suffix == ".service"]


@pytest.mark.parametrize("path", SERVICES, ids=[path.name for path in SERVICES])
def test_on_237_the_system_call_filter_lets_a_python_service_run(path):
    mode, allowed = filter_on_237(path)
    # What any Python and ip need (tests/system/test_units.py traces a real apply against this reading).
    needed = {"read", "write", "openat", "close", "mmap", "mprotect", "brk", "fstat", "newfstatat", "lseek",
              "ioctl", "getrandom", "socket", "sendmsg", "recvmsg", "clone", "execve", "wait4", "pipe2",
              "rt_sigaction", "futex", "getdents64", "uname", "sysinfo", "fcntl", "flock", "rename", "unlink"}
    assert mode == "allow" and needed <= allowed, sorted(needed - allowed)
    assert "syslog" not in allowed and "mount" not in allowed and "ptrace" not in allowed


@pytest.mark.parametrize("path", SERVICES, ids=[path.name for path in SERVICES])
def test_the_lines_for_237_allow_nothing_that_system_service_does_not_on_this_systemd(path):
    # Newer systemd reads @system-service and the 237 lines alike: they may add nothing to it.
    lines = [value for _, key, value in entries(path) if key == "SystemCallFilter" and not value.startswith("~")]
    assert lines[0] == "@system-service", lines
    extra = set().union(*(modern_group(word) if word.startswith("@") else {word}
                          for line in lines[1:] for word in line.split()))
    assert extra and extra <= modern_group("@system-service"), sorted(extra - modern_group("@system-service"))
