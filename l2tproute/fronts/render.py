"""apply's report in words: the command's text and JSON, the hook worker's log lines.

One wording for every front: `apply --peer` and a link that came up read alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from l2tproute.core import constants as C
from l2tproute.core.carrier import transport_label
from l2tproute.ops.applying import ApplyReport, Connection, RouteResult


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
