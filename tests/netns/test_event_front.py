"""The hooks' sh front records exactly the events the library's parser accepts.

bin/l2tp-routes-event reads pppd's arguments (or Debian's PPP_* variables) in POSIX sh,
so that no Python starts per hook; l2tproute.transports.l2tp.events.parse_event is the same reading in
Python. Over fixed and generated command lines both must agree: the front spools an
event exactly when parse_event accepts, with the same link, peer and direction, and
the spooled name is one that spool.parse_name reads back to the same values.
"""

from __future__ import annotations

import pytest
from fronts import Fronts, run_hook_script, spooled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2tproute.core import constants as C
from l2tproute.core.model import InputError
from l2tproute.system.spool import parse_name
from l2tproute.transports.l2tp.events import parse_event


def front_outcome(fronts: Fronts, run_dir, direction: str, args: list, env: dict):
    """What the front spooled, as (iface, direction, peer), or None; spool emptied after."""
    result = run_hook_script(fronts, direction, args, env={**env, C.RUN_DIR_ENV: str(run_dir)})
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), args
    names = spooled(run_dir)
    for name in names:
        (run_dir / "spool" / name).unlink()
    assert len(names) <= 1, names
    if not names:
        return None
    event = parse_name(names[0])
    return event.iface, event.direction, str(event.peer)


def library_outcome(direction: str, args: list, env: dict):
    try:
        event = parse_event(direction, args, env)
    except InputError:
        return None
    return event.iface, event.direction, str(event.peer)


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    # The worker is never started here: the spool is what is compared.
    return Fronts(tmp_path_factory.mktemp("fronts"), worker="/bin/false")


CASES = [
    (["ppp0", "/dev/pts/1", "0", "10.254.0.1", "10.255.10.1", ""], {}),
    (["ppp0", "", "", "", "10.255.10.1"], {}),
    (["ppp1234567890123", "tty", "0", "1.2.3.4", "10.255.10.1", ""], {}),
    (["ppp12345678901234", "tty", "0", "1.2.3.4", "10.255.10.1", ""], {}),
    (["eth0.100", "tty", "0", "1.2.3.4", "100.64.0.1", "x"], {}),
    (["..", "tty", "0", "1.2.3.4", "10.255.10.1", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "010.255.10.1", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "10.255.10.256", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "0.1.2.3", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "127.0.0.1", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "223.255.255.255", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "224.0.0.1", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "255.255.255.255", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "1.2.3", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "1.2.3.4.5", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "1..3.4", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", ".1.2.3", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "1.2.3.4 ", ""], {}),
    (["ppp0", "tty", "0", "1.2.3.4", "1.2.3.0004", ""], {}),
    (["ppp0,1", "tty", "0", "1.2.3.4", "10.255.10.1", ""], {}),
    (["", "tty", "0", "1.2.3.4", "10.255.10.1"], {"PPP_IFACE": "ppp9", "PPP_REMOTE": "10.255.10.9"}),
    ([], {"PPP_IFACE": "ppp9", "PPP_REMOTE": "10.255.10.9"}),
    (["ppp0"], {"PPP_IFACE": "ppp9", "PPP_REMOTE": "10.255.10.9"}),
    ([], {"PPP_IFACE": "ppp9"}),
    ([], {"PPP_REMOTE": "10.255.10.9"}),
    ([], {"PPP_IFACE": "ppp9", "PPP_REMOTE": "10.255.10.09"}),
    ([], {"PPP_IFACE": "p p", "PPP_REMOTE": "10.255.10.9"}),
]


@pytest.mark.parametrize("direction", ["up", "down"])
@pytest.mark.parametrize("args, env", CASES)
def test_the_front_spools_exactly_what_parse_event_accepts(fronts, tmp_path, direction, args, env):
    expected = library_outcome(direction, args, env)
    assert front_outcome(fronts, tmp_path / "run", direction, args, env) == expected


_WORD = st.one_of(
    st.from_regex(r"\A(?:[0-9]{1,4}\.){0,4}[0-9]{0,4}\Z"),
    st.from_regex(r"\A[A-Za-z0-9_.+@,-]{0,17}\Z"),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(iface=_WORD, peer=_WORD, direction=st.sampled_from(["up", "down"]), through_env=st.booleans())
def test_generated_links_and_peers_agree(fronts, tmp_path, iface, peer, direction, through_env):
    if through_env:
        args, env = [], {"PPP_IFACE": iface, "PPP_REMOTE": peer}
    else:
        args, env = [iface, "tty", "0", "10.254.0.1", peer, ""], {}
    assert front_outcome(fronts, tmp_path / "run", direction, args, env) == library_outcome(direction, args, env)


def test_a_link_s_events_are_numbered_in_the_order_of_its_hooks(fronts, tmp_path):
    run_dir = tmp_path / "run"
    env = {C.RUN_DIR_ENV: str(run_dir)}
    for direction, peer in (("up", "10.255.10.1"), ("down", "10.255.10.1"), ("up", "10.255.10.2")):
        run_hook_script(fronts, direction, ["ppp5", "tty", "0", "10.254.0.1", peer, ""], env=env)
    run_hook_script(fronts, "up", ["ppp6", "tty", "0", "10.254.0.1", "10.255.10.6", ""], env=env)
    events = sorted((parse_name(name) for name in spooled(run_dir)), key=lambda e: (e.iface, e.seq))
    assert [(e.iface, e.seq, e.direction, str(e.peer)) for e in events] == [
        ("ppp5", 1, "up", "10.255.10.1"), ("ppp5", 2, "down", "10.255.10.1"), ("ppp5", 3, "up", "10.255.10.2"),
        ("ppp6", 1, "up", "10.255.10.6")]
