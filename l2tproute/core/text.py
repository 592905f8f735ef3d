"""The tool's words as the panel can show them.

The panel HTML-escapes what the command prints and its page script escapes it again,
so a quote, `<`, `>` or `&` in a message reaches the admin as `&#039;` and the like.
No message carries those characters: a value is shown bare when it is one plain word,
else in square brackets with those characters (and anything unprintable) escaped.
"""

from __future__ import annotations

import re

#: What never appears in a line of the tool's own words (CONTRACT.md, What the panel reads).
FORBIDDEN = "'\"<>&"
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_.:/+@%,=~-]+", re.ASCII)
# A word between quotes in a text from elsewhere: click quotes option names, ip quotes device names.
_QUOTED_WORD = re.compile(r"""(['"])([^'"\s<>&]+)\1""")
# Printable ASCII without FORBIDDEN: such text is its own escape (every line of a 10,000-route
# apply is, and the per-character escape was a quarter of that apply).
_SAFE_TEXT = re.compile(r"[ !#-%(-;=?-~]*", re.ASCII)
# What escape may have to change: FORBIDDEN, or anything outside printable ASCII (_escape decides).
_MAYBE_UNSAFE = re.compile(r"[^ !#-%(-;=?-~]", re.ASCII)


def _escape(ch: str) -> str:
    if ch in FORBIDDEN:
        return f"\\x{ord(ch):02x}"
    if not ch.isprintable():
        return ch.encode("unicode_escape").decode("ascii")
    return ch


def escape(text: str) -> str:
    """Every character the panel mangles, and every unprintable one, written as an escape."""
    if _SAFE_TEXT.fullmatch(text):
        return text
    return _MAYBE_UNSAFE.sub(lambda match: _escape(match.group()), text)


def show(value: str, limit: int = 60) -> str:
    """A caller's value in a message: bare when it is one plain word (10.0.0.0/8, ppp0),
    else in brackets with every unsafe character escaped ([10.0.0.0/8\\x27; touch x], [] when empty)."""
    text = value if len(value) <= limit else value[:limit] + "..."
    if _PLAIN_WORD.fullmatch(text):
        return text
    return "[" + escape(text) + "]"


def clean(text: str) -> str:
    """Text from elsewhere (click, ip, a file name) made fit for a message line: a quoted
    word loses its quotes, any other unsafe or unprintable character is escaped."""
    text = str(text)
    if _SAFE_TEXT.fullmatch(text):
        return text  # no quote to drop, nothing to escape
    return escape(_QUOTED_WORD.sub(r"\2", text))


def is_clean(text: str) -> bool:
    return not any(ch in FORBIDDEN for ch in text)


def one_line(text) -> str:
    """`text` folded onto one printable line."""
    # Escape what is left after the blanks are folded (bidi overrides, soft hyphens...):
    # click echoes the caller's words, and an error must not rewrite the line it is shown on.
    folded = " ".join(str(text).split())
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in folded)


def path_text(path: str | None) -> str:
    """A path as a message shows it: one printable line without the characters the panel mangles
    (unlike `show`, never bracketed: a path is always ours to name)."""
    return escape("" if path is None else str(path))


def printable(text: str, limit: int = 64) -> str:
    """A value from outside kept for a log line only (pppd's tty, ipparam): cut, unprintables as `?`."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
