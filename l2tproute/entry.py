"""Console entry point: the timer's `apply` without typer, every other command line through the CLI.

Keep this module's imports to `os` and `sys`: it is loaded on every call. Loading typer
costs about a tenth of a second, a fifth of a steady-state apply at 10,000 routes, so
the command lines the timer and the panel send to `apply` are recognised here and run
by the same function and the same error handling as the full CLI. The panel's hot read,
`list --peer`, never reaches Python at all: bin/l2tp-routectl answers it in POSIX sh.
"""

import os
import sys

#: click's shell-completion switch for this program: when set, the full CLI completes instead.
_COMPLETION_VAR = "_L2TP_ROUTECTL_COMPLETE"


def lean_apply_peer(argv):
    """(True, peer text or None) for `apply` / `apply --peer IP` / `apply --peer=IP`, else (False, None)."""
    if sys.stdout is None or _COMPLETION_VAR in os.environ or not argv or argv[0] != "apply":
        return False, None
    if len(argv) == 1:
        return True, None
    if len(argv) == 2 and argv[1].startswith("--peer=") and len(argv[1]) > len("--peer="):
        return True, argv[1][len("--peer="):]
    if len(argv) == 3 and argv[1] == "--peer" and not argv[2].startswith("-"):
        return True, argv[2]
    return False, None


def run(argv) -> int:
    """The exit status of `l2tp-routectl ARGV`."""
    argv = list(argv)
    lean, peer_text = lean_apply_peer(argv)
    if lean:
        from .model import InputError, parse_peer

        try:
            peer = parse_peer(peer_text) if peer_text is not None else None
        except InputError:
            peer = lean = False  # the full CLI words the error
        if lean:
            from .session import Session, apply_command, guarded

            return guarded(lambda: apply_command(Session(False, False, None), peer), wants_json=False)
    from .cli import run as run_cli

    return run_cli(argv)


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
