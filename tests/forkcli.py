"""Run `l2tp-routectl ARGV` in a forked child of the test process.

The child runs exactly what the console script runs (`entry.run`, fast path and
full CLI) with its own stdout, stderr and exit status, so a test can run hundreds
of commands (or SIGKILL them) without paying an interpreter start and the typer
import each time. What is lost against a real exec is only the interpreter start;
tests that need that run the installed script too.

An exception that escapes `entry.run` is printed as Python would print it
(a traceback on stderr, exit status 1), so "no traceback" checks stay honest.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import tempfile
import traceback
from dataclasses import dataclass
from typing import Callable

from l2tproute.fronts import entry


def _warm_up() -> None:
    """Import here, once, what the CLI imports lazily (typer loads pydantic at parse time).

    The commands fail validation, so nothing runs `ip` and no thread is left in this
    process to be forked.
    """
    import filelock  # noqa: F401
    import sh  # noqa: F401

    from l2tproute.fronts import cli  # noqa: F401
    from l2tproute.fronts import link_events as hook  # noqa: F401
    from l2tproute.ops import (
        adding,  # noqa: F401
        applying,  # noqa: F401
        deleting,  # noqa: F401
        listing,  # noqa: F401
        status,  # noqa: F401
    )

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        for argv in (["add", "--peer", "x", "--dst", "y"], ["del", "--peer", "x", "--dst", "y"],
                     ["list", "--peer", "x"], ["apply", "--peer", "x"], ["status", "--peer", "x"], ["--help"]):
            cli.run(argv)


_warm_up()


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")


def _child(argv: list[str], env: dict[str, str] | None, out_fd: int, err_fd: int,
           before: Callable[[], None] | None) -> None:
    """Never returns: the child ends with os._exit, so no pytest teardown runs twice."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        # pytest's capture objects are the parent's; the child talks to its own fds as python would.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", line_buffering=False)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.argv = ["l2tp-routectl", *argv]
        if before is not None:
            before()
        try:
            result = entry.run(list(argv))
            code = result if isinstance(result, int) else 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: B902 - print it the way the interpreter would
            traceback.print_exc()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                code = code or 1
    finally:
        os._exit(code)


def spawn(argv: list[str], *, env: dict[str, str] | None = None,
          before: Callable[[], None] | None = None, out_fd: int | None = None,
          err_fd: int | None = None) -> int:
    """Start the child; returns its pid. Output goes to the given fds (default /dev/null)."""
    null = None
    if out_fd is None or err_fd is None:
        null = os.open(os.devnull, os.O_WRONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(argv, env, out_fd if out_fd is not None else null, err_fd if err_fd is not None else null, before)
    if null is not None:
        os.close(null)
    return pid


def exit_status(wait_status: int) -> int:
    """Like subprocess: the exit code, or -SIGNAL."""
    if os.WIFSIGNALED(wait_status):
        return -os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def run(argv: list[str], *, env: dict[str, str] | None = None,
        before: Callable[[], None] | None = None) -> Result:
    """Run to the end and collect everything."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = spawn(argv, env=env, before=before, out_fd=out.fileno(), err_fd=err.fileno())
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return Result(exit_status(status), out.read(), err.read())
