"""`list` output, text exactly as the old tool printed it (the panel parses it).

Imports nothing heavy: the panel calls `list --peer` for every user row, so this
module must stay cheap to load (see l2tproute/fastpath.py).
"""

from __future__ import annotations

from l2tproute.core.model import IPv4Address
from l2tproute.core.routefile import parse, problems
from l2tproute.system.store import Store, SystemFault


def peer_text(peer: IPv4Address, data: bytes | None) -> bytes:
    if data is None:
        return f"No routes found for peer: {peer}\n".encode()
    return f"Routes for peer {peer}:\n".encode() + _terminated(data)


def all_text(files: list[tuple[IPv4Address, bytes]]) -> bytes:
    if not files:
        return b"No routes found\n"
    parts = [b"All routes:\n"]
    for peer, data in files:
        parts += [f"Peer: {peer}\n".encode(), _terminated(data), b"\n"]
    return b"".join(parts)


def _terminated(data: bytes) -> bytes:
    return data if not data or data.endswith(b"\n") else data + b"\n"


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


def peer_doc(peer: IPv4Address, data: bytes) -> dict:
    from l2tproute.core.routefile import format_route

    lines = parse(data)
    return {
        "peer": str(peer),
        "routes": [format_route(line.route) for line in lines if line.route is not None],
        "lines": [line.raw.decode("ascii", "replace") for line in lines],
    }
