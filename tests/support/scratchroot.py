"""Scratch copies of the paths the tool uses whatever the environment says when it runs under
sudo (SUDO_UID or SUDO_USER set): the store and settings (/etc/l2tp-manager), the run
directory (/run/l2tproute), chap-secrets, /etc/resolv.conf and the cache (/var/cache/l2tproute).

`wrap(argv)` runs argv in a private mount namespace (`unshare -m`) in which each scratch copy
is bind-mounted over the real path, so a test that runs the tool through sudo, or with sudo's
variables, reads and writes only its own copies; this machine's mount table and files are
not touched. A real path that does not exist (/run/l2tproute where tmpfiles.d never ran)
cannot be a bind target and is left absent: the tool, which only reads the run directory
under sudo, then finds none, and the session guard (support.hostguard) fails the run if
anything was made there.
"""

from __future__ import annotations

import os
from pathlib import Path

ETC = "/etc/l2tp-manager"
RUN = "/run/l2tproute"
CHAP = "/etc/ppp/chap-secrets"
RESOLV = "/etc/resolv.conf"
CACHE = "/var/cache/l2tproute"

# Each pair: scratch path, real path. A real path that does not exist is left alone (see above).
_BIND = r"""
while [ "$1" != -- ]; do
    if [ -e "$2" ]; then mount --bind "$1" "$2"; fi
    shift 2
done
shift
exec "$@"
"""


class ScratchRoot:
    """The scratch copies under `top`; made with the settings and resolvers the test gives."""

    def __init__(self, top: Path, settings: str = "", resolvers: tuple = ("9.9.9.9",), chap: str = ""):
        self.top = top
        self.etc = top / "l2tp-manager"
        self.store = self.etc / "routes.d"
        self.run_dir = top / "run-l2tproute"
        self.chap = top / "chap-secrets"
        self.resolv = top / "resolv.conf"
        self.cache = top / "cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.store.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        self.settings(settings)
        self.chap.write_text(chap or "# scratch chap-secrets of tests/support/scratchroot.py\n")
        os.chmod(self.chap, 0o600)
        self.resolv.write_text("".join(f"nameserver {r}\n" for r in resolvers))
        for path in (top, self.etc, self.store, self.run_dir):
            os.chmod(path, 0o755)
        os.chmod(self.resolv, 0o644)

    def settings(self, text: str) -> None:
        path = self.etc / "l2tproute.conf"
        path.write_text(text)
        os.chmod(path, 0o644)

    def pairs(self) -> list[tuple[str, str]]:
        return [(str(self.etc), ETC), (str(self.run_dir), RUN), (str(self.chap), CHAP), (str(self.resolv), RESOLV),
                (str(self.cache), CACHE)]

    def wrap(self, argv: list[str]) -> list[str]:
        """argv in a private mount namespace with the scratch copies over the real paths."""
        bound = [word for pair in self.pairs() for word in pair]
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-euc", _BIND, "sh", *bound, "--",
                *argv]
