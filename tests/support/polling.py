"""Absences proved by a bounded poll of the state that would show the failure, never by a sleep
followed by one look: the poll fails at the first look that shows it."""

from __future__ import annotations

import time
from typing import Callable


def holds_for(check: Callable[[], bool], limit: float = 2.0, interval: float = 0.02) -> bool:
    """`check()` true at every look for `limit` seconds (and once more at the end)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not check():
            return False
        time.sleep(interval)
    return check()
