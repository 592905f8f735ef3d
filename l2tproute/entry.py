"""Console entry point: the full typer CLI (a lean path for `list` is in fastpath.py)."""

import sys


def main() -> None:
    from .cli import run

    sys.exit(run())


if __name__ == "__main__":
    main()
