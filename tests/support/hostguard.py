"""What this machine looks like, for the session guard of tests/conftest.py: every kernel
object and path the tool or its installer may change, read into normalized lines so that two
reads of an unchanged machine compare equal.

What the kernel (or the kernel's helpers) changes by itself is left out, and only that:
- a route's `expires` and `pref`, routes learned from router advertisements (`proto ra`),
  and the route cache (`ip route show cache` entries, `cache` flags);
- a link's operational state, carrier flags (LOWER_UP, RUNNING, NO-CARRIER, DORMANT),
  statistics and queue details;
- an address's lifetimes, and the addresses the kernel makes and rotates (IPv6 privacy
  `temporary` ones, and `dynamic` ones from SLAAC or DHCP, whose lifetime is not forever);
- `__pycache__` under the installed tree, which Python itself writes when the installed
  command first runs as root (the bytecode of unchanged sources).
Network namespaces named `l2t-PID-...` or `l2u-PID-...` are the suite's own scratch namespaces
(`l2tb-PID-...` bench/'s): a run's own are checked (and removed) at its end, those of a run
that is gone are removed at the next start; other live runs' are not this machine's state.
Unreadable files (the guard runs unprivileged for tests/unit) are recorded by their metadata.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import stat
import subprocess
from pathlib import Path

#: Paths the tool, its hooks and its installer write: each is recorded as a tree.
PATHS = (
    "/run/l2tproute",
    "/etc/l2tp-manager",
    "/var/cache/l2tproute",
    "/etc/ppp/chap-secrets",
    "/etc/ppp/ip-up.d/l2tp-routes",
    "/etc/ppp/ip-down.d/l2tp-routes",
    "/usr/local/sbin/l2tp-routectl",
    "/opt/l2tproute",
    "/etc/sudoers.d/l2tp-routectl",
    "/etc/sudoers.d/l2tproute-openvpn",
    "/etc/sysctl.d/99-l2tp-routing.conf",
    "/etc/iproute2/rt_protos.d/l2tproute.conf",
    "/etc/cron.d/l2tproute",
    "/etc/tmpfiles.d/l2tproute.conf",
    "/etc/systemd/system/l2tproute-worker.path",
    "/etc/systemd/system/l2tproute-worker.service",
    "/etc/systemd/system/route-l2tp-apply-all.service",
    "/etc/systemd/system/route-l2tp-apply-all.timer",
    "/etc/resolv.conf",
)
#: The sysctls contrib/sysctl sets and the hooks set per link (rp_filter of every link).
SYSCTLS = ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/*/rp_filter")

#: Scratch namespaces: l2t-<pid of the pytest run>-<what> (l2u- for BGP upstreams, l2tb- bench/'s).
SCRATCH_NETNS = re.compile(r"^(l2t|l2u|l2tb)-(\d+)-")

_ROUTE_DROP = {"expires", "pref", "cache"}
_LINK_FLAGS_DROP = {"LOWER_UP", "RUNNING", "NO-CARRIER", "DORMANT", "M-DOWN"}


def _ip_json(*args: str) -> list:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout.strip()
    return json.loads(out) if out else []


def routes() -> list[str]:
    found = []
    for family in ("-4", "-6"):
        for row in _ip_json(family, "route", "show", "table", "all"):
            if row.get("protocol") == "ra" or "cache" in row.get("flags", []):
                continue
            kept = {k: v for k, v in row.items() if k not in _ROUTE_DROP}
            found.append(f"{family} {json.dumps(kept, sort_keys=True)}")
    return sorted(found)


def rules() -> list[str]:
    return sorted(f"{family} {json.dumps(row, sort_keys=True)}" for family in ("-4", "-6")
                  for row in _ip_json(family, "rule", "show"))


def links() -> list[str]:
    found = []
    for row in _ip_json("link", "show"):
        flags = sorted(set(row.get("flags", [])) - _LINK_FLAGS_DROP)
        kept = {k: row.get(k) for k in ("ifname", "link_type", "mtu", "master", "address", "link")}
        found.append(json.dumps({**kept, "flags": flags}, sort_keys=True))
    return sorted(found)


def addresses() -> list[str]:
    found = []
    for link in _ip_json("addr", "show"):
        for addr in link.get("addr_info", []):
            if addr.get("temporary") or addr.get("dynamic") or addr.get("valid_life_time", 0) != 0xFFFFFFFF:
                continue
            kept = {k: addr.get(k) for k in ("family", "local", "prefixlen", "address", "scope", "label")}
            found.append(f"{link['ifname']} {json.dumps(kept, sort_keys=True)}")
    return sorted(found)


def namespaces() -> list[str]:
    """This machine's own namespaces: the suite's scratch ones (l2t-PID-) are left out."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(name for name in names if not SCRATCH_NETNS.match(name))


def scratch_namespaces(pid: int) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith((f"l2t-{pid}-", f"l2u-{pid}-")))


def orphaned_namespaces() -> list[str]:
    """Scratch namespaces of runs that are gone (killed with SIGKILL, say)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        match = SCRATCH_NETNS.match(line)
        if match and match.group(1) != "l2tb" and not os.path.exists(f"/proc/{match.group(2)}"):
            found.append(line.split()[0])
    return sorted(found)


def sysctls() -> list[str]:
    found = []
    for pattern in SYSCTLS:
        for path in sorted(glob.glob(pattern)):
            try:
                found.append(f"{path} = {Path(path).read_text().strip()}")
            except OSError as exc:
                found.append(f"{path} unreadable ({exc.strerror})")
    return found


def _entry(path: Path) -> str:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        detail = "-> " + os.readlink(path)
    elif stat.S_ISREG(info.st_mode):
        try:
            detail = "sha256 " + hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            detail = f"unreadable, {info.st_size} bytes, mtime {info.st_mtime_ns}"
    else:
        detail = ""
    return f"{path} {stat.filemode(info.st_mode)} {info.st_uid}:{info.st_gid} {detail}".rstrip()


def tree(top: str) -> list[str]:
    """Every entry under top, one line each: type and mode, owner, content digest or link target."""
    root = Path(top)
    if not root.exists() and not root.is_symlink():
        return [f"{top} missing"]
    found = [_entry(root)]
    if root.is_dir() and not root.is_symlink():
        unreadable = found.append
        for parent, dirs, names in os.walk(root, onerror=lambda exc: unreadable(f"{exc.filename} unreadable")):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            found.extend(_entry(Path(parent, name)) for name in [*dirs, *sorted(names)])
    return found


def files() -> list[str]:
    return [line for top in PATHS for line in tree(top)]


#: What the guard reads, by the name its report uses.
READERS = {"routes (both families, every table)": routes, "policy rules (both families)": rules,
           "links": links, "addresses": addresses, "network namespaces": namespaces, "sysctls": sysctls,
           "files of the tool, its hooks and its installer": files}


def snapshot() -> dict:
    return {what: read() for what, read in READERS.items()}
