"""What one command works with (the store, the runner, the output mode) and how it ends:
its report, its warnings, or one error line. Without typer, so that the timer's lean
`apply` (entry.py) runs and ends exactly as the full CLI's.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys

from l2tproute import transports
from l2tproute.core import constants as C
from l2tproute.core.errors import InputError, describe, exit_status
from l2tproute.core.routefile import serialize
from l2tproute.core.text import clean, show
from l2tproute.fronts import render
from l2tproute.ops import applying, policy
from l2tproute.ops.context import Context
from l2tproute.system.iproute2 import DryRun, IpRoute2, Runner
from l2tproute.system.store import Store, StoreError
from l2tproute.transports.openvpn.iroutes import PrecomputeError, precompute_from_environment

_NETNS_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", re.ASCII)


class DryRunStore(Store):
    """Reads the real store; records what a write would do instead of doing it."""

    def __init__(self, directory: str):
        super().__init__(directory)
        self.changes: list[str] = []

    def locked(self, timeout: float = C.LOCK_TIMEOUT):
        return contextlib.nullcontext()

    def replace_cache(self, name: str, data: bytes) -> None:
        pass  # a dry run writes nothing, not even a cache

    @contextlib.contextmanager
    def staged(self, peer, lines):
        yield lambda: self.write(peer, lines)

    def write(self, peer, lines) -> None:
        path = self.path(peer)
        old = (self.read_bytes(peer) or b"").decode("ascii", "replace").splitlines(keepends=True)
        if not any(line.is_meant_as_route for line in lines):
            self.changes.append(f"remove {path}")
            return
        new = serialize(lines).decode("ascii", "replace").splitlines(keepends=True)
        import difflib  # only a --dry-run that writes needs it

        diff = difflib.unified_diff(old, new, fromfile=path, tofile=path)
        self.changes.extend(line.rstrip("\n") for line in diff)


class Invocation:
    """What one command works with: the store, the runner, the output mode."""

    def __init__(self, json_out: bool, dry_run: bool, netns: str | None, force: bool = False,
                 table: str | None = None):
        if netns is not None and not _NETNS_RE.fullmatch(netns):
            raise InputError(f"invalid namespace {show(netns)}: expected a name as shown by `ip netns list`")
        # Before anything is read or changed: what the panel may not ask for at all.
        self.caller = policy.current_caller()
        policy.authorize(self.caller, policy.Request(force=force, netns=netns, table=table))
        found = Store.from_environment()
        found.on_commit = precompute_from_environment(found).follow
        self.json = json_out
        self.store = DryRunStore(found.directory) if dry_run else found
        self._netns = netns
        self._dry_run = dry_run
        self._runner: Runner | None = None
        self.force = force

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            real = IpRoute2(self._netns)
            self._runner = DryRun(real) if self._dry_run else real
        return self._runner

    def refresh_iroutes(self, ctx: Context) -> None:
        """The whole-server apply (the timer's) brings the OpenVPN precompute up to date."""
        if self._dry_run:
            return
        try:
            done = precompute_from_environment(self.store).refresh()
        except (OSError, PrecomputeError, StoreError) as exc:
            ctx.warn(f"OpenVPN iroutes not precomputed: {describe(exc)}")
            return
        for text in done.skipped:
            ctx.warn(text)

    def context(self) -> Context:
        return transports.context(self.store, self.runner, force=self.force, caller=self.caller)

    def finish(self, doc: dict, lines: list[str], ctx: Context | None = None, code: int = 0) -> int:
        warnings = ctx.warnings if ctx else []
        planned = self._planned()
        if self.json:
            doc = dict(doc, ok=code == 0, warnings=warnings)
            if self._dry_run:
                doc["dry_run"] = planned
            print(json.dumps(doc, indent=None, sort_keys=True))
        else:
            out = list(lines)
            if self._dry_run:
                out += ["Dry run, nothing changed. Would run:"] + [f"  {p}" for p in planned]
            if out:
                print("\n".join(clean(line) for line in out))
            warn(warnings)
        return code

    def _planned(self) -> list[str]:
        planned: list[str] = []
        if isinstance(self._runner, DryRun):
            planned += self._runner.planned
        if isinstance(self.store, DryRunStore):
            planned += self.store.changes
        return planned


def warn(warnings: list[str]) -> None:
    sys.stdout.flush()
    for text in warnings:
        print(f"{C.PROG}: warning: {clean(text)}", file=sys.stderr)


def fail(message: str, code: int, wants_json: bool) -> int:
    sys.stdout.flush()
    if wants_json:
        print(json.dumps({"ok": False, "error": message, "exit": code}))
        sys.stdout.flush()
    print(f"{C.PROG}: error: {clean(message)}", file=sys.stderr)
    return code


def fail_with(exc: BaseException, wants_json: bool) -> int:
    """How a command that raised `exc` ends: a wrong request exits 2, a store, `ip` or other
    fault of the machine 1, anything else 1 as an internal error (never a traceback)."""
    return fail(describe(exc), exit_status(exc), wants_json)


def apply_command(invocation: Invocation, peer) -> int:
    """`apply [--peer IP]` once its arguments are parsed: the full CLI and the timer's lean path."""
    ctx = invocation.context()
    report = applying.apply(ctx, peer)
    if peer is None:
        invocation.refresh_iroutes(ctx)
    for text in render.apply_warnings(report):
        ctx.warn(text)
    # Only what is printed is rendered: each form writes every route line again (10,000 on a full apply).
    doc, lines = (render.apply_doc(report), []) if invocation.json else ({}, render.apply_lines(report))
    return invocation.finish(doc, lines, ctx, 0 if report.ok else 1)


def guarded(call, wants_json: bool) -> int:
    """Run a command; whatever it raises ends as one error line and an exit status, never a traceback."""
    try:
        return call()
    except (EOFError, KeyboardInterrupt):
        return fail("interrupted", C.EXIT_FAILURE, wants_json)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            silence_output()
            return C.EXIT_FAILURE
        return fail_with(exc, wants_json)
    except Exception as exc:
        return fail_with(exc, wants_json)


def silence_output() -> None:
    """The reader went away: what is still buffered must not fail again at exit (as click does)."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
