"""The panel's read path: `list` and `list --peer IP` without loading the full CLI.

The panel runs `sudo l2tp-routectl list --peer IP` once per user row on every page
render, so this path imports nothing but `os` (no typer, click, sh, filelock, and
not even re, ipaddress, typing or dataclasses: each of those costs more than the
whole read). It answers only what it fully understands: exactly `list`,
`list --peer IP` or `list --peer=IP`, a valid peer, and readable regular files.
Everything else (--json, --help, a bad peer, an unreadable file, an odd entry in
the store...) returns None, and the caller runs the full CLI, which prints exactly
what it always prints.

A file whose every line is a route line written as the tool writes it, a comment
or a blank line has nothing to warn about, and that is checked here. For any other
file the warnings come from the real parser (routefile, loaded only then), so the
text and the warnings are always those of the full CLI; tests/test_fastpath.py
compares the two over many command lines and files.
"""

import os
import sys

from . import constants as C

_DIGITS = frozenset(b"0123456789")
_IFNAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+@-")
#: click's shell-completion switch for this program: when set, the full CLI completes instead.
_COMPLETION_VAR = "_" + C.PROG.replace("-", "_").upper() + "_COMPLETE"


def run_fast(argv):
    """The exit status after handling `argv` completely, or None: run the full CLI."""
    if sys.stdout is None:  # started with fd 1 closed: whatever the full CLI does about it
        return None
    try:
        answer = _dispatch(argv)
    except Exception:  # anything unexpected: nothing was printed yet, the full CLI decides
        return None
    except KeyboardInterrupt:  # as the full CLI: status 1, no traceback
        return C.EXIT_FAILURE
    if answer is None:
        return None
    # Printed only once the whole answer is known, so the full CLI never runs after a partial answer.
    text, warnings = answer
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
        for line in warnings:
            print(f"{C.PROG}: warning: {line}", file=sys.stderr)
    except BrokenPipeError:  # the reader went away: status 1 and silence, as the full CLI (click)
        _discard_output()
        return C.EXIT_FAILURE
    except KeyboardInterrupt:
        return C.EXIT_FAILURE
    return C.EXIT_OK


def _discard_output():
    # What is still buffered would fail again in Python's flush at exit and print
    # "Exception ignored ... BrokenPipeError"; click silences the same way.
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def _dispatch(argv):
    """(stdout bytes, warnings) exactly as the full CLI would print them, or None."""
    if not argv or argv[0] != "list" or _COMPLETION_VAR in os.environ:
        return None
    if len(argv) == 1:
        return _list_all(_store_dir())
    if len(argv) == 2 and argv[1].startswith("--peer="):
        peer = argv[1][len("--peer="):]
    elif len(argv) == 3 and argv[1] == "--peer":
        peer = argv[2]
    else:
        return None
    return _list_peer(_store_dir(), peer)


def _store_dir():
    # Same rule as store.store_dir_from_environment (tests hold the two together).
    environ = os.environ
    if "SUDO_UID" in environ or "SUDO_USER" in environ:
        return C.DEFAULT_STORE_DIR
    return environ.get(C.STORE_DIR_ENV) or C.DEFAULT_STORE_DIR


# -- values -------------------------------------------------------------------

def _quad(word):
    """The address of a dotted quad written as the tool writes it (bytes), or None."""
    parts = word.split(b".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not 0 < len(part) <= 3 or not _DIGITS.issuperset(part) or (part[0] == 48 and len(part) > 1):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def _unicast(value):
    """What model._check_unicast accepts: not 0/8, 127/8, 224/4 (multicast) or 240/4 (reserved)."""
    first = value >> 24
    return first != 0 and first != 127 and first < 224


def _peer(text):
    """A peer as model.parse_peer accepts it (bytes, exactly as str(IPv4Address) writes it), or None."""
    try:
        word = text.encode("ascii")
    except UnicodeError:
        return None
    value = _quad(word)
    return (word, value) if value is not None and _unicast(value) else None


def _destination(word):
    addr, slash, prefix = word.partition(b"/")
    value = _quad(addr)
    if value is None or not slash or not prefix or not _DIGITS.issuperset(prefix) \
            or (prefix[0] == 48 and len(prefix) > 1) or len(prefix) > 2 or int(prefix) > 32:
        return False
    host_bits = (1 << (32 - int(prefix))) - 1
    return value & host_bits == 0


def _clean_route(raw):
    """`DST via GW` or `DST via GW dev IFACE` exactly as format_route writes an IPv4 route, plus LF."""
    if not raw.endswith(b"\n"):
        return False
    words = raw[:-1].split(b" ")
    if len(words) == 5:
        dev = words[4]
        if words[3] != b"dev" or not 0 < len(dev) <= 15 or not _IFNAME_BYTES.issuperset(dev) or dev in (b".", b".."):
            return False
    elif len(words) != 3:
        return False
    gateway = _quad(words[2])
    return words[1] == b"via" and gateway is not None and _unicast(gateway) and _destination(words[0])


def _clean_line(raw):
    """True only for lines routefile.problems() has nothing to say about."""
    if _clean_route(raw):
        return True
    if not raw.isascii():
        return False
    if raw.lstrip(b" \t").startswith(b"#"):
        return True  # a comment (even as the last line without LF)
    if not raw.endswith(b"\n"):
        return False
    body = raw[:-1]
    if body.endswith(b"\r"):
        body = body[:-1]
    return not body.strip(b" \t")  # a blank line


def _is_clean(data):
    lines = data.split(b"\n")  # LF only, as routefile.split_lines
    last = lines.pop()
    return all(_clean_line(raw + b"\n") for raw in lines) and (not last or _clean_line(last))


def _warnings(directory, peer, data):
    """What the full CLI warns about this file (the real parser, loaded only for odd files)."""
    if _is_clean(data):
        return []
    from .routefile import parse, problems

    return problems(parse(data), os.path.join(directory, peer.decode() + C.ROUTE_FILE_SUFFIX))


# -- the store ----------------------------------------------------------------

def _read(path):
    """The bytes of a regular file, None when it does not exist; raises _Odd for anything else."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError:
        raise _Odd() from None
    try:
        info = os.fstat(fd)
        if (info.st_mode & 0o170000) != 0o100000 or info.st_size > C.MAX_ROUTE_FILE_BYTES:
            raise _Odd()
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except OSError:
        raise _Odd() from None
    finally:
        os.close(fd)


class _Odd(Exception):
    """Something the full CLI reports in its own words."""


def _terminated(data):
    return data if not data or data.endswith(b"\n") else data + b"\n"


# -- the commands -------------------------------------------------------------

def _list_peer(directory, text):
    peer = _peer(text)
    if peer is None:
        return None  # the full CLI words the error
    word = peer[0]
    try:
        data = _read(os.path.join(directory, word.decode() + C.ROUTE_FILE_SUFFIX))
    except _Odd:
        return None
    if data is None:
        return b"No routes found for peer: " + word + b"\n", []
    warnings = _warnings(directory, word, data)
    return b"Routes for peer " + word + b":\n" + _terminated(data), warnings


def _list_all(directory):
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        entries = []
    except OSError:
        return None
    suffix = C.ROUTE_FILE_SUFFIX
    found = []
    for entry in entries:
        name = entry.name
        if not name.endswith(suffix) or name.startswith("."):
            continue
        peer = _peer(name[: -len(suffix)])
        if peer is None or entry.is_symlink() or not entry.is_file(follow_symlinks=False):
            return None  # the full CLI warns about this entry
        try:
            data = _read(entry.path)
        except _Odd:
            return None
        if data is not None:
            found.append((peer[1], peer[0], data))
    if not found:
        return b"No routes found\n", []
    found.sort()
    parts = [b"All routes:\n"]
    warnings = []
    for _value, word, data in found:
        parts += [b"Peer: " + word + b"\n", _terminated(data), b"\n"]
        warnings += _warnings(directory, word, data)
    return b"".join(parts), warnings
