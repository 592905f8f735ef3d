"""Routing table names, as iproute2 resolves them (rt_tables and rt_tables.d)."""

from __future__ import annotations

import glob
import os

from l2tproute.core.errors import InputError
from l2tproute.core.model import MAIN, is_main, normal_table
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
