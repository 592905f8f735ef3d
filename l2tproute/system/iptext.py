"""Routes as an `ip` without -N prints them in text (iproute2 before 5.3; before 4.17 `ip -json
route` prints text too), read into the rows `ip -json -N` gives, so that one reader
(l2tproute.core.kernel) turns both into typed values.

A route is one line of `KEYWORD VALUE` pairs after an optional type and the destination; a line
that starts with white space continues the route above it (a `nexthop` of a multipath route, the
`cache` of `ip route get`). Names become numbers as `ip -N` would print them: the route type and
scope by iproute2's own tables, the protocol and the table by the files `ip` read (core.tables);
a name that resolves to no single number is kept as it is, so it equals no number of ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: rtnetlink.h RTN_*, as `ip` names them in text and `ip -N` numbers them.
ROUTE_TYPES = {"unicast": "1", "local": "2", "broadcast": "3", "anycast": "4", "multicast": "5",
               "blackhole": "6", "unreachable": "7", "prohibit": "8", "throw": "9", "nat": "10", "xresolve": "11"}
#: rtnetlink.h RT_SCOPE_*, as named by iproute2's own table (rt_scopes repeats them).
SCOPES = {"global": "0", "universe": "0", "site": "200", "link": "253", "host": "254", "nowhere": "255"}
#: Route flags `ip` prints as bare words.
FLAGS = frozenset({"dead", "onlink", "pervasive", "offload", "notify", "linkdown", "unresolved", "rt_offload",
                   "rt_trap", "trap"})
#: Keywords followed by one value; what is not here and not a flag is skipped a word at a time.
_ONE_VALUE = frozenset({"from", "tos", "dsfield", "dev", "table", "proto", "scope", "src", "metric", "mark", "realm",
                        "realms", "uid", "expires", "error", "pref", "iif", "users", "used", "age", "ipid", "weight"})
_KEYS = {"dev": "dev", "table": "table", "proto": "protocol", "scope": "scope", "src": "prefsrc", "pref": "pref"}


@dataclass(frozen=True)
class Names:
    """What a text route's names stand for: protocol and table names to their numbers."""

    protocols: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)


def parse_routes_text(text: str, names: Names, *, numeric: bool = True) -> list[dict]:
    """Every route of an `ip route show` or `ip route get` text as a row of `ip -json` (`-N` when numeric:
    type, protocol, scope and table as numbers; the table left out when it is main, as ip does)."""
    rows: list[dict] = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if line[:1] in (" ", "\t") and rows:
            if words[0] == "nexthop":
                hop: dict = {}
                _read_pairs(words[1:], hop, names, numeric)
                rows[-1].setdefault("nexthops", []).append(hop)
            elif words[0] == "cache":
                flags = words[1] if len(words) > 1 and words[1].startswith("<") else ""
                rows[-1]["cache"] = [flag for flag in flags.strip("<>").split(",") if flag]
            continue
        row: dict = {}
        if words[0] in ROUTE_TYPES and len(words) > 1:
            kind = words.pop(0)
            if kind != "unicast":
                row["type"] = ROUTE_TYPES[kind] if numeric else kind
        row["dst"] = words.pop(0)
        _read_pairs(words, row, names, numeric)
        rows.append(row)
    return rows


def _read_pairs(words: list[str], row: dict, names: Names, numeric: bool) -> None:
    row.setdefault("flags", [])
    i = 0
    while i < len(words):
        word = words[i]
        if word == "via" and i + 1 < len(words):
            if i + 2 < len(words) and words[i + 1] in ("inet", "inet6") and _is_address(words[i + 2]):
                row["via"] = {"family": words[i + 1], "host": words[i + 2]}  # RFC 5549: another family's next hop
                i += 3
                continue
            row["gateway"] = words[i + 1]
            i += 2
            continue
        if word in FLAGS:
            row["flags"].append(word)
            i += 1
            continue
        if word in _ONE_VALUE and i + 1 < len(words):
            value = words[i + 1]
            if word == "metric":
                # The route's priority comes first; a later `metric N V` is one of its unnamed TCP metrics.
                if "metric" not in row and value.isdigit():
                    row["metric"] = int(value)
            elif word == "weight" and value.isdigit():
                row["weight"] = int(value)
            elif word in _KEYS:
                row[_KEYS[word]] = _number(word, value, names) if numeric else value
            i += 2
            continue
        i += 1


def _number(key: str, value: str, names: Names) -> str:
    if value.isdigit():
        return value
    if key == "proto":
        return names.protocols.get(value, value)
    if key == "table":
        return names.tables.get(value, value)
    if key == "scope":
        return SCOPES.get(value, value)
    return value


def _is_address(word: str) -> bool:
    return any(c in word for c in ".:")
