"""Routing table and protocol names, as iproute2 resolves them (rt_tables, rt_protos and their .d folders)."""

from __future__ import annotations

import glob
import os

from l2tproute.core.errors import InputError
from l2tproute.core.maintable import MAIN, is_main, normal_table
from l2tproute.core.text import show

_SEARCH = ("/usr/share/iproute2", "/usr/lib/iproute2", "/etc/iproute2")
_BUILTIN = {"main": "main", "local": "255", "default": "253", "unspec": "0"}
def _read_table_file(path: str, names: dict[str, str]) -> None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                words = line.split("#", 1)[0].split()
                if len(words) >= 2 and words[0].isascii() and words[0].isdigit():
                    names[words[1]] = str(int(words[0]))
    except OSError:
        pass


def table_names(root: str = "/") -> dict[str, str]:
    names: dict[str, str] = {}
    for base in _SEARCH:
        directory = os.path.join(root, base.lstrip("/"))
        _read_table_file(os.path.join(directory, "rt_tables"), names)
        for path in sorted(glob.glob(os.path.join(directory, "rt_tables.d", "*.conf"))):
            _read_table_file(path, names)
    names.update({k: v for k, v in _BUILTIN.items() if k not in names or k == "main"})
    names["main"] = "main"
    return names


def table_id(table: str | None, names: dict[str, str] | None = None) -> str:
    """The kernel's id for a table as written in a route file: "main" or a number."""
    if is_main(table):
        return MAIN
    if table.isdigit():
        return table
    resolved = (names if names is not None else table_names()).get(table)
    if resolved is None:
        raise InputError(f"unknown routing table {show(table)}: add it to /etc/iproute2/rt_tables.d/ or use its number")
    return normal_table(resolved)


#: The protocol names `ip` knows without a file (its lib/rt_names.c up to 5.2, the last without -N).
_BUILTIN_PROTOCOLS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
                      10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
                      42: "babel", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip", 192: "eigrp"}
#: Where an `ip` that has no -N reads its names (its CONFDIR: nothing else before 5.3).
PROTOCOL_DIR = "/etc/iproute2"


def _read_protocol_file(path: str, names: dict[int, str]) -> None:
    """One rt_protos file into number -> name, as ip reads it: `NUMBER NAME` (decimal or 0x hex), # comments;
    ip stops at the first line it cannot read, and so does this."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                words = line.split()
                if not words or words[0].startswith("#"):
                    continue
                try:
                    number = int(words[0], 16) if words[0][:2].lower() == "0x" else int(words[0], 10)
                except ValueError:
                    return
                if len(words) < 2:
                    return
                if 0 <= number <= 255:
                    names[number] = words[1]
    except OSError:
        pass


def protocol_numbers(root: str = "/") -> dict[str, str]:
    """Name -> number of every routing protocol an `ip` without -N prints by name: its own names, then
    rt_protos, then rt_protos.d/*.conf, each overriding a number's name. A name two numbers share is left
    out: it cannot say which protocol a route has (a reader keeps the name, which matches no number)."""
    by_number = dict(_BUILTIN_PROTOCOLS)
    directory = os.path.join(root, PROTOCOL_DIR.lstrip("/"))
    _read_protocol_file(os.path.join(directory, "rt_protos"), by_number)
    for path in sorted(glob.glob(os.path.join(directory, "rt_protos.d", "*.conf"))):
        _read_protocol_file(path, by_number)
    numbers: dict[str, str] = {}
    shared = set()
    for number, name in by_number.items():
        if name in numbers:
            shared.add(name)
        numbers[name] = str(number)
    return {name: number for name, number in numbers.items() if name not in shared}
