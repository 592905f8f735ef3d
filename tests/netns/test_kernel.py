"""The kernel side, in a real namespace: install, reconcile, remove, and leave foreign routes alone."""

import pytest

#: Reads the kernel: also against the built iproute2 4.15.0 and 5.5.0 (tests/support/iproute2s.py).
pytestmark = pytest.mark.iproute2_versions

P1, P11, P2 = "10.255.10.1", "10.255.10.11", "10.255.10.2"


@pytest.fixture
def server(netns):
    """A server with a LAN uplink, a default route, foreign routes, and two sessions up."""
    netns.add_lan("eth0", "192.168.50.1/24")
    netns.ip("route", "add", "default", "via", "192.168.50.254")
    netns.ip("route", "add", "172.16.1.0/24", "via", "192.168.50.2", "proto", "static")
    netns.ip("route", "add", "172.16.2.0/24", "via", "192.168.50.3", "proto", "bird")
    netns.ip("route", "add", "172.16.3.0/24", "via", "192.168.50.4", "proto", "boot")
    netns.add_ppp("ppp0", P1)
    netns.add_ppp("ppp1", P11)
    return netns


def foreign(ns):
    return [r for r in ns.snapshot() if '"protocol": "157"' not in r]


def write(store_dir, peer, data: bytes):
    (store_dir / f"{peer}.routes").write_bytes(data)


def test_add_installs_at_once_on_the_peers_own_link_with_our_tag(routectl, server):
    result = routectl("add", "--peer", P1, "--dst", "10.1.0.0/16", ns=server)
    assert result.returncode == 0 and "Installed on ppp0." in result.stdout
    assert server.tagged_set() == {("10.1.0.0/16", P1, "ppp0", "main")}


def test_peers_sharing_a_prefix_never_get_each_others_link(routectl, store_dir, server):
    write(store_dir, P1, b"10.1.0.0/16 via 10.255.10.1\n")
    write(store_dir, P11, b"10.11.0.0/16 via 10.255.10.11\n")
    assert routectl("apply", "--peer", P11, ns=server).returncode == 0
    assert server.tagged_set() == {("10.11.0.0/16", P11, "ppp1", "main")}
    assert routectl("apply", "--peer", P1, ns=server).returncode == 0
    assert server.tagged_set() == {("10.11.0.0/16", P11, "ppp1", "main"), ("10.1.0.0/16", P1, "ppp0", "main")}


def test_apply_for_an_offline_peer_succeeds_and_the_route_comes_with_the_link(routectl, store_dir, server):
    write(store_dir, P2, b"10.2.0.0/16 via 10.255.10.2\n")
    result = routectl("apply", "--peer", P2, ns=server)
    assert result.returncode == 0 and "is not connected" in result.stdout
    assert server.tagged() == []
    server.add_ppp("ppp2", P2)
    assert routectl("apply", "--peer", P2, ns=server).returncode == 0
    assert server.tagged_set() == {("10.2.0.0/16", P2, "ppp2", "main")}


def test_apply_all_twice_the_second_run_changes_nothing(routectl, store_dir, server):
    write(store_dir, P1, b"10.1.0.0/16 via 10.255.10.1\n10.1.1.0/24 via 10.255.10.1 dev ppp0\n")
    write(store_dir, P11, b"10.11.0.0/16 via 10.255.10.11\r\n# hand edit\n")
    write(store_dir, P2, b"10.2.0.0/16 via 10.255.10.2\n")  # offline
    first = routectl("apply", ns=server)
    assert first.returncode == 0 and "3 installed" in first.stdout and "1 offline" in first.stdout
    after_first = server.snapshot()
    second = routectl("apply", ns=server)
    assert second.returncode == 0 and "0 installed, 0 updated, 0 removed, 3 unchanged" in second.stdout
    assert server.snapshot() == after_first


def test_apply_all_follows_a_file_edited_by_hand(routectl, store_dir, server):
    write(store_dir, P1, b"10.1.0.0/16 via 10.255.10.1\n10.3.0.0/16 via 10.255.10.1\n")
    assert routectl("apply", ns=server).returncode == 0
    write(store_dir, P1, b"10.1.0.0/16 via 10.255.10.1\n10.4.0.0/16 via 10.255.10.1\n")
    result = routectl("apply", ns=server)
    assert result.returncode == 0 and "1 installed" in result.stdout and "1 removed" in result.stdout
    assert server.tagged_set() == {("10.1.0.0/16", P1, "ppp0", "main"), ("10.4.0.0/16", P1, "ppp0", "main")}


def test_apply_all_removes_the_routes_of_a_deleted_peer_file(routectl, store_dir, server):
    write(store_dir, P1, b"10.1.0.0/16 via 10.255.10.1\n")
    write(store_dir, P11, b"10.11.0.0/16 via 10.255.10.11\n")
    assert routectl("apply", ns=server).returncode == 0
    (store_dir / f"{P1}.routes").unlink()
    assert routectl("apply", ns=server).returncode == 0
    assert server.tagged_set() == {("10.11.0.0/16", P11, "ppp1", "main")}


def test_apply_skips_broken_lines_with_a_warning_and_installs_the_rest(routectl, store_dir, server):
    write(store_dir, P1, b"garbage\n10.1.0.0/16 via 10.255.10.1\n192.168.1.5/24 via 10.255.10.1\n")
    result = routectl("apply", ns=server)
    assert result.returncode == 0
    assert "line 1: not understood" in result.stderr and "did you mean 192.168.1.0/24" in result.stderr
    assert server.tagged_set() == {("10.1.0.0/16", P1, "ppp0", "main")}


def test_del_removes_the_kernel_route_and_del_all_only_that_peers(routectl, store_dir, server):
    write(store_dir, P1, b"10.1.0.0/16 via 10.255.10.1\n10.1.1.0/24 via 10.255.10.1\n")
    write(store_dir, P11, b"10.11.0.0/16 via 10.255.10.11\n")
    assert routectl("apply", ns=server).returncode == 0
    assert routectl("del", "--peer", P1, "--dst", "10.1.0.0/16", ns=server).returncode == 0
    # Only that prefix: the longer 10.1.1.0/24 inside it stays, in the file and in the kernel.
    assert server.tagged_set() == {("10.1.1.0/24", P1, "ppp0", "main"), ("10.11.0.0/16", P11, "ppp1", "main")}
    assert (store_dir / f"{P1}.routes").read_bytes() == b"10.1.1.0/24 via 10.255.10.1\n"
    assert routectl("del", "--peer", P1, "--dst", "all", ns=server).returncode == 0
    assert server.tagged_set() == {("10.11.0.0/16", P11, "ppp1", "main")}
    assert not (store_dir / f"{P1}.routes").exists()


def test_foreign_routes_survive_every_command(routectl, store_dir, server):
    before = foreign(server)
    write(store_dir, P1, b"10.1.0.0/16 via 10.255.10.1\n172.16.2.0/24 via 10.255.10.1\n")
    for args in (["apply"], ["apply", "--peer", P1], ["add", "--peer", P11, "--dst", "10.11.0.0/16"],
                 ["del", "--peer", P1, "--dst", "172.16.2.0/24"], ["del", "--peer", P1, "--dst", "all"], ["apply"]):
        result = routectl(*args, ns=server)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert foreign(server) == before, args


@pytest.mark.parametrize("dst, proto", [("172.16.1.0/24", "static"), ("172.16.2.0/24", "bird"),
                                        ("172.16.3.0/24", "boot")])
def test_add_for_a_destination_held_by_a_foreign_route_is_refused_until_forced(routectl, store_dir, server, dst, proto):
    before = server.snapshot()
    refused = routectl("add", "--peer", P1, "--dst", dst, ns=server)
    assert refused.returncode == 2
    assert f"proto {proto} route" in refused.stderr and "--force" in refused.stderr
    assert server.snapshot() == before and not (store_dir / f"{P1}.routes").exists()
    forced = routectl("add", "--peer", P1, "--dst", dst, "--force", ns=server)
    assert forced.returncode == 0
    assert (dst, P1, "ppp0", "main") in server.tagged_set()


def test_apply_reports_a_blocked_route_once_and_leaves_the_foreign_route(routectl, store_dir, server):
    write(store_dir, P1, b"172.16.2.0/24 via 10.255.10.1\n10.1.0.0/16 via 10.255.10.1\n")
    before = foreign(server)
    result = routectl("apply", ns=server)
    assert result.returncode == 0 and "1 blocked" in result.stdout
    assert result.stderr.count("172.16.2.0/24") == 1 and "proto bird" in result.stderr
    assert foreign(server) == before
    assert server.tagged_set() == {("10.1.0.0/16", P1, "ppp0", "main")}


def test_the_default_route_and_the_servers_own_lan_are_refused(routectl, server):
    before = server.snapshot()
    for dst in ("0.0.0.0/0", "192.168.50.0/24", "192.168.0.0/16"):
        result = routectl("add", "--peer", P1, "--dst", dst, ns=server)
        assert result.returncode == 2 and "cut the server off" in result.stderr, dst
    assert server.snapshot() == before


def test_a_route_the_kernel_refuses_is_reported_with_its_peer_and_the_rest_go_in(routectl, store_dir, server):
    write(store_dir, P1, b"10.1.0.0/16 via 10.255.10.1\n10.5.0.0/16 via 10.99.99.99\n10.6.0.0/16 via 10.255.10.1\n")
    result = routectl("apply", ns=server)
    assert result.returncode == 1
    assert "peer 10.255.10.1: failed: 10.5.0.0/16 via 10.99.99.99" in result.stderr
    assert server.tagged_set() == {("10.1.0.0/16", P1, "ppp0", "main"), ("10.6.0.0/16", P1, "ppp0", "main")}


def test_add_the_kernel_refuses_changes_nothing(routectl, store_dir, server):
    result = routectl("add", "--peer", P1, "--dst", "10.5.0.0/16", "--gw", "10.99.99.99", ns=server)
    assert result.returncode == 1 and "nothing was changed" in result.stderr
    assert not (store_dir / f"{P1}.routes").exists() and server.tagged() == []


def test_add_for_an_offline_peer_is_refused_when_a_foreign_route_holds_the_destination(routectl, store_dir, server):
    refused = routectl("add", "--peer", P2, "--dst", "172.16.1.0/24", ns=server)
    assert refused.returncode == 2 and "proto static route" in refused.stderr
    assert not (store_dir / f"{P2}.routes").exists()


def test_apply_updates_a_route_whose_line_changed_gateway_or_link(routectl, store_dir, server):
    write(store_dir, P1, b"10.1.0.0/16 via 10.255.10.1\n")
    assert routectl("apply", ns=server).returncode == 0
    write(store_dir, P1, b"10.1.0.0/16 via 10.255.10.11 dev ppp1\n")
    result = routectl("apply", ns=server)
    assert result.returncode == 0 and "1 updated" in result.stdout and "0 removed" in result.stdout
    assert server.tagged_set() == {("10.1.0.0/16", P11, "ppp1", "main")}
