"""The transports behind one seam: a pppd event on a server where OpenVPN never ran loads none
of OpenVPN's code (transports.configured), and one where it ran does; the operations import no
transport by name (tests/unit/test_boundaries.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fronts import Fronts, run_hook_script, wait_for_worker

PEER = "10.255.10.1"


def _fronts_reporting_modules(tmp_path: Path, report: Path) -> Fronts:
    """The hooks' fronts with a worker that, once done, notes which OpenVPN modules it loaded."""
    worker = tmp_path / "worker-reporting"
    worker.write_text(
        f"#!{sys.executable} -I\n"
        "import json, sys\n"
        "from l2tproute.fronts.worker import main\n"
        "code = main(sys.argv[1:])\n"
        f"with open({str(report)!r}, 'a') as out:\n"
        "    out.write(json.dumps(sorted(m for m in sys.modules if m.startswith('l2tproute.transports.openvpn')))"
        " + '\\n')\n"
        "sys.exit(code)\n")
    worker.chmod(0o755)
    return Fronts(tmp_path / "fronts", worker=str(worker))


def test_a_pppd_event_loads_openvpn_code_only_where_openvpn_left_records(netns, store_dir, tmp_path):
    netns.add_ppp("ppp0", PEER)
    (store_dir / f"{PEER}.routes").write_text(f"192.168.50.0/24 via {PEER}\n")
    run_dir, report = tmp_path / "run", tmp_path / "modules.jsonl"
    run_dir.mkdir()
    fronts = _fronts_reporting_modules(tmp_path, report)
    env = {"L2TP_RUN_DIR": str(run_dir), "L2TP_ROUTES_DIR": str(store_dir)}
    args = ["ppp0", "/dev/pts/1", "0", "10.254.0.1", PEER, ""]

    assert run_hook_script(fronts, "up", args, ns=netns, env=env).returncode == 0
    wait_for_worker(run_dir)
    assert netns.tagged_set() == {("192.168.50.0/24", PEER, "ppp0", "main")}
    assert [json.loads(line) for line in report.read_text().splitlines()] == [[]]

    # Once OpenVPN's hooks have kept records here, the same event asks OpenVPN's transport too.
    (run_dir / "openvpn").mkdir()
    assert run_hook_script(fronts, "down", args, ns=netns, env=env).returncode == 0
    wait_for_worker(run_dir)
    assert netns.tagged_set() == set()
    loaded = [json.loads(line) for line in report.read_text().splitlines()]
    assert loaded[0] == [] and "l2tproute.transports.openvpn.carrier" in loaded[-1]
