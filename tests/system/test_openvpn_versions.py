"""The hook on the OpenVPN releases the old tool's servers run: 2.4.4 (Ubuntu 18.04) and 2.4.7
(Ubuntu 20.04), built from source (a missing build fails, see openvpnworld.built_openvpn),
beside the distribution's. 2.4 has no deferred client-connect: the server waits for the hook,
which copies root's precompute and spools; the worker installs the kernel route."""

from __future__ import annotations

import pytest
from openvpnworld import BUILT, openvpn_world, pids_cgroup_root

#: Debian's /lib/systemd/system/openvpn@.service: TasksMax=10.
TASKS_MAX = 10
EXTRA = {"user3": ("pass3", "10.255.10.3", "192.168.23.0/24 via 10.255.10.3\nfd00:23::/64 via 10.255.10.3\n")}


@pytest.fixture
def world():
    with openvpn_world() as w:
        w.add_users(EXTRA)
        yield w


@pytest.mark.parametrize("version", ["2.4.4", "2.4.7", "distribution"])
def test_clients_get_their_iroutes_and_kernel_routes(world, version):
    if version != "distribution":
        from openvpnworld import built_openvpn

        world.openvpn = built_openvpn(version)
    limited = pids_cgroup_root() is not None
    world.start_server(hooks=True, ipv6=True, pids_max=TASKS_MAX if limited else None)
    banner = (world.root / "server.log").read_text(errors="replace")
    assert (f"OpenVPN {version} " in banner) if version != "distribution" else str(BUILT) not in world.openvpn
    a1 = world.start_client("user1", "c1")
    [name] = world.start_clients(["user3"], "c2")
    a3 = world.logged_address(name)
    a1_6, a3_6 = world.logged_address("client-user1-c1", 6), world.logged_address(name, 6)
    # The hook returned only after spooling: both events are there once both clients are in.
    events = sorted(n.split(",", 3)[3] for n in world.spooled())
    assert events == sorted([f"vpn-up,{a1},10.255.10.1,{a1_6}", f"vpn-up,{a3},10.255.10.3,{a3_6}"])
    routes = world.status().routes
    assert routes.get("192.168.20.0/24") == "user1" and routes.get("192.168.23.0/24") == "user3", routes
    assert routes.get("fd00:23::/64") == "user3", routes
    world.work()
    assert [r["dst"] for r in world.routes_via(a1)] == ["192.168.20.0/24"]
    assert [r["dst"] for r in world.routes_via(a3)] == ["192.168.23.0/24"]
    assert world.ping("192.168.20.2")
    if limited:
        assert (world.cgroup / "pids.events").read_text().split() == ["max", "0"]
    world.stop("client-user1-c1")
    world.wait_spool(lambda n: any(x.endswith(f",vpn-down,{a1}") for x in n))
    world.work()
    assert world.routes_via(a1) == []
    assert [r["dst"] for r in world.routes_via(a3)] == ["192.168.23.0/24"]
