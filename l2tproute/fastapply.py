"""The timer's and the panel's `apply` without loading typer and click.

Loading the full CLI costs about a tenth of a second, an eighth of a steady-state
apply at 10,000 routes. This path answers only what it fully understands:
`apply`, with at most `--peer IP` and `--netns NAME` (each once, as `--opt VALUE`
or `--opt=VALUE`), a valid peer and namespace name, and no shell-completion request.
Everything else returns None before anything is read or changed, and the caller
runs the full CLI. Once the apply has started, every outcome is turned into the
exit status and text the full CLI gives for it (typer's handling of an interrupt, a
closed pipe or EOF included); tests/test_fastapply.py compares the two.
"""

from __future__ import annotations

import errno
import os
import sys

from . import constants as C

_OPTIONS = ("--peer", "--netns")
#: click's shell-completion switch for this program: when set, the full CLI completes instead.
_COMPLETION_VAR = "_" + C.PROG.replace("-", "_").upper() + "_COMPLETE"


def _options(argv):
    """{option: value} of an `apply` command line this path handles, else None."""
    if not argv or argv[0] != "apply":
        return None
    found = {}
    rest = list(argv[1:])
    while rest:
        word = rest.pop(0)
        name, eq, value = word.partition("=")
        if name not in _OPTIONS or name in found:
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if not value or value.startswith("-"):
            return None
        found[name] = value
    return found


def run_fast(argv):
    """The exit status after handling `argv` completely, or None: run the full CLI."""
    if sys.stdout is None or _COMPLETION_VAR in os.environ:
        return None
    options = _options(list(argv))
    if options is None:
        return None
    try:
        from .applycmd import apply_command
        from .model import parse_peer
        from .session import Session

        peer = options.get("--peer")
        p = parse_peer(peer) if peer is not None else None
        session = Session(False, False, options.get("--netns"))
    except Exception:  # a bad value or store setting: nothing was done, the full CLI says what is wrong
        return None
    return _run(apply_command, session, p)


def _run(apply_command, session, p) -> int:
    from .session import fail, fail_with

    try:
        return apply_command(session, p)
    # What typer's main does with these before the full CLI's own handlers see anything:
    except EOFError:
        print(file=sys.stderr)
        return fail("interrupted", C.EXIT_FAILURE, False)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            _pacify()
            return C.EXIT_FAILURE
        return fail_with(exc, False)
    except Exception as exc:  # what cli.run does with the rest
        return fail_with(exc, False)


def _pacify() -> None:
    # As click after a closed pipe: what is still buffered must not fail again at exit.
    from typer._click.utils import PacifyFlushWrapper

    sys.stdout = PacifyFlushWrapper(sys.stdout)
    sys.stderr = PacifyFlushWrapper(sys.stderr)
