"""The in-memory kernel stays honest: every scenario of tests/support/scenarios.py runs on MemKernel
and on a real namespace (the library's own IpRoute2 over the real `ip`), and both must end with the
same operation results, the same kernel (routes of both families in dump order, links) and the
same route files. A difference names the scenario and the step.
"""

from __future__ import annotations

import pytest
from support.kernels import NetnsKernel
from support.memkernel import MemKernel
from support.scenarios import SCENARIOS, World


def run(scenario, kernel, directory) -> World:
    directory.mkdir()
    world = World(kernel, directory)
    scenario(world)
    world.snap("end")
    return world


@pytest.mark.iproute2_versions  # the library reads the real one through each ip, 4.15's text included
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_memkernel_matches_the_real_kernel(scenario, netns, tmp_path):
    fake = run(scenario, MemKernel(), tmp_path / "fake")
    real = run(scenario, NetnsKernel(netns.name), tmp_path / "real")
    assert list(fake.steps) == list(real.steps)
    for name in real.steps:
        assert fake.steps[name] == real.steps[name], f"{scenario.__name__}: step {name} differs"
    assert fake.files() == real.files()


PEER = "10.255.10.1"
SHOW4 = ("-4", "-j", "-N", "route", "show", "table", "all")
SHOW6 = ("-6", "-j", "-N", "route", "show", "table", "all")
BATCH = ("route add 10.1.0.0/24 via 10.255.10.1 dev ppp0 proto 157\n"
         "route add 10.1.0.0/24 via 10.255.10.1 dev ppp0 proto 157\n"
         "\n"
         "route replace 10.1.0.0/24 via 10.255.10.1 dev ppp0 proto 157 metric 5\n"
         "route del 10.6.0.0/24 via 10.255.10.1 dev ppp0 proto 157\n"
         "route add 10.5.0.0/24 via 10.255.10.1 dev ppp9 proto 157\n"
         "route add 10.5.0.0/24 via 10.9.9.9 dev ppp0 proto 157\n"
         "route add 10.5.0.5/24 via 10.255.10.1 dev ppp0 proto 157\n"
         "route add 2001:db8:1::/48 dev ppp0 proto 157\n"
         "route add 2001:db8:1::/48 dev ppp0 proto 157 metric 1024\n"
         "route del 2001:db8:2::/48 dev ppp0 proto 157\n"
         "route del 10.1.0.0/24 proto 157 metric 0\n")

#: `ip` commands whose answers (exit status, stdout, stderr) must match, after ppp0 and eth1 are up.
IP_SESSIONS = {
    "connected_routes_and_links": [SHOW4, SHOW6, ("-json", "addr", "show")],
    "filters_and_default_metrics": [
        ("route", "add", "10.1.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157"),
        ("route", "add", "10.1.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157", "metric", "5"),
        ("route", "add", "10.2.0.0/24", "via", PEER, "dev", "ppp0", "proto", "static", "table", "100"),
        ("route", "add", "10.2.0.0/24", "via", PEER, "dev", "ppp0", "table", "356"),
        ("route", "add", "2001:db8:1::/48", "dev", "ppp0", "proto", "157"),
        ("route", "add", "2001:db8::/32", "dev", "eth1", "proto", "157", "metric", "0"),
        ("route", "add", "2001:db8:1::/48", "dev", "eth1", "proto", "157", "metric", "7"),
        ("route", "add", "blackhole", "10.3.0.0/24"),
        ("route", "add", "10.4.0.0/24", "dev", "ppp0", "proto", "157"),
        SHOW4, SHOW6, SHOW4 + ("proto", "157"), SHOW4 + ("dev", "ppp0"), SHOW6 + ("proto", "157", "dev", "ppp0"),
        SHOW4 + ("exact", "10.1.0.0/24"), SHOW4 + ("exact", "10.1.0.0/16"), SHOW4 + ("dev", "ppp9"),
        ("-j", "-N", "route", "show", "table", "100"),
    ],
    "taken_slots_replace_and_del": [
        ("route", "add", "10.2.0.0/24", "via", "192.168.50.7", "dev", "eth1", "proto", "static"),
        ("route", "add", "10.2.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157"),
        ("route", "add", "10.2.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157", "metric", "5"),
        ("route", "replace", "10.2.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157"),
        ("route", "del", "10.3.0.0/24", "proto", "157"),
        ("route", "add", "10.3.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157", "metric", "7"),
        ("route", "del", "10.3.0.0/24", "proto", "157", "metric", "0"),
        ("route", "del", "10.2.0.0/24", "proto", "4"),
        ("route", "del", "10.2.0.0/24", "via", "10.255.10.2", "proto", "157"),
        ("route", "del", "10.2.0.0/24", "dev", "eth1", "proto", "157"),
        ("route", "del", "10.2.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157", "metric", "5"),
        ("route", "del", "10.2.0.0/24", "table", "100"),
        SHOW4,
    ],
    "gateway_reachability": [
        ("route", "add", "10.4.0.0/24", "via", PEER, "dev", "ppp0"),
        ("route", "add", "10.4.1.0/24", "via", "192.168.50.7", "dev", "eth1"),
        ("route", "add", "10.4.2.0/24", "via", "192.168.50.7", "dev", "ppp0"),
        ("route", "add", "10.4.3.0/24", "via", "10.4.0.9", "dev", "ppp0"),
        ("route", "add", "10.4.4.0/24", "via", "192.168.50.255", "dev", "eth1"),
        ("route", "add", "10.4.5.0/24", "via", PEER, "dev", "ppp9"),
        ("route", "add", "10.4.6.5/24", "via", PEER, "dev", "ppp0"),
        ("route", "add", "10.4.7.0/24", "via", "10.254.0.1", "dev", "ppp0"),
        ("route", "add", "10.4.8.0/24", "via", "127.0.0.5", "dev", "lo"),
        ("route", "add", "10.4.9.0/24", "via", PEER, "dev", "lo"),
        ("route", "add", "10.4.10.0/24", "dev", "eth1"),
        ("route", "add", "10.4.11.0/24", "via", "10.4.10.9", "dev", "eth1", "table", "100"),
        ("route", "add", "blackhole", "10.4.12.0/24"),
        ("route", "add", "10.4.13.0/24", "via", "10.4.12.1", "dev", "eth1"),
        SHOW4,
    ],
    "links_come_and_go": [
        ("route", "add", "10.7.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157", "table", "100"),
        ("route", "add", "2001:db8:7::/48", "dev", "ppp0", "proto", "157"),
        ("tuntap", "add", "dev", "ppp1", "mode", "tun"),
        ("addr", "add", "10.254.0.1", "peer", "10.255.10.2", "dev", "ppp1"),
        ("-json", "addr", "show", "dev", "ppp1"),
        SHOW4,
        ("link", "set", "ppp1", "up"),
        ("link", "del", "ppp0"),
        SHOW4, SHOW6,
        ("tuntap", "add", "dev", "ppp0", "mode", "tun"),
        ("addr", "add", "10.254.0.1", "peer", "10.255.10.1", "dev", "ppp0"),
        ("addr", "add", "10.254.0.1", "peer", "10.255.10.1", "dev", "ppp0"),
        ("link", "set", "ppp0", "up"),
        ("-json", "addr", "show"), SHOW4,
    ],
    "ipv6_slots": [
        ("route", "add", "2001:db8:1::/48", "dev", "ppp0", "proto", "157"),
        ("route", "replace", "2001:db8:1::/48", "dev", "eth1", "proto", "157"),
        ("route", "add", "2001:db8:1::/48", "dev", "ppp0", "proto", "157", "metric", "5"),
        ("route", "add", "2001:db8:1:1::/64", "dev", "ppp0", "proto", "157", "table", "100"),
        ("route", "add", "2001:db8::/32", "dev", "ppp0", "proto", "static"),
        ("route", "add", "2001:db8:2::/48", "dev", "ppp9"),
        ("route", "add", "default", "dev", "ppp0", "proto", "157", "metric", "9"),
        ("-6", "route", "add", "default", "dev", "ppp0", "proto", "157", "metric", "9"),
        SHOW6, SHOW6 + ("exact", "2001:db8:1::/48"), SHOW6 + ("dev", "eth1"),
        ("route", "del", "2001:db8:1::/48", "dev", "ppp0", "proto", "157", "metric", "1024"),
        ("route", "del", "2001:db8:1::/48", "proto", "157", "metric", "0"),
        ("route", "del", "2001:db8:1::/48", "proto", "4"),
        ("route", "del", "2001:db8:1:1::/64", "proto", "157", "table", "101"),
        ("route", "del", "2001:db8:1:1::/64", "proto", "157"),
        SHOW6, SHOW4,
    ],
    "batches": [("-force", "-batch", "-", BATCH), ("-batch", "-", BATCH), SHOW4, SHOW6],
    # What one user's commands read instead of dumps (issue 16): the kernel's lookup of a peer,
    # one link's addresses, a destination's routes and the server's networks inside it.
    "one_user_reads": [
        ("-json", "route", "get", PEER), ("-json", "route", "get", "10.255.10.9"),
        ("-json", "route", "get", "10.254.0.1"), ("-json", "route", "get", "127.0.0.1"),
        ("-json", "route", "get", "192.168.50.7"),
        ("-json", "addr", "show", "dev", "ppp0"), ("-json", "addr", "show", "dev", "ppp9"),
        ("route", "add", "10.1.0.0/24", "via", PEER, "dev", "ppp0", "proto", "157"),
        ("route", "add", "10.1.0.128/25", "via", "192.168.50.7", "dev", "eth1", "proto", "static", "table", "100"),
        ("route", "add", "10.255.10.0/24", "via", "192.168.50.7", "dev", "eth1", "proto", "static"),
        ("-json", "route", "get", "10.1.0.5"), ("-json", "route", "get", PEER),
        ("-json", "route", "get", "10.255.10.9"),
        SHOW4 + ("root", "10.1.0.0/16"), SHOW4 + ("root", "10.1.0.0/24"),
        SHOW4 + ("proto", "157", "root", "10.0.0.0/8"),
        ("-4", "-j", "-N", "route", "show", "table", "main", "proto", "kernel", "root", "10.0.0.0/8"),
        ("-4", "-j", "-N", "route", "show", "table", "main", "proto", "kernel", "root", "192.168.0.0/16"),
        ("-4", "-j", "-N", "route", "show", "table", "main", "proto", "kernel", "root", "192.168.50.0/25"),
        ("-6", "-j", "-N", "route", "show", "table", "main", "proto", "kernel", "root", "fe80::/10"),
        ("-4", "-j", "-N", "route", "show", "table", "main", "proto", "boot", "exact", "10.255.10.0/24"),
    ],
}


def replay(kernel, commands) -> list:
    kernel.add_ppp("ppp0", PEER)
    kernel.add_lan("eth1", "192.168.50.1/24")
    answers = []
    for command in commands:
        stdin = command[-1] if command[-1].endswith("\n") else None
        args = command[:-1] if stdin else command
        done = kernel.ip(*args, check=False, stdin=stdin)
        answers.append((" ".join(args), done.returncode, done.stdout, done.stderr))
    return answers + [kernel.state()]


@pytest.mark.parametrize("session", IP_SESSIONS)
def test_memkernel_answers_every_ip_command_as_the_real_one(session, netns):
    real = replay(NetnsKernel(netns.name), IP_SESSIONS[session])
    fake = replay(MemKernel(), IP_SESSIONS[session])
    assert len(fake) == len(real)
    for got, want in zip(fake, real):
        assert got == want
