"""Which other peer's file already holds a destination, without parsing every file on every add.

A cache of the route files (INDEX_NAME in the cache directory, /var/cache/l2tproute; never in
the store, which is configuration: backed up, committed by etckeeper, compared by configuration
management), used and rewritten only under the store lock. It names the store it describes
(path, device and inode), so an index of another store is not used. It is never trusted on
its own word: each use lists the store and compares every route file's identity (inode,
size, mtime, ctime) with the one recorded when the file was parsed.
A file that differs or is new is parsed again, one that is gone is dropped, so a rename,
an in-place hand edit, a `touch -d` (the ctime moves anyway) and a removal are all seen.
File times are coarse (a clock tick), so an edit in the tick of an earlier parse could keep
them equal: a file changed within SETTLE_NS of the read is parsed now and not recorded.
A missing, unreadable, torn, older-format or foreign index (another store's, not a regular
file, too big, not root's alone: Store.read_cache) is simply rebuilt. Listing and stat()ing
costs a few microseconds a file; parsing them all is what grew with the number of users.
The caller saves the index only once its own change is in place (save), so a refused or
failed command leaves the store as it found it.

To keep the lock short, `add` reads ahead, before it takes the lock, and `confirm`s under the
lock: every l2tp-routectl write replaces or removes a file by rename or unlink, which moves the
directory's mtime, so an unchanged directory (stat()ed before the read ahead, and older than
DIR_SETTLE_NS then, so no write can share its clock tick) means no other writer changed a file
meanwhile; otherwise the store is read again under the lock. A hand edit is never synchronised
with the lock, so a read ahead sees what a read under the lock would have seen an instant later.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass, field

from l2tproute.core import constants as C
from l2tproute.core.errors import InputError, StoreError, SystemFault, store_fault
from l2tproute.core.model import IPv4Address, Network, Route, parse_peer
from l2tproute.core.routefile import routes as routes_of
from l2tproute.core.text import path_text
from l2tproute.system.store import Store

INDEX_NAME = C.INDEX_FILE_NAME
#: 2: the index names its store, and lives in the cache directory (1: in the store, unnamed).
VERSION = 2
SETTLE_NS = 2_000_000_000
#: Far longer than a tick of the clock that stamps file times (at most 10 ms).
DIR_SETTLE_NS = 100_000_000


def key_of(route: Route) -> str:
    """The slot a line asks for (what Route.same_target compares), as one string."""
    return f"{route.dst} {route.table_key} {route.metric}"


@dataclass
class Holdings:
    """Every peer's stored slots, and the files that could not be read (with why), by the peer
    as its file names it (an address is made only for the few peers an answer names)."""

    keys: dict[str, list[str]] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    #: The index as it should now be on disk; None when it already is.
    pending: bytes | None = None
    #: The directory's identity when read ahead of the lock; None: read it again under the lock.
    directory: tuple | None = None

    def owner_elsewhere(self, peer: IPv4Address, route: Route, warn) -> IPv4Address | None:
        """The first other peer (in address order) with a line for the route's slot. A broken
        file before it is warned about, as when every file was read in order."""
        key, mine = key_of(route), str(peer)
        owner = min((parse_peer(other) for other, keys in self.keys.items() if other != mine and key in keys),
                    default=None)
        self.warn_broken(peer, route.dst, warn, before=owner)
        return owner

    def networks_elsewhere(self, peer: IPv4Address, warn, dst: Network) -> list[tuple[IPv4Address, Network]]:
        """Every destination of every other peer, in address order."""
        import ipaddress

        self.warn_broken(peer, dst, warn)
        others = sorted(parse_peer(other) for other in self.keys if other != str(peer))
        return [(other, ipaddress.ip_network(key.split(" ", 1)[0])) for other in others
                for key in sorted(self.keys[str(other)])]

    def warn_broken(self, peer: IPv4Address, dst: Network, warn, before: IPv4Address | None = None) -> None:
        for other in sorted(parse_peer(text) for text in self.broken if text != str(peer)):
            if before is None or other < before:
                warn(f"{self.broken[str(other)]}; not checked for {dst}")


def read(store: Store) -> Holdings:
    """The holdings of the whole store, each file parsed only when it changed. Call under the lock."""
    now = time.time_ns()
    found = Holdings()
    try:
        entries = list(os.scandir(store.directory))
        here = _store_identity(store)
    except FileNotFoundError:
        return found
    except OSError as exc:
        raise store_fault(exc, f"cannot list the route store {path_text(store.directory)}", store.directory) from None
    recorded = _load(store, here)
    kept: dict[str, list] = {}
    changed = False
    suffix = len(C.ROUTE_FILE_SUFFIX)
    settled = now - SETTLE_NS
    for entry in entries:
        name = entry.name
        if not name.endswith(C.ROUTE_FILE_SUFFIX) or name.startswith("."):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile
        except OSError as exc:
            raise store_fault(exc, f"cannot read {path_text(entry.path)}", entry.path) from None
        if not stat.S_ISREG(info.st_mode):
            continue  # a link or a directory is no route file (Store.peers)
        identity = [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
        old = recorded.get(name)
        same = old is not None and old[0] == identity
        if same:
            keys, error = old[1], old[2]  # its name was a peer's when it was recorded
        else:
            try:
                peer = parse_peer(name[:-suffix])
            except InputError:
                continue  # not a route file: Store.peers warns about it where it lists peers
            keys, error = _parse(store, peer)  # stat() first: a change after it shows next time
        if info.st_mtime_ns < settled and info.st_ctime_ns < settled:
            kept[name] = [identity, keys, error]
            changed = changed or not same
        elif old is not None:
            changed = True  # recorded, but changed since: dropped until it settles
        text = name[:-suffix]
        if error is not None:
            found.broken[text] = error
        else:
            found.keys[text] = keys
    if changed or len(kept) != len(recorded):
        found.pending = json.dumps({"version": VERSION, "store": here, "files": kept}, separators=(",", ":")).encode()
    return found


def read_ahead(store: Store) -> Holdings:
    """`read` before the lock is taken; `confirm` it under the lock."""
    now = time.time_ns()
    before = _directory_identity(store)
    found = read(store)
    if before is not None and max(before[2], before[3]) < now - DIR_SETTLE_NS:
        found.directory = before
    return found


def confirm(store: Store, holdings: Holdings) -> Holdings:
    """The holdings as they are now, under the lock: those read ahead when no writer has changed
    the store since, else a new read."""
    if holdings.directory is not None and _directory_identity(store) == holdings.directory:
        return holdings
    return read(store)


def _directory_identity(store: Store) -> tuple | None:
    try:
        info = os.stat(store.directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise store_fault(exc, f"cannot read {path_text(store.directory)}", store.directory) from None
    return (info.st_ino, info.st_dev, info.st_mtime_ns, info.st_ctime_ns)


def save(store: Store, holdings: Holdings | None) -> None:
    """Put what `read` found in place for the next command. Call under the lock that `read` ran under."""
    if holdings is not None and holdings.pending is not None:
        store.replace_cache(INDEX_NAME, holdings.pending)
        holdings.pending = None


def _parse(store: Store, peer: IPv4Address) -> tuple[list[str], str | None]:
    try:
        lines = store.read(peer) or []
    except SystemFault:  # the disk, not the file: nothing can be checked
        raise
    except StoreError as exc:  # a broken file must not block every add; it is warned about
        return [], str(exc)
    return sorted({key_of(route) for route in routes_of(lines)}), None


def _store_identity(store: Store) -> list:
    """Which store an index describes: its path as given, and the directory's device and inode."""
    info = os.stat(store.directory)
    return [os.path.abspath(store.directory), info.st_dev, info.st_ino]


def _load(store: Store, here: list) -> dict[str, list]:
    data = store.read_cache(INDEX_NAME)
    if not data:
        return {}
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(doc, dict) or doc.get("version") != VERSION or doc.get("store") != here \
            or not isinstance(doc.get("files"), dict):
        return {}
    return doc["files"]
