"""The installer's OpenVPN refusals: where wiring the hooks would be wrong or unsafe, it says
why on stderr and leaves OpenVPN's files as they were (or stops, for a config or defaults
file that is a link). Runs on a scratch root (--root), like tests/system/test_installer.py,
whose staged install and helpers it shares."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_installer import (  # noqa: F401  (fixtures, shared)
    DROP_IN,
    OVPN_SUDOERS,
    PANEL_OVPN,
    PROG,
    TMPFILES,
    checkout,
    installer,
    openvpn_root,
    snapshot,
    staged,
)


def openvpn_files(root: Path) -> dict:
    return {k: v for k, v in snapshot(root).items() if k.startswith(("etc/openvpn", "etc/default/openvpn"))}


def not_wired(root: Path) -> None:
    for rel in (DROP_IN, OVPN_SUDOERS, TMPFILES, "etc/openvpn/server.conf.bak-l2tproute",
                "etc/default/openvpn.bak-l2tproute"):
        assert not (root / rel).exists(), rel


WARNED = {
    "script-security 1": (PANEL_OVPN.replace("script-security 2", "script-security 1"), [],
                          "sets script-security 1; the hooks need 2: not wired"),
    "script-security x": (PANEL_OVPN.replace("script-security 2", "script-security x"), [],
                          "sets script-security x; the hooks need 2: not wired"),
    "management": (PANEL_OVPN + "management 127.0.0.1 7505\n", [],
                   "has its own client-connect, client-disconnect or management lines: not wired"),
    "client-disconnect": (PANEL_OVPN + "client-disconnect /etc/openvpn/bye.sh\n", [],
                          "has its own client-connect, client-disconnect or management lines: not wired"),
    "cron, another VPN": (PANEL_OVPN, ["--scheduler", "cron"],
                          "/etc/openvpn has other VPNs too (office.conf): OPTARGS would give them the hooks"),
    "cron, no Debian init script": (PANEL_OVPN, ["--scheduler", "cron"], "passing OPTARGS to openvpn: the hooks "
                                    "are not wired where systemd does not run"),
}


@pytest.mark.parametrize("case", WARNED, ids=WARNED.keys())
def test_a_server_the_hooks_cannot_be_wired_into_is_warned_about_and_left_alone(staged, checkout, tmp_path, case):  # noqa: F811
    config, extra, words = WARNED[case]
    root = tmp_path / "root"
    conf = openvpn_root(staged, root, config)
    if case == "cron, another VPN":
        (root / "etc/openvpn/office.conf").write_text("dev tun1\n")
    if case == "cron, no Debian init script":
        (root / "etc/init.d/openvpn").unlink()
    before = openvpn_files(root)
    result = installer("--root", str(root), *extra, script=checkout / PROG)
    assert result.returncode == 0, result
    assert words in result.stderr, result.stderr
    assert all(line.startswith(f"{PROG}: warning: ") for line in result.stderr.splitlines()), result.stderr
    assert conf.read_text() == config and openvpn_files(root) == before
    not_wired(root)


@pytest.mark.parametrize("case", ["config is a link", "config is a directory", "defaults is a link"])
def test_a_config_or_defaults_file_that_is_not_a_regular_file_stops_the_installer(staged, checkout, tmp_path, case):  # noqa: F811
    root = tmp_path / "root"
    conf = openvpn_root(staged, root)
    extra = []
    if case == "config is a link":
        conf.rename(conf.with_name("real.conf"))
        conf.symlink_to("real.conf")
        words = "/etc/openvpn/server.conf is not a regular file; move it away"
    elif case == "config is a directory":
        conf.unlink()
        conf.mkdir()
        words = "/etc/openvpn/server.conf is not a regular file; move it away"
    else:
        defaults = root / "etc/default/openvpn"
        defaults.rename(defaults.with_name("openvpn.real"))
        defaults.symlink_to("openvpn.real")
        extra = ["--scheduler", "cron"]
        words = "/etc/default/openvpn is a symbolic link; expected a regular file"
    before = openvpn_files(root)
    result = installer("--root", str(root), *extra, script=checkout / PROG)
    assert result.returncode != 0 and words in result.stderr, result
    assert len(result.stderr.splitlines()) >= 1 and f"{PROG}: error: " in result.stderr, result.stderr
    assert openvpn_files(root) == before
    not_wired(root)
