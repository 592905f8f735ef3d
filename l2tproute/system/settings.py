"""The one rule for the environment variables that move the tool's paths and waits (for tests):
honoured for a direct caller, never for one that came through sudo.

sudo sets SUDO_UID and SUDO_USER; the panel's user runs the command through sudo with an
environment it may control (env_keep, or a compromised panel), and the command then runs as
root: a variable that moved the store, the run directory or chap-secrets would let it write
or read where root can. Under sudo every such value is its default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def under_sudo(environ: Mapping[str, str] = os.environ) -> bool:
    return "SUDO_UID" in environ or "SUDO_USER" in environ


def setting(name: str, default: str, environ: Mapping[str, str] = os.environ) -> str:
    """The value of `name` where the caller may set it and did (not empty), else `default`."""
    if under_sudo(environ):
        return default
    return environ.get(name) or default
