"""The route file format: `DST via GW[ dev IFACE][ metric N][ table T]`, one per LF line.

A file is a list of lines that each keep their exact bytes. Only lines the tool
adds or updates are (re)written, so comments, CRLF endings and lines nobody can
parse survive every edit of other lines byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from l2tproute.core.model import (
    InputError,
    Route,
    ipv4_address,
    ipv4_network,
    parse_destination,
    parse_device,
    parse_gateway,
    parse_metric,
    parse_table,
)
from l2tproute.core.text import clean, show

#: Line kinds.
ROUTE = "route"  # a route line written exactly as the tool writes it
LOOSE = "loose"  # a route, but with CRLF, extra blanks, no final newline, or a trailing comment
COMMENT = "comment"
BLANK = "blank"
INVALID = "invalid"


@dataclass(frozen=True)
class Line:
    raw: bytes
    kind: str
    route: Route | None = None
    problem: str | None = None

    @property
    def is_route(self) -> bool:
        return self.route is not None

    @property
    def is_meant_as_route(self) -> bool:
        """A route, or a line that tries to be one (the old tool stored such lines, the panel
        lists them): a file is kept while one is left, so deleting one line never drops another."""
        return self.kind not in (COMMENT, BLANK)

    @property
    def destination(self) -> str | None:
        """The first word of a route line, or of a line meant as one, exactly as written.

        `del` matches this text, not the parsed route: a line today's rules refuse (the old
        tool stored host bits, multicast gateways, unknown words) stays removable, and
        `10.0.0.0/2` never matches `10.0.0.0/24`. None for comments, blank lines and a
        first word that is not ASCII.
        """
        if self.kind in (COMMENT, BLANK):
            return None
        words = self.raw.split(None, 1)
        if not words or not words[0].isascii():
            return None
        return words[0].decode("ascii")


def format_route(route: Route) -> str:
    """The one place a route becomes file text (without the newline)."""
    words = [str(route.dst), "via", str(route.gw)]
    if route.dev is not None:
        words += ["dev", route.dev]
    if route.metric is not None:
        words += ["metric", str(route.metric)]
    if route.table is not None:
        words += ["table", route.table]
    return " ".join(words)


def route_line(route: Route) -> Line:
    return Line(raw=format_route(route).encode("ascii") + b"\n", kind=ROUTE, route=route)


_OPTIONS = {"dev": parse_device, "metric": parse_metric, "table": parse_table}
_FIELD = {"dev": "dev", "metric": "metric", "table": "table"}


def parse_words(words: list[str]) -> Route:
    """Route from the words of one line; raises InputError naming the first wrong word."""
    if len(words) < 3 or words[1] != "via":
        raise InputError("expected DST via GATEWAY [dev IFACE]")
    dst = parse_destination(words[0])
    gw = parse_gateway(words[2])
    extras = {}
    rest = words[3:]
    if len(rest) % 2:
        raise InputError(f"{show(rest[-1])} has no value")
    for key, value in zip(rest[0::2], rest[1::2]):
        if key not in _OPTIONS:
            raise InputError(f"unknown word {show(key)}; expected dev, metric or table")
        if key in extras:
            raise InputError(f"{show(key)} given twice")
        extras[_FIELD[key]] = _OPTIONS[key](value)
    return Route(dst=dst, gw=gw, **extras)


_OCTET = rb"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
# A line exactly as format_route writes an IPv4 route without metric or table, which nearly
# every line is: `DST via GW[ dev IFACE]` and LF, in model.py's spelling of each value (no
# leading zeros, a prefix 0-32, a link name parse_device accepts). Such a line is read from
# this one match; anything else, or a value the checks below refuse, takes the full parse.
_CANONICAL4 = re.compile(
    rb"%s\.%s\.%s\.%s/(3[0-2]|[12][0-9]|[0-9]) via ([0-9.]{7,15})(?: dev ([A-Za-z0-9_.+@-]{1,15}))?\n"
    % (_OCTET, _OCTET, _OCTET, _OCTET))


def _canonical(raw: bytes) -> Line | None:
    """The ROUTE line parse_line would make of `raw`, when `raw` is a canonical IPv4 line; else None."""
    match = _CANONICAL4.fullmatch(raw)
    if match is None:
        return None
    a, b, c, d, bits_text, gw_text, dev_text = match.groups()
    bits = int(bits_text)
    address = int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)
    if address & ((1 << (32 - bits)) - 1):
        return None  # host bits set: the full parse words the refusal
    gw = ipv4_address(gw_text.decode("ascii"))
    if gw is None:
        return None  # not a canonical dotted quad
    first = int(gw) >> 24
    if first == 0 or first == 127 or first >= 224:
        return None  # not unicast, as model.parse_gateway checks it
    dev = None
    if dev_text is not None:
        if dev_text in (b".", b".."):
            return None
        dev = dev_text.decode("ascii")
    return Line(raw, ROUTE, Route(dst=ipv4_network(address, bits), gw=gw, dev=dev))


def parse_line(raw: bytes) -> Line:
    """One line of a route file; a canonical IPv4 line is read by one match, the same Line as
    parse_line_in_full makes of it (tests/unit/test_routefile.py holds the two together)."""
    line = _canonical(raw)
    return line if line is not None else parse_line_in_full(raw)


def parse_line_in_full(raw: bytes) -> Line:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return Line(raw, INVALID, problem="not plain ASCII text")
    body = text.rstrip("\r\n")
    stripped = body.strip(" \t")
    if not stripped:
        return Line(raw, BLANK)
    if stripped.startswith("#"):
        return Line(raw, COMMENT)
    content, hash_, _comment = stripped.partition("#")
    if hash_ and content[-1:] not in (" ", "\t"):
        content = stripped
    if not content.replace("\t", " ").isprintable():
        return Line(raw, INVALID, problem="contains control characters")
    words = content.split()
    try:
        route = parse_words(words)
    except InputError as exc:
        return Line(raw, INVALID, problem=str(exc))
    if route.family == 4 and route.metric is None and route.table is None:
        # Validation accepted only the canonical spelling of an IPv4 destination and gateway,
        # so the words are what format_route would write: no second formatting per line.
        written = " ".join(words)
    else:
        written = format_route(route)
    if raw == written.encode("ascii") + b"\n":
        return Line(raw, ROUTE, route)
    return Line(raw, LOOSE, route, problem=_looseness(raw))


def _looseness(raw: bytes) -> str:
    if raw.endswith(b"\r\n"):
        return "CRLF line ending"
    if not raw.endswith(b"\n"):
        return "no newline at the end of the file"
    if b"#" in raw:
        return "trailing comment"
    return "extra spaces or tabs"


def split_lines(data: bytes) -> list[bytes]:
    """Split on LF only, keeping each terminator: `b''.join(split_lines(d)) == d`."""
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def parse(data: bytes) -> list[Line]:
    return [parse_line(raw) for raw in split_lines(data)]


def serialize(lines: Iterable[Line]) -> bytes:
    return b"".join(line.raw for line in lines)


@dataclass(frozen=True)
class InvalidLine:
    """A line meant as a route that today's rules refuse (the old tool stored such lines)."""

    number: int
    text: str
    problem: str


def invalid_lines(lines: Iterable[Line]) -> list[InvalidLine]:
    return [InvalidLine(number, line.raw.decode("ascii", "replace").rstrip("\r\n"), line.problem or "")
            for number, line in enumerate(lines, 1) if line.kind == INVALID]


def routes(lines: Iterable[Line]) -> list[Route]:
    return [line.route for line in lines if line.route is not None]


def problems(lines: Iterable[Line], path: str, *, invalid: bool = True) -> list[str]:
    """A warning for every line that is not a clean route line (comments and blanks are fine);
    without `invalid`, only for the lines that are used (the caller reports the others its way)."""
    out = []
    for number, line in enumerate(lines, 1):
        if line.kind == INVALID and invalid:
            out.append(f"{clean(path)} line {number}: not understood, kept as is and skipped: {line.problem}")
        elif line.kind == LOOSE:
            out.append(f"{clean(path)} line {number}: {line.problem}; used, and kept as is")
    return out
