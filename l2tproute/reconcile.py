"""Wanted routes versus installed routes: the difference, and nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .iproute2 import Change, KernelRoute
from .kernel import Installed, Slot, slot_of
from .model import IPv4Address, Route


@dataclass(frozen=True)
class Want:
    peer: IPv4Address
    route: Route
    kernel: KernelRoute


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    #: What each change is for: the Want it installs, or the Installed route it removes.
    reasons: list[object] = field(default_factory=list)
    unchanged: list[Want] = field(default_factory=list)
    shadowed: list[Want] = field(default_factory=list)  # a second want for a slot already wanted
    updates: set = field(default_factory=set)  # indexes of changes that rewrite a route of ours

    def add(self, change: Change, reason: object) -> None:
        self.changes.append(change)
        self.reasons.append(reason)


def plan(wants: list[Want], tagged: list[Installed], *, force: bool,
         removable: Callable[[Installed], bool]) -> Plan:
    """Install what is missing or different, remove tagged routes nobody wants.

    `add` (not `replace`) is used for a slot we do not hold, so the kernel itself
    refuses to overwrite a route somebody else installed; `--force` replaces it.
    """
    result = Plan()
    # Each slot computed once: hashing a slot hashes its network in Python code.
    tagged_slots = [(item.slot, item) for item in tagged]
    ours: dict[Slot, Installed] = {}
    for slot, item in tagged_slots:
        ours.setdefault(slot, item)
    wanted: dict[Slot, Want] = {}
    for want in wants:
        slot = slot_of(want.kernel)
        if wanted.setdefault(slot, want) is not want:
            result.shadowed.append(want)
            continue
        current: Installed | None = ours.get(slot)
        if current is None:
            result.add(Change("replace" if force else "add", want.kernel), want)
        elif (current.route.dev, current.route.gw) == (want.kernel.dev, want.kernel.gw):
            result.unchanged.append(want)
        else:
            result.updates.add(len(result.changes))
            result.add(Change("replace", want.kernel), want)
    for slot, item in tagged_slots:
        if slot not in wanted and removable(item):
            result.add(Change("del", item.route), item)
    return result
