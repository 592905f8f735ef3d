"""Console entry point: the timer's `apply` without typer, every other command line through the CLI.

Keep this module's imports to `os` and `sys`: it is loaded on every call. Loading typer
costs about a tenth of a second, a fifth of a steady-state apply at 10,000 routes, so
the command lines the timer and the panel send to `apply` are recognised here and run
by the same function and the same error handling as the full CLI (the argument check
is the library's; policy.authorize runs in Invocation, as for the full CLI). The panel's hot read,
`list --peer`, never reaches Python at all: bin/l2tp-routectl answers it in POSIX sh.
"""

import os
import sys

#: click's shell-completion switch for this program: when set, the full CLI completes instead.
_COMPLETION_VAR = "_L2TP_ROUTECTL_COMPLETE"


def lean_apply(argv):
    """(peer text or None, namespace or None) for the timer's and the panel's `apply` command lines
    (`apply`, with at most `--peer IP` and `--netns NAME`, each once, as `--opt VALUE` or
    `--opt=VALUE`), else None: the full CLI answers (and words any error)."""
    if sys.stdout is None or _COMPLETION_VAR in os.environ or not argv or argv[0] != "apply":
        return None
    found = {}
    rest = list(argv[1:])
    while rest:
        name, eq, value = rest.pop(0).partition("=")
        if name not in ("--peer", "--netns") or name in found:
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if not value or value.startswith("-"):
            return None
        found[name] = value
    return found.get("--peer"), found.get("--netns")


def run(argv) -> int:
    """The exit status of `l2tp-routectl ARGV`."""
    argv = list(argv)
    lean = lean_apply(argv)
    if lean is not None:
        from l2tproute.core.model import parse_peer
        from l2tproute.fronts.invocation import Invocation, apply_command, guarded

        peer_text, netns = lean
        try:
            peer = parse_peer(peer_text) if peer_text is not None else None
            invocation = Invocation(False, False, netns)
        except Exception:  # a wrong value, a refused option, a broken setting: the full CLI words it
            invocation = None
        if invocation is not None:
            return guarded(lambda: apply_command(invocation, peer), wants_json=False)
    from l2tproute.fronts.cli import run as run_cli

    return run_cli(argv)


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
