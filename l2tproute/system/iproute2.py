"""The iproute2 runner: the only code that builds or runs an `ip` command.

Commands are argument lists. Routes are read with `ip -json -N` where `ip` has -N
(iproute2 5.3 and later); an older `ip` (Ubuntu 18.04 has 4.15) prints them in text,
which system/iptext.py reads into the same rows, so core/kernel.py types both the same
way. Which one this `ip` is, a runner learns from its first route read (sent with -N).
Links and addresses are `ip -json addr` on every version (4.15 has it). Bulk changes
go through one `ip -force -batch -`, and every token of a batch line is checked before
it is joined, so no value can become a second argument or a second command.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from l2tproute.core import constants as C
from l2tproute.core import errors
from l2tproute.core.errors import IpError
from l2tproute.core.model import Change, Failure, KernelRoute, Network
from l2tproute.core.tables import protocol_numbers, table_names
from l2tproute.core.text import show
from l2tproute.system.iptext import Names, parse_routes_text
from l2tproute.system.settings import setting

__all__ = ["DryRun", "IpError", "IpRoute2", "RouteRead", "Runner", "change_line", "change_tokens", "is_gone_error",
           "is_no_device_error", "is_no_route_error", "is_taken_slot_error", "route_show_args", "route_tokens"]


_VERBS = ("add", "replace", "del")
# What may appear as one token of an `ip` command built from our values.
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.:/+@-]{1,64}", re.ASCII)


def route_tokens(route: KernelRoute) -> list[str]:
    """The one place a route becomes `ip route` arguments."""
    tokens = [str(route.dst)]
    if route.gw is not None:
        tokens += ["via", str(route.gw)]
    tokens += ["dev", route.dev, "proto", str(C.RT_PROTO)]
    if route.metric is not None:
        tokens += ["metric", str(route.metric)]
    if route.table is not None:
        tokens += ["table", route.table]
    return tokens


def route_show_args(family: int, *, tagged: bool, dev: str | None = None, exact: Network | None = None,
                    main_boot: bool = False, root: Network | None = None, main_kernel: bool = False,
                    text: bool = False) -> list[str]:
    """The arguments of one `ip route show` read (Runner.read_routes says what each filter means);
    `text`: for an `ip` without -N, which prints text."""
    return [f"-{family}"] + ([] if text else ["-json", "-N"]) + _route_show_filters(
        tagged=tagged, dev=dev, exact=exact, main_boot=main_boot, root=root, main_kernel=main_kernel)


def _route_show_filters(*, tagged: bool, dev: str | None = None, exact: Network | None = None,
                        main_boot: bool = False, root: Network | None = None, main_kernel: bool = False) -> list[str]:
    args = ["route", "show", "table", "all"]
    if main_boot or main_kernel:
        args[-1:] = ["main", "proto", "boot" if main_boot else "kernel"]
    if tagged:
        args += ["proto", str(C.RT_PROTO)]
    if dev is not None:
        args += ["dev", _checked_token(dev)]
    if exact is not None:
        args += ["exact", str(exact)]
    if root is not None:
        args += ["root", str(root)]
    return args


@dataclass(frozen=True)
class RouteRead:
    """One read of Runner.read_route_sets: the filters of read_routes that a batch of reads carries."""

    family: int
    tagged: bool
    dev: str | None = None
    exact: Network | None = None


#: A batch line has no -4 or -6 of its own: a prefix names the family, and a read of every
#: prefix (no `exact`) asks for those under the family's whole root, which `ip` 5.3 to 6.15
#: answers as it answers -4 or -6 (tests/netns/test_iproute2_versions.py).
_FAMILY_ROOT = {4: "0.0.0.0/0", 6: "::/0"}


def route_read_line(read: RouteRead) -> str:
    """One read as a line of `ip -json -N -batch -`, every token checked."""
    tokens = _route_show_filters(tagged=read.tagged, dev=read.dev, exact=read.exact)
    if read.exact is None:
        tokens += ["root", _FAMILY_ROOT[read.family]]
    elif read.exact.version != read.family:
        raise ValueError(f"refusing a read of {read.exact} as IPv{read.family}")
    return _checked_line(tokens)


def _checked_token(token: str) -> str:
    if not _SAFE_TOKEN.fullmatch(token) or token.startswith("-"):
        # Link names come from the kernel or a validated line; reaching this is a bug, never input.
        raise ValueError(f"refusing unsafe ip token {show(token)}")
    return token


# A line of such tokens joined by single spaces: with exactly one space fewer than tokens, it
# proves every token safe in one match (a token with a space in it adds a space; an empty one
# leaves two in a row, or one at an end), where a match per token cost a tenth of a full apply.
_SAFE_LINE = re.compile(r"[A-Za-z0-9_.:/+@-]{1,64}(?: [A-Za-z0-9_.:/+@-]{1,64})*", re.ASCII)


def change_tokens(change: Change) -> list[str]:
    return change_line(change).split(" ")


def change_line(change: Change) -> str:
    """The `ip` arguments of a change as one line of an `ip -batch`, every token checked."""
    if change.verb not in _VERBS:
        raise ValueError(f"unknown route verb {show(change.verb)}")
    return _checked_line(["route", change.verb] + route_tokens(change.route))


def _checked_line(tokens: list[str]) -> str:
    line = " ".join(tokens)
    if _SAFE_LINE.fullmatch(line) is None or line.count(" ") != len(tokens) - 1:
        for token in tokens:
            if not _SAFE_TOKEN.fullmatch(token):
                # Values are validated at the edge; reaching this is a bug, never input.
                raise ValueError(f"refusing unsafe ip token {show(token)}")
    return line


class Runner(ABC):
    """What the library needs from the kernel; tests and --dry-run use the same interface."""

    netns: str | None = None

    @abstractmethod
    def read_links(self) -> list:
        """`ip -json addr show`."""

    @abstractmethod
    def read_routes(self, family: int, *, tagged: bool, dev: str | None = None,
                    exact: Network | None = None, main_boot: bool = False, root: Network | None = None,
                    main_kernel: bool = False) -> list:
        """`ip -json -N route show table all` for one family (those rows also when an older ip printed text),
        optionally only our tag / a link / a prefix (`exact`) / the prefix and every network inside it
        (`root`); `main_boot`: only the `proto boot` routes of table main (what a plain `ip route add`
        makes, as the old tool did), filtered by the kernel; `main_kernel`: likewise the `proto kernel`
        routes of table main (a link's own networks)."""

    def read_route_sets(self, reads: Sequence[RouteRead]) -> list[list]:
        """Several read_routes at once, their rows in the order asked; an `ip` that can answers them
        in one process. A read that fails fails the call, as read_routes would have."""
        return [self.read_routes(r.family, tagged=r.tagged, dev=r.dev, exact=r.exact) for r in reads]

    @abstractmethod
    def read_addrs(self, dev: str) -> list:
        """`ip -json addr show dev DEV`: one link and its addresses, whatever the number of links."""

    @abstractmethod
    def route_get(self, address: ipaddress.IPv4Address) -> list:
        """`ip -json route get ADDRESS` (those rows also when an older ip printed text): the kernel's own
        lookup of where it sends that address."""

    @abstractmethod
    def change(self, change: Change) -> None:
        """Run one change; IpError when the kernel refuses it."""

    @abstractmethod
    def batch(self, changes: Sequence[Change]) -> list[Failure]:
        """Run many changes in one process; every refused one comes back with its message."""

    def describe(self, change: Change) -> str:
        prefix = ["ip"] + (["-n", self.netns] if self.netns else [])
        return " ".join(prefix + change_tokens(change))


_SYSTEM_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"


def _ip_path() -> str:
    """Where `ip` is; IpError naming what to do when it is missing or cannot be run."""
    chosen = setting(C.IP_BINARY_ENV, "")
    if chosen:
        if not (os.path.isabs(chosen) and os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise errors.ip_binary_env(C.IP_BINARY_ENV, chosen)
        return chosen
    # pppd clears the environment of its hooks, so PATH may be missing.
    search = os.pathsep.join(filter(None, [os.environ.get("PATH"), _SYSTEM_PATH]))
    found = shutil.which(C.IP_BINARY, path=search)
    if found:
        return found
    for directory in search.split(os.pathsep):
        candidate = os.path.join(directory, C.IP_BINARY)
        if directory and os.path.exists(candidate):  # a dangling link is a missing ip
            raise errors.ip_not_runnable(candidate)
    raise errors.ip_missing(_SYSTEM_PATH)


_CHUNK = 1 << 16
_FAILED_LINE = re.compile(r"^Command failed -:(\d+)$")
#: What an `ip` without -N (before iproute2 5.3) says to `ip -N -V`.
_NO_NUMERIC = 'Option "-N" is unknown'


class IpRoute2(Runner):
    def __init__(self, netns: str | None = None, timeout: float = C.IP_TIMEOUT,
                 batch_timeout: float = C.IP_BATCH_TIMEOUT):
        import sh

        self._sh = sh
        self.netns = netns
        self.timeout = timeout
        self.batch_timeout = batch_timeout
        prefix = ["-n", netns] if netns else []
        #: None until a read (or `ip -N -V`) told; then whether this `ip` prints routes only as text.
        self._text: bool | None = None
        self._names: Names | None = None
        self.program = _ip_path()
        try:
            self._ip = sh.Command(self.program).bake(*prefix)
        except sh.CommandNotFound:  # gone or made unrunnable since it was found
            raise errors.ip_not_runnable(self.program) from None

    def _run(self, args: list[str], *, stdin: str | None = None, timeout: float | None = None):
        sh = self._sh
        limit = timeout or self.timeout
        try:
            cmd = self._ip(*args, _in=stdin, _bg=True, _bg_exc=False, _ok_code=list(range(256)),
                           _env={"LC_ALL": "C", "PATH": "/usr/sbin:/sbin:/usr/bin:/bin"},
                           # No _return_cmd: _bg returns the running command in sh 1.14 and 2.x
                           # alike, and sh 1.14 (Python 3.8.0) would pass it on to ip as an option.
                           _decode_errors="replace",
                           # A pipe, not sh's default pty: ip's output is data, and a pty
                           # made reading 10,000 routes' JSON half again as slow.
                           _tty_out=False,
                           # Read in 64 KiB chunks, not sh's default 1 KiB lines: each chunk is
                           # a trip through sh's reader thread, which must take the GIL.
                           _out_bufsize=_CHUNK, _err_bufsize=_CHUNK)
        except sh.CommandNotFound:
            raise errors.ip_not_runnable(self.program) from None
        except sh.ForkException:  # the kernel refused to run it (a bad interpreter, a broken file)
            raise errors.ip_not_runnable(self.program) from None
        except OSError as exc:  # no pipe, no process: too many open files or processes, no memory
            raise errors.ip_cannot_start(self.program, exc) from None
        # Not sh's _timeout: its watcher thread polls every 0.1 s and is joined when ip
        # exits, which added up to 100 ms to every call (several per command).
        expired = threading.Event()
        timer = threading.Timer(limit, _kill, (cmd, expired))
        timer.daemon = True
        timer.start()
        try:
            cmd.wait()
        except sh.SignalException as exc:
            if expired.is_set():
                raise errors.ip_timeout(_shown_command(args), limit) from None
            raise errors.ip_killed(_shown_command(args), -exc.exit_code) from None
        except BaseException:  # e.g. the hook's deadline: never leave an ip running behind us
            _kill(cmd, expired)
            raise
        finally:
            timer.cancel()
        return cmd

    def _read_text(self, args: list[str]) -> str:
        return self._output(args, self._run(args))

    def _output(self, args: list[str], cmd) -> str:
        if cmd.exit_code != 0:
            self._raise_silent(args, cmd)
            raise IpError(f"ip {' '.join(args)} failed: {_first_line(cmd.stderr)}")
        return _text(cmd.stdout).strip()

    def _read_json(self, args: list[str]) -> list:
        return _json_of(args, self._read_text(args))

    def prints_text(self) -> bool:
        """Whether this `ip` lacks -N (iproute2 before 5.3, so also route JSON before 4.17): asked
        (`ip -N -V`) only when no route read told yet."""
        if self._text is None:
            args = ["-N", "-V"]
            cmd = self._run(args)
            if cmd.exit_code == 0:
                self._text = False
            elif not self._learned_text(cmd):
                self._output(args, cmd)
        return self._text

    def _learned_text(self, cmd) -> bool:
        """True, from now on, when `ip` failed for not knowing -N."""
        if _NO_NUMERIC not in _text(cmd.stderr):
            return False
        self._text = True
        self._names = Names(protocol_numbers(), table_names())
        return True

    def _read_addr_rows(self, args: list[str]) -> list:
        # iproute2 4.15 prints an empty row ({"addr_info": [{}]}) for each link a `dev` filter left out.
        return [row for row in self._read_json(args) if row.get("ifname")]

    def read_links(self) -> list:
        return self._read_addr_rows(["-json", "addr", "show"])

    def read_routes(self, family: int, *, tagged: bool, dev: str | None = None,
                    exact: Network | None = None, main_boot: bool = False, root: Network | None = None,
                    main_kernel: bool = False) -> list:
        filters = dict(tagged=tagged, dev=dev, exact=exact, main_boot=main_boot, root=root, main_kernel=main_kernel)
        if not self._text:
            # The first read also asks whether this `ip` has -N: one process, not two.
            args = route_show_args(family, **filters)
            cmd = self._run(args)
            if cmd.exit_code == 0 or not self._learned_text(cmd):
                rows = _json_of(args, self._output(args, cmd))
                self._text = False
                return rows
        return parse_routes_text(self._read_text(route_show_args(family, text=True, **filters)), self._names)

    def read_route_sets(self, reads: Sequence[RouteRead]) -> list[list]:
        if len(reads) < 2 or self._text:
            return super().read_route_sets(reads)
        args = ["-json", "-N", "-batch", "-"]
        cmd = self._run(args, stdin="".join(route_read_line(read) + "\n" for read in reads))
        if cmd.exit_code != 0:
            # The batch stops at a read that fails (a link gone meanwhile), or this `ip` has no -N:
            # then each read alone says what it always said.
            self._learned_text(cmd)
            return super().read_route_sets(reads)
        self._text = False
        found = _json_arrays(args, _text(cmd.stdout))
        if len(found) != len(reads):
            raise IpError(f"ip {' '.join(args)} answered {len(found)} of {len(reads)} reads")
        return found

    def read_addrs(self, dev: str) -> list:
        return self._read_addr_rows(["-json", "addr", "show", "dev", _checked_token(dev)])

    def route_get(self, address: ipaddress.IPv4Address) -> list:
        if self.prints_text():
            return parse_routes_text(self._read_text(["route", "get", str(address)]), self._names, numeric=False)
        return self._read_json(["-json", "route", "get", str(address)])

    def change(self, change: Change) -> None:
        tokens = change_tokens(change)
        cmd = self._run(tokens)
        if cmd.exit_code != 0:
            self._raise_silent(tokens, cmd)
            raise IpError(_clean_message(cmd.stderr))

    def batch(self, changes: Sequence[Change]) -> list[Failure]:
        if not changes:
            return []
        text = "".join(change_line(c) + "\n" for c in changes)
        try:
            cmd = self._run(["-force", "-batch", "-"], stdin=text, timeout=self.batch_timeout)
        except IpError as exc:
            return [Failure(c, str(exc)) for c in changes]
        if cmd.exit_code == 0:
            return []
        try:
            self._raise_silent(["-force", "-batch", "-"], cmd)
        except IpError as exc:
            return [Failure(c, str(exc)) for c in changes]
        return _batch_failures(changes, _text(cmd.stderr))

    def _raise_silent(self, args: list[str], cmd) -> None:
        """ip always says why it fails: a failure without a word is a broken or replaced ip."""
        if not _text(cmd.stderr).strip():
            raise errors.ip_silent(_shown_command(args), self.program, cmd.exit_code)


def _kill(cmd, expired: threading.Event) -> None:
    expired.set()
    with contextlib.suppress(Exception):  # it may have just exited: nothing to stop
        cmd.signal(signal.SIGKILL)


def _shown_command(args: list[str]) -> str:
    return " ".join(["ip"] + args[:4])


def _text(data) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")


def _json_of(args: list[str], text: str) -> list:
    if not text:
        return []
    try:
        return json.loads(text)
    except ValueError:
        raise IpError(f"ip {' '.join(args)} printed something that is not JSON") from None


def _json_arrays(args: list[str], text: str) -> list[list]:
    """The JSON arrays an `ip -json -batch` prints, one per command, one after another."""
    decoder = json.JSONDecoder()
    found: list[list] = []
    at, end = 0, len(text)
    try:
        while True:
            while at < end and text[at].isspace():
                at += 1
            if at == end:
                return found
            rows, at = decoder.raw_decode(text, at)
            if not isinstance(rows, list):
                raise ValueError(rows)
            found.append(rows)
    except ValueError:
        raise IpError(f"ip {' '.join(args)} printed something that is not JSON") from None


def _first_line(data) -> str:
    lines = [line for line in _text(data).splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _clean_message(data) -> str:
    seen: list[str] = []
    for line in _text(data).splitlines():
        line = line.strip()
        if line and line not in seen:
            seen.append(line)
    return "; ".join(seen) or "ip failed without a message"


def _batch_failures(changes: Sequence[Change], stderr: str) -> list[Failure]:
    """Map `Command failed -:N` back to the Nth change, with the messages printed before it."""
    failures: list[Failure] = []
    pending: list[str] = []
    for line in stderr.splitlines():
        match = _FAILED_LINE.match(line.strip())
        if match:
            index = int(match.group(1)) - 1
            if 0 <= index < len(changes):
                failures.append(Failure(changes[index], _clean_message("\n".join(pending))))
            pending = []
        elif line.strip():
            pending.append(line)
    if not failures:
        failures = [Failure(c, _clean_message(stderr)) for c in changes]
    return failures


class DryRun(Runner):
    """Reads the real state, prints the changes instead of making them."""

    def __init__(self, inner: Runner):
        self.inner = inner
        self.netns = inner.netns
        self.planned: list[str] = []

    def read_links(self) -> list:
        return self.inner.read_links()

    def read_routes(self, family: int, **kwargs) -> list:
        return self.inner.read_routes(family, **kwargs)

    def read_route_sets(self, reads: Sequence[RouteRead]) -> list[list]:
        return self.inner.read_route_sets(reads)

    def read_addrs(self, dev: str) -> list:
        return self.inner.read_addrs(dev)

    def route_get(self, address) -> list:
        return self.inner.route_get(address)

    def change(self, change: Change) -> None:
        self.planned.append(self.describe(change))

    def batch(self, changes: Sequence[Change]) -> list[Failure]:
        self.planned.extend(self.describe(c) for c in changes)
        return []


def is_taken_slot_error(message: str) -> bool:
    """`ip route add` refused because some route already holds that slot."""
    return "File exists" in message


def is_gone_error(message: str) -> bool:
    """`ip route del` found no such route: somebody (the kernel, with its link) removed it first."""
    return "No such process" in message


def is_no_route_error(message: str) -> bool:
    """`ip route get` found no way to the address (no route, or an unreachable/prohibit/blackhole one)."""
    return "RTNETLINK answers" in message


def is_no_device_error(message: str) -> bool:
    """A read named a link that is gone (a session that ended meanwhile)."""
    return "Cannot find device" in message or "does not exist" in message
