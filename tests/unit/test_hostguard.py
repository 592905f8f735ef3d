"""support/hostguard.py: what the kernel changes by itself reads the same twice, anything the
tool or its installer could change reads differently."""

from __future__ import annotations

import copy
import os

import pytest
from support import hostguard

ROUTES = {"-4": [{"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "protocol": "dhcp", "flags": []}],
          "-6": [{"dst": "2001:db8::/64", "dev": "eth0", "protocol": "kernel", "metric": 256, "flags": [],
                  "pref": "medium", "expires": "86390sec"},
                 {"dst": "default", "gateway": "fe80::1", "dev": "eth0", "protocol": "ra", "flags": [],
                  "expires": "1790sec"}]}
LINKS = [{"ifname": "eth0", "link_type": "ether", "mtu": 1500, "address": "02:00:00:00:00:01",
          "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "operstate": "UP", "txqlen": 1000}]
ADDRS = [{"ifname": "eth0", "addr_info": [
    {"family": "inet", "local": "198.51.100.2", "prefixlen": 24, "scope": "global", "valid_life_time": 4294967295},
    {"family": "inet6", "local": "2001:db8::2", "prefixlen": 64, "scope": "global", "valid_life_time": 4294967295},
    {"family": "inet6", "local": "2001:db8::aa", "prefixlen": 64, "dynamic": True, "valid_life_time": 86000},
    {"family": "inet6", "local": "2001:db8::bb", "prefixlen": 64, "temporary": True, "valid_life_time": 3000}]}]


@pytest.fixture
def machine(monkeypatch):
    state = {"route": copy.deepcopy(ROUTES), "link": copy.deepcopy(LINKS), "addr": copy.deepcopy(ADDRS)}

    def ip_json(*args):
        family = args[0] if args[0] in ("-4", "-6") else None
        what = args[1] if family else args[0]
        return state[what][family] if what == "route" else state[what]

    monkeypatch.setattr(hostguard, "_ip_json", ip_json)
    return state


def read() -> tuple:
    return hostguard.routes(), hostguard.links(), hostguard.addresses()


def test_what_the_kernel_changes_by_itself_is_not_a_change(machine):
    before = read()
    machine["route"]["-6"][0]["expires"] = "80000sec"  # an RA prefix route counting down
    machine["route"]["-6"][1]["gateway"] = "fe80::2"  # a new router advertised itself
    machine["route"]["-4"].append({"dst": "192.0.2.9", "dev": "eth0", "flags": ["cache"]})
    machine["link"][0]["flags"].remove("LOWER_UP")  # carrier lost
    machine["link"][0]["operstate"] = "DOWN"
    machine["addr"][0]["addr_info"][2]["valid_life_time"] = 85000
    machine["addr"][0]["addr_info"][3]["local"] = "2001:db8::cc"  # privacy address rotated
    assert read() == before


@pytest.mark.parametrize("change", [
    lambda m: m["route"]["-4"].append({"dst": "10.9.0.0/24", "gateway": "10.255.0.2", "dev": "ppp0",
                                       "protocol": "157", "flags": []}),
    lambda m: m["route"]["-6"][0].update(metric=1024),
    lambda m: m["link"][0].update(mtu=1400),
    lambda m: m["link"][0]["flags"].remove("UP"),
    lambda m: m["link"].append({"ifname": "ppp0", "link_type": "none", "mtu": 1500, "flags": ["UP"]}),
    lambda m: m["addr"][0]["addr_info"].pop(0),
], ids=["a route", "a metric", "an mtu", "a link down", "a new link", "an address"])
def test_what_the_tool_could_change_is_a_change(machine, change):
    before = read()
    change(machine)
    assert read() != before


def test_a_tree_reads_content_mode_owner_and_links_and_leaves_out_pycache(tmp_path):
    (tmp_path / "a").write_text("one\n")
    (tmp_path / "__pycache__").mkdir()
    before = hostguard.tree(str(tmp_path))
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert hostguard.tree(str(tmp_path)) == before
    for change in (lambda: (tmp_path / "a").write_text("two\n"), lambda: os.chmod(tmp_path / "a", 0o600),
                   lambda: (tmp_path / "b").symlink_to("a"), lambda: os.unlink(tmp_path / "a")):
        change()
        assert hostguard.tree(str(tmp_path)) != before
        before = hostguard.tree(str(tmp_path))
    assert hostguard.tree(str(tmp_path / "gone")) == [f"{tmp_path / 'gone'} missing"]
