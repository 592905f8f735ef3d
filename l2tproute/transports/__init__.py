"""The ways a user is connected, each behind core.carrier.Transport: pppd/L2TP links and OpenVPN clients.

The operations never name a transport: a front asks `configured` which ones this server uses and
hands them to the operations in their Context.
"""

from __future__ import annotations

import os

from l2tproute.core import constants as C
from l2tproute.core.carrier import Transport
from l2tproute.system.iproute2 import Runner


def openvpn_configured(run_dir: str) -> bool:
    """OpenVPN's hooks have run on this server: the worker keeps its records (even none) there."""
    return any(os.path.isdir(os.path.join(run_dir, name)) for name in (C.OPENVPN_SESSIONS, C.OPENVPN_PENDING))


def context(store, runner: Runner, **settings):
    """The operations' Context with this server's transports (the fronts' one way to make one)."""
    from l2tproute.ops.context import Context

    ctx = Context(store, runner, **settings)
    ctx.transports = configured(runner, ctx.run_dir)
    return ctx


def configured(runner: Runner, run_dir: str) -> tuple[Transport, ...]:
    """L2TP always; OpenVPN where it left records, so a pppd event never loads OpenVPN's code otherwise."""
    from l2tproute.transports.l2tp.carrier import L2tpTransport

    found: list[Transport] = [L2tpTransport(runner)]
    if openvpn_configured(run_dir):
        from l2tproute.transports.openvpn.carrier import OpenVpnTransport

        found.append(OpenVpnTransport(runner, run_dir))
    return tuple(found)
