"""The in-memory kernel answers as iproute2 6.1 does (tests/netns/test_memkernel_parity.py runs the
same commands on a real namespace): the rows, the filters, the defaults and every refusal."""

from __future__ import annotations

import pytest
from support.memkernel import MemKernel, Unsupported

from l2tproute.core.model import Change, KernelRoute, parse_destination, parse_gateway
from l2tproute.system.iproute2 import IpError

PEER = "10.255.10.1"


@pytest.fixture
def k() -> MemKernel:
    kernel = MemKernel()
    kernel.add_ppp("ppp0", PEER)
    kernel.add_lan("eth1", "192.168.50.1/24")
    return kernel


def rows(k: MemKernel, *args: str) -> list:
    import json

    return json.loads(k.ip(*args).stdout)


def test_an_address_brings_its_connected_and_local_routes(k):
    assert rows(k, "-4", "-j", "-N", "route", "show", "table", "all", "dev", "ppp0") == [
        {"dst": PEER, "protocol": "2", "scope": "253", "prefsrc": "10.254.0.1", "flags": ["linkdown"]},
        {"type": "2", "dst": "10.254.0.1", "table": "255", "protocol": "2", "scope": "254", "prefsrc": "10.254.0.1",
         "flags": []}]
    lan = [r for r in rows(k, "-4", "-j", "-N", "route", "show", "table", "all") if r.get("dev") == "eth1"]
    assert [(r.get("type"), r["dst"]) for r in lan] == [(None, "192.168.50.0/24"), ("2", "192.168.50.1"),
                                                        ("3", "192.168.50.255")]
    ppp0 = next(link for link in k.read_links() if link["ifname"] == "ppp0")
    assert ppp0["addr_info"][0]["local"] == "10.254.0.1" and ppp0["addr_info"][0]["address"] == PEER


def test_default_metrics_and_what_each_filter_leaves_out(k):
    k.ip("route", "add", "10.1.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157")
    k.ip("route", "add", "2001:db8:1::/48", "dev", "ppp0", "proto", "157")
    assert rows(k, "-4", "-j", "-N", "route", "show", "table", "all", "proto", "157") == [
        {"dst": "10.1.0.0/24", "gateway": PEER, "dev": "ppp0", "flags": ["linkdown"]}]  # metric 0: not printed
    assert rows(k, "-6", "-j", "-N", "route", "show", "table", "all", "proto", "157", "dev", "ppp0") == [
        {"dst": "2001:db8:1::/48", "metric": 1024, "flags": ["linkdown"], "pref": "medium"}]
    exact = rows(k, "-4", "-j", "-N", "route", "show", "table", "all", "exact", "10.1.0.0/24")
    assert [r["protocol"] for r in exact] == ["157"]
    assert rows(k, "-4", "-j", "-N", "route", "show", "table", "all", "exact", "10.1.0.0/16") == []


def test_add_on_a_taken_slot_is_refused_and_replace_takes_it(k):
    k.ip("route", "add", "10.2.0.0/24", "via", "192.168.50.7", "dev", "eth1", "proto", "static")
    again = k.ip("route", "add", "10.2.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157", check=False)
    assert (again.returncode, again.stderr) == (2, "RTNETLINK answers: File exists\n")
    k.ip("route", "add", "10.2.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157", "metric", "5")  # another slot
    k.ip("route", "replace", "10.2.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157")
    found = rows(k, "-4", "-j", "-N", "route", "show", "table", "all", "exact", "10.2.0.0/24")
    assert [(r["dev"], r["protocol"], r.get("metric")) for r in found] == [("ppp0", "157", None), ("ppp0", "157", 5)]


def test_del_of_a_missing_route_and_del_without_a_metric(k):
    missing = k.ip("route", "del", "10.3.0.0/24", "proto", "157", check=False)
    assert (missing.returncode, missing.stderr) == (2, "RTNETLINK answers: No such process\n")
    k.ip("route", "add", "10.3.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157", "metric", "7")
    k.ip("route", "del", "10.3.0.0/24", "proto", "157", "metric", "0")  # metric 0 matches any metric
    assert k.ip("route", "del", "10.3.0.0/24", check=False).returncode == 2  # the metric 7 route went
    assert rows(k, "-4", "-j", "-N", "route", "show", "table", "all", "exact", "10.3.0.0/24") == []


def test_a_gateway_must_be_reachable_on_the_routes_own_link(k):
    def add(dst: str, gw: str, dev: str):
        done = k.ip("route", "add", dst, "via", gw, "dev", dev, check=False)
        return done.returncode, done.stderr

    assert add("10.4.0.0/24", PEER, "ppp0") == (0, "")
    assert add("10.4.1.0/24", "192.168.50.7", "eth1") == (0, "")
    assert add("10.4.2.0/24", "192.168.50.7", "ppp0") == (2, "Error: Nexthop has invalid gateway.\n")
    assert add("10.4.3.0/24", "10.4.0.9", "ppp0") == (2, "Error: Nexthop has invalid gateway.\n")  # via a gateway
    assert add("10.4.4.0/24", "192.168.50.255", "eth1") == (2, "Error: Nexthop has invalid gateway.\n")
    assert add("10.4.5.0/24", PEER, "ppp9") == (1, 'Cannot find device "ppp9"\n')
    assert add("10.4.6.5/24", PEER, "ppp0") == (2, "Error: Invalid prefix for given prefix length.\n")


def test_force_batch_goes_on_after_a_failure_and_plain_batch_stops(k):
    lines = (f"route add 10.5.0.0/24 via {PEER} dev ppp0 proto 157\n"
             f"route add 10.5.0.0/24 via {PEER} dev ppp0 proto 157\n"
             f"route add 10.5.1.0/24 via {PEER} dev ppp0 proto 157\n")
    stopped = k.ip("-batch", "-", stdin=lines, check=False)
    assert (stopped.returncode, stopped.stderr) == (1, "RTNETLINK answers: File exists\nCommand failed -:2\n")
    assert k.tagged_set() == {("10.5.0.0/24", PEER, "ppp0", "main")}
    forced = k.ip("-force", "-batch", "-", stdin=lines, check=False)
    assert forced.stderr == ("RTNETLINK answers: File exists\nCommand failed -:1\n"
                             "RTNETLINK answers: File exists\nCommand failed -:2\n")
    assert ("10.5.1.0/24", PEER, "ppp0", "main") in k.tagged_set()


def test_the_runner_maps_each_batch_failure_to_its_change(k):
    def route(dst: str, gw: str, dev: str = "ppp0") -> KernelRoute:
        return KernelRoute(dst=parse_destination(dst), dev=dev, gw=parse_gateway(gw))

    first = Change("add", route("10.6.0.0/24", PEER))
    twice = Change("add", route("10.6.0.0/24", PEER))
    gone = Change("del", route("10.6.9.0/24", PEER))
    fine = Change("replace", route("10.6.1.0/24", PEER))
    failures = k.batch([first, twice, gone, fine])
    assert [(f.change is twice or f.change is gone, f.message) for f in failures] == [
        (True, "RTNETLINK answers: File exists"), (True, "RTNETLINK answers: No such process")]
    with pytest.raises(IpError, match="^RTNETLINK answers: File exists$"):
        k.change(twice)
    assert k.tagged_set() == {("10.6.0.0/24", PEER, "ppp0", "main"), ("10.6.1.0/24", PEER, "ppp0", "main")}


def test_deleting_a_link_takes_its_routes_and_its_name_can_come_back(k):
    k.ip("route", "add", "10.7.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157", "table", "100")
    k.del_link("ppp0")
    assert k.routes(4, "proto", "157") == []
    assert not any(r.get("dev") == "ppp0" for r in rows(k, "-4", "-j", "-N", "route", "show", "table", "all"))
    k.add_ppp("ppp0", "10.255.10.2")
    assert [link["ifindex"] for link in k.read_links()] == [1, 3, 4]  # indexes are never reused
    assert k.read_routes(4, tagged=False, dev="ppp0")[0]["dst"] == "10.255.10.2"


def test_what_it_does_not_model_is_refused_not_guessed(k):
    with pytest.raises(Unsupported):
        k.ip("route", "add", "10.8.0.0/24", "via", PEER, "dev", "ppp0", "onlink")
    with pytest.raises(Unsupported):
        k.ip("-4", "route", "show")  # text output
