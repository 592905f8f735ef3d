"""`--user NAME`: a user's peer address, read from /etc/ppp/chap-secrets as pppd reads it.

pppd's rules (options.c getword, auth.c scan_authfile): words are separated by white
space; `#` outside a word or quotes starts a comment; "..." and '...' group words;
a backslash escapes the next character (C escapes, `\\s` for a space, octal, `\\x`
hex) and backslash-newline joins two lines. An entry starts with the first word of
a line: client, server, secret, then the allowed addresses up to the end of the
line or a `--` word (what follows `--` are options). `*` allows any address; `-`,
or no address at all, allows none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from l2tproute.core import constants as C
from l2tproute.core.errors import StoreError, os_fault_line
from l2tproute.core.model import InputError, IPv4Address, parse_peer
from l2tproute.core.text import path_text, show
from l2tproute.system.settings import setting

DEFAULT_CHAP_SECRETS = "/etc/ppp/chap-secrets"
#: pppd's MAXWORDLEN: longer words are cut to one byte less.
MAX_WORD = 1024
#: A secrets file is a few hundred lines; anything much bigger is not one.
MAX_SECRETS_BYTES = 64 << 20

_SPACE = b" \t\n\v\f\r"
_ESCAPES = {ord("a"): 7, ord("b"): 8, ord("f"): 12, ord("n"): 10, ord("r"): 13, ord("s"): 32, ord("t"): 9}
_OCTAL = b"01234567"
_HEX = b"0123456789abcdefABCDEF"


class SecretsError(StoreError):
    """chap-secrets cannot be read (exit status 1)."""


@dataclass(frozen=True)
class Word:
    text: bytes
    starts_line: bool  # a newline came before it (or it is the file's first word)
    line: int


@dataclass(frozen=True)
class Entry:
    client: bytes
    server: bytes
    addresses: tuple[bytes, ...]  # the words after the secret, up to `--`
    line: int


def words(data: bytes) -> Iterator[Word]:
    """The words of a pppd options or secrets file, exactly as pppd's getword splits them."""
    pos, end, line = 0, len(data), 1
    first = True
    while True:
        newline, escape, comment = False, False, False
        c = -1
        while pos < end:  # white space and comments before the word
            c = data[pos]
            pos += 1
            if c == 10:
                line += 1
                if escape:
                    escape = False
                else:
                    newline, comment = True, False
                c = -1
                continue
            if comment:
                c = -1
                continue
            if escape:
                break
            if c == 92:  # backslash
                escape = True
                c = -1
                continue
            if c == 35:  # '#'
                comment = True
                c = -1
                continue
            if c not in _SPACE:
                break
            c = -1
        if c < 0:
            return
        start_line = line
        quote = None
        if not escape and c in (34, 39):
            quote = c
            c = data[pos] if pos < end else -1
            pos += 1
        word = bytearray()
        while c >= 0:
            if escape:
                escape = False
                if c == 10:
                    c, pos = _next(data, pos)
                    continue
                if c in _OCTAL:
                    value = 0
                    for _ in range(3):
                        if c < 0 or c not in _OCTAL:
                            break
                        value = (value << 3) | (c & 7)
                        c, pos = _next(data, pos)
                    word.append(value & 0xFF)
                    continue
                if c == ord("x"):
                    value = 0
                    c, pos = _next(data, pos)
                    for _ in range(2):
                        if c < 0 or c not in _HEX:
                            break
                        value = (value << 4) | int(chr(c), 16)
                        c, pos = _next(data, pos)
                    word.append(value & 0xFF)
                    continue
                word.append(_ESCAPES.get(c, c))
                c, pos = _next(data, pos)
                continue
            if quote is not None:
                if c == quote:
                    break
            elif c in _SPACE or c == 35:
                pos -= 1  # ungetc: the next word's scan sees it
                break
            if c == 92:
                escape = True
                c, pos = _next(data, pos)
                continue
            word.append(c)
            c, pos = _next(data, pos)
        if c < 0 and not word:
            return
        # pppd keeps MAXWORDLEN-1 bytes, and a C string ends at a NUL made by an escape.
        yield Word(bytes(word[: MAX_WORD - 1]).split(b"\0", 1)[0], newline or first, start_line)
        first = False


def _next(data: bytes, pos: int) -> tuple[int, int]:
    return (data[pos], pos + 1) if pos < len(data) else (-1, pos + 1)


def entries(data: bytes) -> list[Entry]:
    """Every complete entry (client, server, secret, addresses) in file order."""
    found: list[Entry] = []
    items = list(words(data))
    i = 0
    while i < len(items):
        if not items[i].starts_line:
            i += 1
            continue
        client = items[i]
        if i + 2 >= len(items) or items[i + 1].starts_line or items[i + 2].starts_line:
            i += 1  # no server or no secret on its line: pppd skips it
            continue
        server = items[i + 1]
        i += 3
        rest: list[bytes] = []
        while i < len(items) and not items[i].starts_line:
            rest.append(items[i].text)
            i += 1
        if b"--" in rest:
            rest = rest[: rest.index(b"--")]
        found.append(Entry(client.text, server.text, tuple(rest), client.line))
    return found


def read_secrets(path: str = DEFAULT_CHAP_SECRETS) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRETS_BYTES + 1)
    except OSError as exc:
        raise SecretsError(os_fault_line(exc, f"cannot read {path_text(path)} to resolve --user", path)) from None
    if len(data) > MAX_SECRETS_BYTES:
        raise SecretsError(f"{path} is larger than {MAX_SECRETS_BYTES} bytes; that is not a chap-secrets file")
    return data


def resolve_user(name: str, path: str = DEFAULT_CHAP_SECRETS, data: bytes | None = None) -> IPv4Address:
    """The one fixed IPv4 address chap-secrets gives the user `name`; InputError says why not."""
    wanted = name.encode("utf-8", "surrogateescape")
    if not wanted or len(wanted) >= MAX_WORD or b"\0" in wanted:
        raise InputError(f"invalid user {show(name)}: expected a user name as written in {path}")
    if data is None:
        data = read_secrets(path)
    return _resolve(name, [e for e in entries(data) if e.client == wanted], path)


def resolve_all(data: bytes, path: str = DEFAULT_CHAP_SECRETS) -> dict[bytes, IPv4Address | InputError]:
    """Every client name in `data` with what resolve_user gives it (its address, or the InputError
    saying why it has none), the file parsed once: the OpenVPN precompute resolves every user."""
    by_name: dict[bytes, list[Entry]] = {}
    for entry in entries(data):
        by_name.setdefault(entry.client, []).append(entry)
    found: dict[bytes, IPv4Address | InputError] = {}
    for client, mine in by_name.items():
        name = client.decode("utf-8", "surrogateescape")
        try:
            if not client or len(client) >= MAX_WORD or b"\0" in client:
                raise InputError(f"invalid user {show(name)}: expected a user name as written in {path}")
            found[client] = _resolve(name, mine, path)
        except InputError as exc:
            found[client] = exc
    return found


def _resolve(name: str, mine: list[Entry], path: str) -> IPv4Address:
    if not mine:
        raise InputError(f"user {show(name)} is not in {path} (names are case-sensitive); "
                         "check the name, or give the address with --peer")
    where = f"{path} line{'s' if len(mine) > 1 else ''} {', '.join(str(e.line) for e in mine)}"
    words_ = [(word, entry) for entry in mine for word in entry.addresses]
    if any(word == b"*" for word, _ in words_):
        raise InputError(f"user {show(name)} may use any address (* in {where}); routes need a "
                         "fixed address: give it in chap-secrets or use --peer")
    found: list[IPv4Address] = []
    for word, entry in words_:
        if word == b"-" or word.startswith(b"!"):
            continue  # "no address" and exclusions add nothing
        found.append(_address(name, word, f"{path} line {entry.line}"))
    unique = sorted(set(found))
    if not unique:
        raise InputError(f"user {show(name)} has no fixed IP address in {where}; pppd gives it one from the "
                         "pool, so routes cannot follow it: give it an address there, or use --peer")
    if len(unique) > 1:
        listed = ", ".join(str(a) for a in unique)
        raise InputError(f"user {show(name)} resolves to more than one IP ({listed}) in {where}; "
                         "say which one with --peer")
    return unique[0]


def _address(name: str, word: bytes, where: str) -> IPv4Address:
    text = word.decode("utf-8", "replace")
    host, slash, bits = text.partition("/")
    if slash and bits == "32":
        text = host
    elif slash:
        raise InputError(f"user {show(name)} is allowed a whole network ({show(text)} in {where}), not one "
                         "address; use --peer")
    try:
        return parse_peer(text)
    except InputError:
        raise InputError(f"user {show(name)} has the address {show(text)} in {where}, which is not a plain "
                         "IPv4 address; use --peer") from None


def resolve_user_or_peer(peer: str | None, user: str | None, *, required: bool,
                         path: str = DEFAULT_CHAP_SECRETS) -> IPv4Address | None:
    """The peer a command is about, from `--peer IP` or `--user NAME` (never both)."""
    if peer is not None and user is not None:
        raise InputError("give either --peer or --user, not both")
    if peer is not None:
        return parse_peer(peer)
    if user is not None:
        return resolve_user(user, path)
    if required:
        raise InputError("missing option: give the address of the user with --peer IP (or the name with --user NAME)")
    return None


class Users:
    """User name -> chap-secrets address for many names at once (a burst of OpenVPN connects, a
    worker's pass, the timer's check of sessions): the file read and parsed once (resolve_all),
    not once per name: a storm of 200 connects against a file of 400 users parsed it 200 times."""

    def __init__(self, path: str):
        self.path = path
        self.data: bytes | None = None
        self.known: dict[str, IPv4Address | InputError] = {}
        self.resolved: dict[bytes, IPv4Address | InputError] | None = None

    def read(self) -> None:
        """Read the file now (SecretsError when it cannot be), not at the first name."""
        if self.data is None:
            self.data = read_secrets(self.path)

    def peer(self, name: str) -> IPv4Address:
        """As resolve_user: InputError says why the name has no one fixed address."""
        if name not in self.known:
            self.read()
            if self.resolved is None:
                self.resolved = resolve_all(self.data or b"", self.path)
            found = self.resolved.get(name.encode("utf-8", "surrogateescape"))
            if found is None:
                try:  # the words resolve_user has for an invalid name, or one not in the file
                    found = resolve_user(name, self.path, b"")
                except InputError as exc:
                    found = exc
            self.known[name] = found
        found = self.known[name]
        if isinstance(found, InputError):
            raise found
        return found


def chap_path(environ=os.environ) -> str:
    """chap-secrets; L2TP_CHAP_SECRETS moves it for tests, never under sudo."""
    return setting(C.CHAP_SECRETS_ENV, DEFAULT_CHAP_SECRETS, environ)


__all__ = ["DEFAULT_CHAP_SECRETS", "Entry", "SecretsError", "Word", "entries", "read_secrets", "resolve_user",
           "resolve_user_or_peer", "resolve_all", "words", "chap_path", "Users"]
