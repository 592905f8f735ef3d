"""`list`: every stored route file as it is, and the warnings about lines that cannot be used.
(The words are the old tool's, fronts/render.py; the panel's `list --peer` is answered by the
sh front without Python.)"""

from __future__ import annotations

from l2tproute.core.model import IPv4Address
from l2tproute.core.routefile import parse, problems
from l2tproute.system.store import Store, SystemFault


def read_all(store: Store) -> tuple[list[tuple[IPv4Address, bytes]], list[str]]:
    peers, warnings = store.peers()
    files = []
    for peer in peers:
        try:
            data = store.read_bytes(peer)
        except SystemFault:  # the disk, not the file: a listing without it would mislead
            raise
        except RuntimeError as exc:
            warnings.append(str(exc))
            continue
        if data is not None:
            files.append((peer, data))
    return files, warnings


def file_warnings(store: Store, peer: IPv4Address, data: bytes) -> list[str]:
    return problems(parse(data), store.path(peer))
