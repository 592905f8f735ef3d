"""An ip-up of a few links reads only those links (issue 28), and does exactly what the dump did.

applying.apply_links reads a few links that came up link by link (their addresses, our routes
on them, and each destination their lines want that they do not hold) instead of every tagged
route and link of the server. Here both reads run on two copies of one random server (sessions,
lines shared between peers, lines with `dev`, other tables and metrics, our routes left on other
links, somebody else's routes, the old tool's routes) and must end in the same kernel, files and
report; and the narrow read must not list every route or link.
"""

from __future__ import annotations

import random

import pytest
from support.memkernel import MemKernel

from l2tproute.core.model import parse_peer
from l2tproute.ops import applying
from l2tproute.ops.applying import LinkChange
from l2tproute.ops.context import Context
from l2tproute.system.store import Store

DSTS = [f"10.{i}.0.0/24" for i in range(12)] + ["10.0.0.0/16", "172.16.5.0/24"]


def _peer(i: int) -> str:
    return f"10.255.10.{i + 1}"


def _server(rng: random.Random, tmp_path, name: str, peers: int) -> tuple[MemKernel, Store]:
    kernel = MemKernel()
    kernel.add_lan("eth1", "192.168.50.1/24")
    store_dir = tmp_path / name
    store_dir.mkdir()
    rng_files = random.Random(rng.random())
    for i in range(peers):
        if rng_files.random() < 0.85:
            kernel.add_ppp(f"ppp{i}", _peer(i))
        lines = []
        for dst in rng_files.sample(DSTS, rng_files.randrange(0, 5)):
            extra = rng_files.choice(["", "", "", " dev eth1", " metric 7", " table 100", f" dev ppp{i}"])
            gw = "192.168.50.9" if extra == " dev eth1" else _peer(i)
            lines.append(f"{dst} via {gw}{extra}\n")
        if lines:
            (store_dir / f"{_peer(i)}.routes").write_text("".join(lines))
    links = [name for name in kernel.links if name.startswith("ppp")]
    for _ in range(rng_files.randrange(0, 8)):  # routes of ours, somewhere
        link = rng_files.choice(links)
        kernel.ip("route", "replace", rng_files.choice(DSTS), "via", _peer(int(link[3:])), "dev", link, "proto", "157",
                  *rng_files.choice([[], [], ["metric", "7"], ["table", "100"]]), check=False)
    for _ in range(rng_files.randrange(0, 4)):  # somebody else's, and the old tool's
        link = rng_files.choice(links)
        kernel.ip("route", "add", rng_files.choice(DSTS), "via", _peer(int(link[3:])), "dev", link,
                  "proto", rng_files.choice(["boot", "static"]), check=False)
    return kernel, Store(str(store_dir))


def _run(kernel: MemKernel, store: Store, changes, tmp_path) -> tuple:
    ctx = Context(store, kernel.runner, lock_timeout=5, run_dir=str(tmp_path / "run"))
    report = applying.apply_links(ctx, changes)

    def lines(items):
        return sorted((str(r.peer), r.line, r.link, r.detail) for r in items)

    summary = {name: lines(getattr(report, name)) for name in ("installed", "updated", "adopted", "unchanged",
                                                               "blocked", "failed")}
    summary["removed"] = sorted(r.text for r in report.removed)
    summary["skipped"] = sorted(item.reason for item in report.skipped)
    summary["warnings"] = sorted(ctx.warnings)
    return summary, kernel.state()


class _Counting:
    """The runner, counting what it is asked for."""

    def __init__(self, inner):
        self.inner = inner
        self.asked: list[str] = []

    def __getattr__(self, name):
        found = getattr(self.inner, name)
        if name.startswith("read") or name in ("route_get", "batch"):
            def counted(*args, **kwargs):
                if name == "read_route_sets":  # each read of the set, as read_routes would be asked it
                    self.asked += [f"read_routes {sorted(vars(read).items())}" for read in args[0]]
                else:
                    self.asked.append(f"{name} {args} {sorted(kwargs.items())}")
                return found(*args, **kwargs)
            return counted
        return found


@pytest.mark.parametrize("seed", range(60))
def test_a_few_links_read_alone_end_as_after_a_dump_of_everything(seed, tmp_path, monkeypatch):
    rng = random.Random(seed)
    peers = rng.randrange(2, 7)
    state = rng.getstate()
    alone_kernel, alone_store = _server(rng, tmp_path, "alone", peers)
    rng.setstate(state)
    dump_kernel, dump_store = _server(rng, tmp_path, "dump", peers)
    assert alone_kernel.state() == dump_kernel.state()
    ups = rng.sample(range(peers), rng.randrange(1, min(peers, applying.LINKS_READ_ALONE) + 1))
    # An up of a link that is gone or carries somebody else is skipped alike.
    changes = [LinkChange(True, f"ppp{i}", parse_peer(_peer(i if rng.random() < 0.9 else i + 1))) for i in ups]
    alone = _run(alone_kernel, alone_store, changes, tmp_path)
    monkeypatch.setattr(applying, "LINKS_READ_ALONE", 0)  # every change through the dump
    dump = _run(dump_kernel, dump_store, changes, tmp_path)
    assert alone == dump


def test_an_up_reads_its_link_and_its_slots_not_the_whole_server(tmp_path):
    kernel = MemKernel()
    store_dir = tmp_path / "s"
    store_dir.mkdir()
    for i in range(40):
        kernel.add_ppp(f"ppp{i}", _peer(i))
        (store_dir / f"{_peer(i)}.routes").write_text(f"10.{i}.0.0/24 via {_peer(i)}\n10.{i}.1.0/24 via {_peer(i)}\n")
    runner = _Counting(kernel)
    ctx = Context(Store(str(store_dir)), runner, lock_timeout=5, run_dir=str(tmp_path / "run"))
    report = applying.apply_links(ctx, [LinkChange(True, "ppp3", parse_peer(_peer(3)))])
    assert sorted(r.line for r in report.installed) == ["10.3.0.0/24 via 10.255.10.4", "10.3.1.0/24 via 10.255.10.4"]
    assert not any(ask.startswith("read_links") for ask in runner.asked)
    routes = [ask for ask in runner.asked if ask.startswith("read_routes")]
    assert routes and all("('dev', 'ppp3')" in ask or "('exact', IPv4Network(" in ask for ask in routes)
    assert not any("('dev', None), ('exact', None)" in ask for ask in routes)
