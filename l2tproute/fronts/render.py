"""Every command's report in words: its text and JSON, and the hook worker's log lines.

One wording for every front: `apply --peer` and a link that came up read alike; `list` prints
what the old tool printed, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from l2tproute.core import constants as C
from l2tproute.core.carrier import transport_label
from l2tproute.core.model import IPv4Address
from l2tproute.core.routefile import format_route, parse
from l2tproute.ops.applying import ApplyReport, Connection, RouteResult

if TYPE_CHECKING:  # typed only: the timer's apply and the hook worker load none of these verbs
    from l2tproute.ops.adding import AddResult
    from l2tproute.ops.deleting import DelResult
    from l2tproute.ops.status import PeerStatus, RouteStatus, StatusReport


def _counts(report: ApplyReport) -> str:
    # "adopted" only once the old tool's routes were met: the contract's summary stays as it was.
    adopted = f"{len(report.adopted)} adopted, " if report.adopted else ""
    return (f"{len(report.installed)} installed, {len(report.updated)} updated, {adopted}"
            f"{len(report.removed)} removed, "
            f"{len(report.unchanged)} unchanged, {len(report.blocked)} blocked, "
            f"{len(report.failed) + len(report.removal_failed)} failed.")


def _over(result: RouteResult) -> str:
    return f" (over {transport_label(result.transport)} on {result.link})" if result.shared else ""


def _route_lines(report: ApplyReport) -> list[str]:
    lines = [f"Installed route for peer {r.peer}: {r.line}{_over(r)}" for r in report.installed]
    lines += [f"Updated route for peer {r.peer}: {r.line}{_over(r)}" for r in report.updated]
    lines += [f"Adopted route for peer {r.peer}: {r.line} (installed by the old tool, now tagged proto {C.RT_PROTO})"
              for r in report.adopted]
    lines += [f"Removed stale route: {r.text}" for r in report.removed]
    return lines


def apply_lines(report: ApplyReport) -> list[str]:
    """What `apply` prints on stdout."""
    if report.scope is not None and report.offline:
        return [f"Peer {report.scope} is not connected; its routes will be installed when its link comes up."]
    lines = _route_lines(report)
    if report.scope is not None:
        lines.append(connection_summary(report.connected[0], report))
    else:
        lines.append(f"Applied routes: {len(report.connected)} peers connected, {len(report.offline)} offline; "
                     + _counts(report))
    return lines


def connection_summary(connection: Connection, report: ApplyReport) -> str:
    over = f" ({transport_label(connection.transport)})" if connection.shared else ""
    return f"Applied routes for peer {connection.peer} on {connection.link}{over}: " + _counts(report)


def apply_warnings(report: ApplyReport) -> list[str]:
    """What `apply` says on stderr about the routes it could not put in or take out."""
    warnings = [f"peer {r.peer}: not installed: {r.line}: the destination is held by {r.detail}, "
                "which l2tp-routectl did not install (use --force to replace it)"
                for r in report.blocked if not (r.shared or r.held_by_ours)]
    # A slot held by a live client on a shared link, or wanted there, is left to whoever came first.
    warnings += [f"peer {r.peer}: not installed{_over(r)}: {r.line}: the destination is held by "
                 f"{r.detail}; the first one stays" for r in report.blocked if r.shared or r.held_by_ours]
    warnings += [f"peer {r.peer}: failed: {r.line}: {r.detail}" for r in report.failed]
    warnings += [f"failed: {r.text}: {r.detail}" for r in report.removal_failed]
    return warnings


def apply_doc(report: ApplyReport) -> dict:
    def routes(items):
        return [{"peer": str(r.peer), "route": r.line} for r in items]

    return {"command": "apply", "peer": str(report.scope) if report.scope is not None else None,
            "connected": {str(c.peer): c.link for c in report.connected},
            "openvpn": [str(c.peer) for c in report.connected if c.transport == "openvpn"],
            "offline": [str(p) for p in report.offline],
            "installed": routes(report.installed), "updated": routes(report.updated),
            "adopted": routes(report.adopted),
            "removed": [r.text for r in report.removed], "unchanged": len(report.unchanged),
            "blocked": [{"peer": str(r.peer), "route": r.line, "holder": r.detail} for r in report.blocked],
            "failed": [{"peer": str(r.peer), "route": r.line, "error": r.detail} for r in report.failed]
            + [{"peer": None, "route": r.text, "error": r.detail} for r in report.removal_failed]}


@dataclass(frozen=True)
class LogLine:
    text: str
    trouble: bool  # logged as a warning


def _log(info: list[str], report: ApplyReport, summary: str) -> list[LogLine]:
    return ([LogLine(text, False) for text in info] + [LogLine(text, True) for text in apply_warnings(report)]
            + [LogLine(summary, False)])


def link_up_lines(report: ApplyReport) -> list[LogLine]:
    """A link that came up, as the worker logs it: apply --peer's words for that link."""
    return _log(_route_lines(report), report, connection_summary(report.connected[0], report))


def link_down_lines(link: str, peer, report: ApplyReport) -> list[LogLine]:
    """A link that went down; the peer's lines that went over to its OpenVPN session with it."""
    return _log([f"Removed route: {r.text}" for r in report.removed]
                + [f"Installed route for peer {r.peer}: {r.line}{_over(r)}" for r in report.installed], report,
                f"Released {link} of peer {peer}: {len(report.removed)} removed, "
                f"{len(report.removal_failed)} failed.")


@dataclass(frozen=True)
class Words:
    """What a command prints: its lines on stdout and its warnings on stderr."""

    lines: list[str]
    warnings: list[str]


# -- add and del -------------------------------------------------------------------

ADD_HEADINGS = {"added": "Added route", "updated": "Updated route", "exists": "Route already exists"}


def add_words(result: AddResult) -> Words:
    lines, warnings = [f"{ADD_HEADINGS[result.status]}: {result.line}"], []
    client = result.shared
    over = f"over {transport_label(client.transport)} on {client.link}" if client is not None else ""
    if client is not None and result.not_carried is not None:
        lines.append(f"Peer {result.peer} is connected {over}, where this line is not routed: it {result.not_carried}.")
    elif client is not None and result.kernel_error:
        warnings.append(f"route saved but not installed {over}: {result.kernel_error}")
    elif client is not None:
        # OpenVPN routes to a client by its iroutes, which it reads only when the client connects.
        later = "; OpenVPN itself routes it to the user (iroute) from the next reconnect of the user on" \
            if client.transport == "openvpn" else ""
        lines.append(f"Installed {over} via {client.via4}{later}.")
    elif result.link is None:
        lines.append(f"Peer {result.peer} is not connected; the route will be installed when its link comes up.")
    elif result.kernel_error:
        warnings.append(f"route saved but not installed on {result.link}: {result.kernel_error}")
    else:
        lines.append(f"Installed on {result.link}.")
    return Words(lines, warnings)


def add_doc(result: AddResult) -> dict:
    client = result.shared
    return {"command": "add", "peer": str(result.peer), "status": result.status, "route": result.line,
            "link": result.link, "installed": result.installed,
            "openvpn": {"tun": client.link, "address": str(client.via4)} if client is not None else None}


def del_words(result: DelResult, dst: str) -> Words:
    from l2tproute.ops.deleting import ALL

    if not result.had_file:
        lines = [f"No routes found for peer: {result.peer}"]
    elif not result.removed:
        lines = [f"Route not found for peer {result.peer}: {dst}"]
    elif dst == ALL:
        lines = [f"Deleted all routes for peer {result.peer} ({len(result.removed)} lines); its route file is removed."]
    else:
        lines = [f"Deleted route: {text}" for text in result.removed]
    return Words(lines, [f"could not remove from the kernel: {error}" for error in result.kernel_errors])


def del_doc(result: DelResult, dst: str) -> dict:
    return {"command": "del", "peer": str(result.peer), "dst": dst, "removed": result.removed,
            "kernel_removed": result.kernel_removed, "kernel_errors": result.kernel_errors}


# -- list: the old tool's words, byte for byte (the panel parses them) --------------

def list_peer_text(peer: IPv4Address, data: bytes | None) -> bytes:
    if data is None:
        return f"No routes found for peer: {peer}\n".encode()
    return f"Routes for peer {peer}:\n".encode() + _terminated(data)


def list_all_text(files: list[tuple[IPv4Address, bytes]]) -> bytes:
    if not files:
        return b"No routes found\n"
    parts = [b"All routes:\n"]
    for peer, data in files:
        parts += [f"Peer: {peer}\n".encode(), _terminated(data), b"\n"]
    return b"".join(parts)


def _terminated(data: bytes) -> bytes:
    return data if not data or data.endswith(b"\n") else data + b"\n"


def list_peer_doc(peer: IPv4Address, data: bytes) -> dict:
    lines = parse(data)
    return {
        "peer": str(peer),
        "routes": [format_route(line.route) for line in lines if line.route is not None],
        "lines": [line.raw.decode("ascii", "replace") for line in lines],
    }


# -- status ---------------------------------------------------------------------------

def status_summary(report: StatusReport) -> str:
    """One line, first on the output, as monitoring plugins expect."""
    from l2tproute.ops.status import STATES

    counts = report.counts()
    connected = sum(1 for p in report.peers if p.connected)
    peers = f"{len(report.peers)} peer{'s' if len(report.peers) != 1 else ''} ({connected} connected)"
    parts = ", ".join(f"{counts[s]} {s}" for s in STATES)
    if report.drift:
        return f"DRIFT: {peers}; {parts}"
    return f"OK: {peers}; {parts}"


def status_lines(report: StatusReport) -> list[str]:
    lines = [status_summary(report)]
    for entry in report.peers:
        where = f"connected on {entry.link}" if entry.link is not None else "not connected"
        if entry.shared:
            label = transport_label(entry.shared[-1].transport)
            over = ", ".join(f"{c.link} as {c.via4}" for c in entry.shared)
            where = f"{where}, also over {label} on {over}" if entry.link is not None else \
                f"connected over {label} on {over}"
        stored = "" if entry.routes else "; no routes stored"
        lines.append(f"Peer {entry.peer}: {where}{stored}")
        if entry.invalid:
            lines.append(status_invalid_text(entry))
        lines += [_status_route_text(r) for r in entry.routes]
    if report.extra:
        lines.append(f"Tagged routes (proto {C.RT_PROTO}) on no link of a stored peer:")
        lines += [_status_route_text(r) for r in report.extra]
    return lines


def status_invalid_text(entry: PeerStatus) -> str:
    """One line for all the lines of a peer that today's rules refuse, and what to do about them."""
    numbers = ", ".join(str(item.number) for item in entry.invalid)
    name = f"{entry.peer}{C.ROUTE_FILE_SUFFIX}"
    which = f"line {numbers} of {name} is not a valid route" if len(entry.invalid) == 1 else \
        f"lines {numbers} of {name} are not valid routes"
    return (f"  invalid   {which} (the old tool stored such lines) and never installed; see them with "
            f"list --peer {entry.peer}, remove each with del --peer {entry.peer} --dst DESTINATION as written "
            "there, and add it again with a valid destination and gateway")


def _status_route_text(item: RouteStatus) -> str:
    from l2tproute.ops.status import INSTALLED

    detail = f"  ({item.detail})" if item.detail and item.state != INSTALLED else ""
    return f"  {item.state:<9} {item.route}{detail}"


def status_doc(report: StatusReport) -> dict:
    def route_doc(item: RouteStatus) -> dict:
        return {"state": item.state, "route": item.route, "detail": item.detail}

    return {
        "command": "status",
        "peer": str(report.scope) if report.scope is not None else None,
        "drift": report.drift,
        "summary": report.counts(),
        "peers": [{"peer": str(p.peer), "connected": p.connected, "link": p.link,
                   "openvpn": [{"tun": c.link, "address": str(c.via4)} for c in p.shared if c.transport == "openvpn"],
                   "routes": [route_doc(r) for r in p.routes],
                   "invalid_lines": [{"line": i.number, "text": i.text, "problem": i.problem} for i in p.invalid]}
                  for p in report.peers],
        "extra": [route_doc(r) for r in report.extra],
    }
