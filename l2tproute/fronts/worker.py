"""The hook worker: drains the spool the pppd hooks fill, one pass per burst of events.

Started by the hooks' sh front (`flock -n` on the worker lock, handed over as an open
descriptor, so at most one starts per burst) or, where systemd runs, by
l2tproute-worker.path whenever the spool is not empty. Each pass takes every pending
event, handles them together (hook.handle: one kernel read, one batch) and removes
them. After it lets go of the lock it looks once more: an event spooled while it was
finishing found the lock taken, or this worker named in worker.running, and started
nobody, so this worker takes it.

Every event names the network namespace its hook ran in; each namespace's events are
handled inside that namespace (netns.entered: `ip` and /proc/sys/net are then that
namespace's), whether it is the worker's own, the host's or a named one. An event of a
namespace the worker cannot find among these (one without a name, or gone) is refused and
logged, never applied elsewhere (docs/namespaces.md).
"""

from __future__ import annotations

import fcntl
import os
import sys
import syslog
from collections.abc import Sequence
from dataclasses import dataclass

from l2tproute import transports
from l2tproute.core import constants as C
from l2tproute.core.errors import describe
from l2tproute.fronts.link_events import HOOK_BATCH_TIMEOUT, HOOK_IP_TIMEOUT, after_openvpn, handle
from l2tproute.ops.context import Context
from l2tproute.system import netns as namespaces
from l2tproute.system.iproute2 import IpRoute2, Runner
from l2tproute.system.spool import Pending, Spool, run_dir_from_environment
from l2tproute.system.store import Store
from l2tproute.system.syslogger import Log, quiet_log

#: The worker is no hook: nobody waits for it, so it may wait for the store lock as long
#: as an apply of everything can take.
WORKER_LOCK_TIMEOUT = 120.0
#: A worker that keeps finding new events gives way after this many passes (the next
#: hook starts a fresh one), so a bug can never make it spin for ever.
MAX_PASSES = 1000


@dataclass(frozen=True)
class Drained:
    handled: int
    stuck: bool  # a pass failed: its events stay for the next worker (or the timer's apply)


def drain(spool: Spool, ctx: Context, log: Log, proc_sys: str = "/proc/sys") -> Drained:
    """Handle every event in the spool until it is empty, or until a pass fails."""
    handled = 0
    for _ in range(MAX_PASSES):
        pending = spool.pending()
        for text in pending.rejected:
            log(syslog.LOG_ERR, f"worker: {text}")
        if not pending.events and not pending.vpn:
            break
        stuck = False
        for part in pending.by_namespace():
            if _handle_in_namespace(spool, part, ctx, log, proc_sys):
                handled += len(part.events) + len(part.vpn)
            else:
                stuck = True
        if stuck:
            return Drained(handled, stuck=True)
    return Drained(handled, stuck=False)


def _handle_in_namespace(spool: Spool, part: Pending, ctx: Context, log: Log, proc_sys: str) -> bool:
    """One namespace's events, inside it; False when they failed and stay for the next worker."""
    events = part.events + part.vpn
    found = namespaces.find(part.netns) if part.netns is not None else None
    if found is None:
        for event in events:
            log(syslog.LOG_ERR, f"{event}: refused: it happened in network namespace {part.netns}, which is not "
                                "this worker's, the host's or a named one (ip netns list); give that namespace a "
                                "name (ip netns attach NAME PID) so its events can be applied there")
        spool.done(events)
        return True
    try:
        with namespaces.entered(found):
            if part.vpn:
                # Only OpenVPN's hook spools these: where it never ran, its code is never loaded.
                from l2tproute.transports.openvpn import sync as openvpn

                after_openvpn(openvpn.handle(part.vpn, ctx, log, spool.run_dir), ctx, log)
            if part.events:
                handle(part.events, ctx, log, proc_sys)
    except Exception as exc:
        log(syslog.LOG_ERR, f"worker: {len(events)} events of network namespace {found.what} not handled: "
                            f"{describe(exc)}; they are tried again by the next hook, and the timer applies "
                            "everything")
        return False
    finally:
        found.close()
    spool.done(events)
    return True


def _lock(fd: int, wait: bool) -> bool:
    # fcntl, not filelock: this lock arrives as a descriptor the sh front already holds,
    # and flock(1) there must see the same kind of lock.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def run(spool: Spool, ctx: Context, log: Log, held_fd: int | None, proc_sys: str = "/proc/sys") -> int:
    """Drain while holding the worker lock, then look again after letting it go."""
    if held_fd is None:
        os.makedirs(spool.run_dir, mode=0o755, exist_ok=True)
        fd = os.open(spool.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _lock(fd, wait=True)  # systemd's start: wait for a worker a hook started
    else:
        fd = held_fd
    handled = 0
    held = True
    try:
        while True:
            spool.mark_running()
            result = drain(spool, ctx, log, proc_sys)
            handled += result.handled
            # Cleared while the lock is held, before the look below: see Spool.mark_running.
            spool.clear_running()
            fcntl.flock(fd, fcntl.LOCK_UN)
            held = False
            if result.stuck or spool.is_empty() or not _lock(fd, wait=False):
                return handled
            held = True
    finally:
        if held:  # another worker may hold the lock, and its own mark, once this one let go
            spool.clear_running()
        os.close(fd)


def refresh_iroutes(store: Store, log: Log, force: bool = False) -> None:
    """The OpenVPN precompute's users/ after a chap-secrets change (l2tproute-worker.path starts
    the worker for one), or everything with `force` (--iroutes, before OpenVPN starts)."""
    if not os.path.isdir(os.path.join(run_dir_from_environment(), C.OPENVPN_IROUTES)):
        return  # no OpenVPN server wired here: a pppd event loads no OpenVPN code
    from l2tproute.transports.openvpn.iroutes import precompute_from_environment

    try:
        done = precompute_from_environment(store).refresh(force=force, peers=force)
    except Exception as exc:  # the spool's events come first
        log(syslog.LOG_ERR, f"worker: OpenVPN iroutes not precomputed: {describe(exc)}")
        return
    for text in done.skipped:
        log(syslog.LOG_WARNING, f"worker: {text}")
    if done.users_written or done.users_removed or done.peers_written or done.peers_removed:
        log(syslog.LOG_INFO, f"worker: OpenVPN iroutes precomputed: {done.users_written} users written, "
                             f"{done.users_removed} removed; {done.peers_written} peers written, "
                             f"{done.peers_removed} removed")


def main(argv: Sequence[str] | None = None) -> int:
    """`l2tp-routes-worker [--lock-fd N | --iroutes]`; always 0, everything it has to say goes to syslog."""
    argv = list(sys.argv[1:] if argv is None else argv)
    log = quiet_log()
    held = None
    store = Store.from_environment()
    if argv == ["--iroutes"]:
        refresh_iroutes(store, log, force=True)
        return 0
    if len(argv) == 2 and argv[0] == "--lock-fd" and argv[1].isdigit():
        held = int(argv[1])
    elif argv:
        log(syslog.LOG_ERR, "worker: unknown arguments; expected nothing, --lock-fd N or --iroutes")
        return 0
    refresh_iroutes(store, log)
    runner: Runner = IpRoute2(timeout=HOOK_IP_TIMEOUT, batch_timeout=HOOK_BATCH_TIMEOUT)
    ctx = transports.context(store, runner, lock_timeout=WORKER_LOCK_TIMEOUT)
    try:
        run(Spool(run_dir_from_environment()), ctx, log, held)
    except BaseException as exc:  # noqa: B902 - logged, never a traceback on a closed stdout
        log(syslog.LOG_ERR, f"worker: {describe(exc)}")
    return 0
