"""l2tproute-worker.service's sandbox: what the worker needs (routes, the spool, rp_filter, entering a
named network namespace) and little else; tests/system/test_netns_systemd.py checks it live."""

from __future__ import annotations

import re
import subprocess

from conftest import REPO
from test_units import unit

from l2tproute.core import constants as C

WORKER = REPO / "contrib/systemd/l2tproute-worker.service"


def test_the_worker_may_enter_network_namespaces_and_nothing_more():
    service = unit(WORKER)["Service"]
    # setns(2) needs CAP_SYS_ADMIN; RestrictNamespaces=net lets it join network namespaces only.
    assert service["CapabilityBoundingSet"].split() == ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
    assert service["RestrictNamespaces"] == "net"
    assert service["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_NETLINK"]
    assert service["IPAddressDeny"] == "any"
    assert "ProtectKernelTunables" not in service and "ProcSubset" not in service  # rp_filter in /proc/sys
    assert "PrivateNetwork" not in service  # the host's namespace is the one it starts in
    assert service["ReadWritePaths"].split() == ["-" + C.DEFAULT_STORE_DIR, "-" + C.DEFAULT_RUN_DIR]


def test_the_worker_exposure_is_at_most_2_0():
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(WORKER)],
                            capture_output=True, text=True, timeout=120)
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert level, result.stdout + result.stderr
    assert float(level.group(1)) <= 2.0, result.stdout
