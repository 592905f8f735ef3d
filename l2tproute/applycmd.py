"""`apply` after its arguments are parsed: run it, then print its report and warnings.

Shared by the full CLI and the lean path (fastapply.py), so both print the same.
"""

from __future__ import annotations

from . import constants as C
from . import engine
from .model import IPv4Address
from .session import Session


def apply_command(session: Session, p: IPv4Address | None) -> int:
    ctx = session.context()
    report = engine.apply(ctx, p)
    lines = apply_lines(report)
    for bpeer, line, holder in report.blocked:
        ctx.warn(f"peer {bpeer}: not installed: {line}: the destination is held by {holder}, "
                 "which l2tp-routectl did not install (use --force to replace it)")
    for fpeer, line, message in report.failed:
        who = f"peer {fpeer}: " if fpeer else ""
        ctx.warn(f"{who}failed: {line}: {message}")
    doc = {"command": "apply", "peer": str(p) if p is not None else None,
           "connected": {str(k): v for k, v in report.connected},
           "offline": [str(x) for x in report.offline],
           "installed": [{"peer": str(a), "route": b} for a, b in report.installed],
           "updated": [{"peer": str(a), "route": b} for a, b in report.updated],
           "adopted": [{"peer": str(a), "route": b} for a, b in report.adopted],
           "removed": report.removed, "unchanged": report.unchanged,
           "blocked": [{"peer": str(a), "route": b, "holder": c} for a, b, c in report.blocked],
           "failed": [{"peer": str(a) if a else None, "route": b, "error": c} for a, b, c in report.failed]}
    return session.finish(doc, lines, ctx, 0 if report.ok else 1)


def apply_lines(report: engine.ApplyReport) -> list[str]:
    if report.scope is not None and report.offline:
        return [f"Peer {report.scope} is not connected; its routes will be installed when its link comes up."]
    lines = [f"Installed route for peer {p}: {line}" for p, line in report.installed]
    lines += [f"Updated route for peer {p}: {line}" for p, line in report.updated]
    lines += [f"Adopted route for peer {p}: {line} (installed by the old tool, now tagged proto {C.RT_PROTO})"
              for p, line in report.adopted]
    lines += [f"Removed stale route: {what}" for what in report.removed]
    if report.scope is not None:
        link = report.connected[0][1]
        lines.append(f"Applied routes for peer {report.scope} on {link}: {len(report.installed)} installed, "
                     f"{len(report.updated)} updated, {_adopted(report)}{len(report.removed)} removed, "
                     f"{report.unchanged} unchanged, {len(report.blocked)} blocked, {len(report.failed)} failed.")
    else:
        lines.append(f"Applied routes: {len(report.connected)} peers connected, {len(report.offline)} offline; "
                     f"{len(report.installed)} installed, {len(report.updated)} updated, {_adopted(report)}"
                     f"{len(report.removed)} removed, {report.unchanged} unchanged, {len(report.blocked)} blocked, "
                     f"{len(report.failed)} failed.")
    return lines


def _adopted(report: engine.ApplyReport) -> str:
    # Said only when it happened: after an upgrade, once per old route.
    return f"{len(report.adopted)} adopted, " if report.adopted else ""
