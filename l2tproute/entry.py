"""Console entry point: the lean paths for `list` and `apply` first, the full typer CLI for everything else.

Keep this module's imports to `sys`: it is loaded on every call, and the panel's
`list --peer` must not pay for typer (see fastpath.py).
"""

import sys


def run(argv) -> int:
    """The exit status of `l2tp-routectl ARGV`: the fast path when it answers, else the full CLI."""
    from .fastpath import run_fast

    code = run_fast(argv)
    if code is None and list(argv)[:1] == ["apply"]:
        from .fastapply import run_fast as run_fast_apply

        code = run_fast_apply(argv)
    if code is None:
        from .cli import run as run_cli

        code = run_cli(argv)
    return code


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
