"""systemd v237's own tables (tests/data/systemd-v237-*.txt) and a unit file read as 237 reads it."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"


def directives_237() -> set[str]:
    return {line for line in (DATA / "systemd-v237-directives.txt").read_text().splitlines()
            if line and not line.startswith("#")}


def groups_237() -> dict[str, list[str]]:
    groups = {}
    for line in (DATA / "systemd-v237-syscall-groups.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, members = line.partition(":")
            groups[name] = members.split()
    return groups


def entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, directive, value) for each assignment, in order, as systemd reads a unit file."""
    found, section = [], None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def filter_on_237(path: Path) -> tuple[str, set[str]]:
    """('allow' or 'deny', the syscalls) as systemd 237 builds a unit's SystemCallFilter=: the first
    assignment sets the mode (an allow list starts from @default), later ones add to it or, with ~,
    take away; a group 237 does not know is ignored with a warning."""
    groups = groups_237()

    def expand(name: str) -> set[str]:
        if not name.startswith("@"):
            return {name}
        return set().union(*(expand(member) for member in groups.get(name, [])))

    mode, names = None, set()
    for _, key, value in entries(path):
        if key != "SystemCallFilter":
            continue
        invert = value.startswith("~")
        words = set().union(*(expand(word) for word in value.lstrip("~").split()))
        if mode is None:
            mode = "deny" if invert else "allow"
            names = set() if invert else expand("@default")
        adds = invert == (mode == "deny")
        names = names | words if adds else names - words
    return mode, names
