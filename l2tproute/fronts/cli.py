"""The `l2tp-routectl` command line: parse, call the library, print.

Errors are one line on stderr (exit 2 for a wrong argument or a refused request,
1 for a failure at run time), never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

import typer

from l2tproute import __version__
from l2tproute.core import constants as C
from l2tproute.core.model import (
    InputError,
    make_route,
    parse_destination,
    parse_device,
    parse_gateway,
    parse_metric,
    parse_table,
)
from l2tproute.core.text import one_line as _one_line
from l2tproute.fronts import render
from l2tproute.fronts.invocation import Invocation, apply_command, guarded
from l2tproute.fronts.invocation import fail as _fail
from l2tproute.fronts.invocation import warn as _warn
from l2tproute.ops import adding, deleting, listing, status
from l2tproute.system import chap

app = typer.Typer(add_completion=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Per-user static routes for L2TP/PPP servers.",
                  epilog="\b\nExamples:\n"
                         "  l2tp-routectl add --peer 10.255.10.2 --dst 192.168.20.0/24\n"
                         "  l2tp-routectl list --peer 10.255.10.2\n"
                         "  l2tp-routectl status\n"
                         "  l2tp-routectl COMMAND --help    (options and examples of one command)")

PeerOpt = typer.Option(None, "--peer", metavar="IP", help="The peer address of the user (from chap-secrets).")
UserOpt = typer.Option(None, "--user", metavar="NAME",
                       help="The name of the user in /etc/ppp/chap-secrets, instead of --peer.")
OnlyPeerOpt = typer.Option(None, "--peer", metavar="IP", help="Only this peer.")
OnlyUserOpt = typer.Option(None, "--user", metavar="NAME", help="Only this user (from /etc/ppp/chap-secrets).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout.")
DryOpt = typer.Option(False, "--dry-run", help="Print the ip commands and the file change; change nothing.")
NetnsOpt = typer.Option(None, "--netns", metavar="NAME", help="Run every ip command in this network namespace.")
ForceOpt = typer.Option(False, "--force", help="Take over routes and destinations that are refused otherwise.")


def _version(value: bool) -> None:
    if value:
        print(f"{C.PROG} {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")) -> None:
    """Per-user static routes for L2TP/PPP servers."""


@app.command("add")
def add_cmd(peer: Optional[str] = PeerOpt, user: Optional[str] = UserOpt,
            dst: str = typer.Option(..., "--dst", metavar="CIDR", help="Destination network, host bits zero."),
            gw: Optional[str] = typer.Option(None, "--gw", metavar="IP", help="Gateway; default: the peer itself."),
            dev: Optional[str] = typer.Option(None, "--dev", metavar="IFACE", help="Link; default: that of the peer."),
            metric: Optional[str] = typer.Option(None, "--metric", metavar="N", help="Route metric."),
            table: Optional[str] = typer.Option(None, "--table", metavar="ID|NAME", help="Routing table."),
            force: bool = ForceOpt, json_out: bool = JsonOpt, dry_run: bool = DryOpt,
            netns: Optional[str] = NetnsOpt) -> int:
    """Add a route for a peer and install it now if the peer is connected.

    \b
    Example: l2tp-routectl add --peer 10.255.10.2 --dst 192.168.20.0/24
    Example: l2tp-routectl add --user alice --dst 10.20.0.0/16 --metric 50 --table 100
    Example: l2tp-routectl add --peer 10.255.10.2 --dst 2001:db8:100::/48   (IPv6: onto the link of the peer)
    """
    p = chap.resolve_user_or_peer(peer, user, required=True)
    route = make_route(p, parse_destination(dst), parse_gateway(gw) if gw is not None else None,
                       parse_device(dev) if dev is not None else None,
                       parse_metric(metric) if metric is not None else None,
                       parse_table(table) if table is not None else None)
    if route.family == 6 and gw is not None:
        raise InputError("--gw is for IPv4 destinations; an IPv6 destination goes straight onto the link of the peer")
    invocation = Invocation(json_out, dry_run, netns, force, route.table)
    ctx = invocation.context()
    result = adding.add(ctx, p, route)
    words = render.add_words(result)
    ctx.warnings += words.warnings
    return invocation.finish(render.add_doc(result), words.lines, ctx, 1 if result.kernel_error else 0)


@app.command("del")
def del_cmd(peer: Optional[str] = PeerOpt, user: Optional[str] = UserOpt,
            dst: str = typer.Option(..., "--dst", metavar="CIDR|all",
                                    help="Destination to delete, as written in the route file, or all."),
            json_out: bool = JsonOpt, dry_run: bool = DryOpt, netns: Optional[str] = NetnsOpt) -> int:
    """Delete a route of a peer (or all of them) from its file and from the kernel.

    \b
    Example: l2tp-routectl del --peer 10.255.10.2 --dst 192.168.20.0/24
    Example: l2tp-routectl del --peer 10.255.10.2 --dst all   (every route; the file is removed)
    Example: l2tp-routectl del --peer 10.255.10.2 --dst 192.168.1.5/24   (an old line, as written)
    """
    p = chap.resolve_user_or_peer(peer, user, required=True)
    invocation = Invocation(json_out, dry_run, netns)
    ctx = invocation.context()
    result = deleting.delete(ctx, p, dst)
    words = render.del_words(result, dst)
    ctx.warnings += words.warnings
    return invocation.finish(render.del_doc(result, dst), words.lines, ctx, 1 if result.kernel_errors else 0)


@app.command("list")
def list_cmd(peer: Optional[str] = OnlyPeerOpt, user: Optional[str] = OnlyUserOpt,
             json_out: bool = JsonOpt, dry_run: bool = DryOpt, netns: Optional[str] = NetnsOpt) -> int:
    """Print the stored routes of one peer, or of every peer.

    \b
    Example: l2tp-routectl list --peer 10.255.10.2
    Example: l2tp-routectl list --json
    """
    invocation = Invocation(json_out, dry_run, netns)
    store = invocation.store
    p = chap.resolve_user_or_peer(peer, user, required=False)
    if p is not None:
        # Printed as it is, whatever it holds, as the old tool's `cat` did: the warnings
        # about its lines are list's and status's (bin/l2tp-routectl answers this in sh).
        data = store.read_bytes(p, limit=None)
        files = [(p, data)] if data is not None else []
        warnings: List[str] = []
        text = render.list_peer_text(p, data)
    else:
        files, warnings = listing.read_all(store)
        text = render.list_all_text(files)
    if p is None or invocation.json:
        for fp, data in files:
            warnings += listing.file_warnings(store, fp, data)
    if invocation.json:
        doc = {"command": "list", "peers": [render.list_peer_doc(fp, data) for fp, data in files], "ok": True,
               "warnings": warnings}
        print(json.dumps(doc, sort_keys=True))
        return 0
    sys.stdout.flush()
    sys.stdout.buffer.write(text)
    _warn(warnings)
    return 0


@app.command("apply")
def apply_cmd(peer: Optional[str] = OnlyPeerOpt, user: Optional[str] = OnlyUserOpt,
              force: bool = ForceOpt, json_out: bool = JsonOpt, dry_run: bool = DryOpt,
              netns: Optional[str] = NetnsOpt) -> int:
    """Install the stored routes of connected peers; without --peer, also remove stale ones.

    \b
    Example: l2tp-routectl apply                         (what the timer runs every minute)
    Example: l2tp-routectl apply --peer 10.255.10.2      (what the panel runs after add)
    Example: l2tp-routectl apply --dry-run               (show the ip commands, change nothing)
    """
    p = chap.resolve_user_or_peer(peer, user, required=False)
    return apply_command(Invocation(json_out, dry_run, netns, force), p)


@app.command("status")
def status_cmd(peer: Optional[str] = OnlyPeerOpt, user: Optional[str] = OnlyUserOpt,
               json_out: bool = JsonOpt, netns: Optional[str] = NetnsOpt) -> int:
    """Compare the stored routes of each peer with the kernel; change nothing.

    States: installed, wanted (peer not connected), missing, blocked (a route
    l2tp-routectl did not install holds the destination), extra (tagged, no longer
    wanted). The first line is a one-line summary. Exit status 0 when everything
    wanted is installed, 1 on drift (missing, blocked or extra), so a Nagios/Icinga
    check or a systemd ExecCondition can run it as it is.

    \b
    Example: l2tp-routectl status
    Example: l2tp-routectl status --user alice --json
    """
    p = chap.resolve_user_or_peer(peer, user, required=False)
    invocation = Invocation(json_out, False, netns)
    ctx = invocation.context()
    report = status.status(ctx, p)
    code = C.EXIT_FAILURE if report.drift else C.EXIT_OK
    return invocation.finish(render.status_doc(report), render.status_lines(report), ctx, code)


# -- entry point ------------------------------------------------------------

_VALUE_OPTIONS = {"--peer", "--dst", "--gw", "--dev", "--metric", "--table", "--netns", "--user"}


def _check_repeats(argv: List[str]) -> None:
    """An option given twice is ambiguous: the old tool took the last, we refuse."""
    seen = set()
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if name in _VALUE_OPTIONS or name in ("--json", "--dry-run", "--force"):
            if name in seen:
                raise InputError(f"option {name} given more than once; give it once")
            seen.add(name)
            skip = name in _VALUE_OPTIONS and "=" not in arg


_COMPLETION_FLAGS = ("--install-completion", "--show-completion")
_COMPLETION_SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def _check_completion_shell(argv: List[str]) -> None:
    """typer takes the shell from the parent processes and, when it finds none it knows,
    prints a bare `Shell None is not supported.`: say it in our words instead."""
    if not argv or argv[0] not in _COMPLETION_FLAGS:
        return
    import shellingham

    try:
        name = shellingham.detect_shell()[0]
    except shellingham.ShellDetectionFailure:
        name = None
    if name not in _COMPLETION_SHELLS:
        raise InputError(f"{argv[0]} could not tell which shell it was started from (found {name or 'none'}); "
                         f"run it from an interactive {', '.join(_COMPLETION_SHELLS[:3])} or powershell")


_COMPLETE_VAR = "_{}_COMPLETE".format(C.PROG.replace("-", "_").upper())  # click's name for it


def run(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_json = "--json" in argv
    # No command: click 8.1 (the newest for Python 3.8 and 3.9) would print the help and exit 0, 8.2+
    # raises. A completion request also comes without arguments (its variable says what).
    if not argv and _COMPLETE_VAR not in os.environ:
        return _fail(f"no command given; expected one of: add, del, list, apply (see: {C.PROG} --help)",
                     C.EXIT_USAGE, wants_json)
    return guarded(lambda: _run_click(argv, wants_json), wants_json)


def _run_click(argv: List[str], wants_json: bool) -> int:
    command = typer.main.get_command(app)
    try:
        _check_repeats(argv)
        _check_completion_shell(argv)
        code = command.main(args=argv, prog_name=C.PROG, standalone_mode=False)
        return code if isinstance(code, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:  # click's word for an interrupt or EOF at a prompt
        raise KeyboardInterrupt from None
    except Exception as exc:
        if type(exc).__name__.startswith("NoArgsIsHelp"):
            return _fail("no command given; expected one of: add, del, list, apply (see: "
                         f"{C.PROG} --help)", C.EXIT_USAGE, wants_json)
        if _is_click_error(exc):
            return _fail(_usage_message(exc), exc.exit_code or C.EXIT_USAGE, wants_json)
        raise


def _is_click_error(exc: Exception) -> bool:
    # typer bundles its own copy of click in recent releases: recognise its errors by shape.
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


_MAX_USAGE_TEXT = 300


def _usage_message(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    command = f"{ctx.info_name} " if ctx is not None and ctx.parent is not None else ""
    text = _one_line(exc.format_message())
    if len(text) > _MAX_USAGE_TEXT:  # click echoes the caller's word: a 100 kB option is not a message
        text = text[:_MAX_USAGE_TEXT] + "..."
    return f"{text} (see: {C.PROG} {command}--help)"


def main() -> None:
    sys.exit(run())
