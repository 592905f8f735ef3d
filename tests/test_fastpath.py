"""The lean `list` path answers exactly as the full CLI: same stdout, stderr and exit status.

Every case runs twice in this process, once through `l2tproute.cli.run` (typer) and
once through `l2tproute.entry.run` (fast path first, the full CLI when it declines),
with fd-level capture. Cases marked fast must really be answered by the fast path,
so the comparison is not just the full CLI against itself.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from l2tproute import cli, entry, fastpath
from l2tproute import constants as C
from l2tproute.store import store_dir_from_environment

REPO = Path(__file__).resolve().parent.parent

CLEAN = {
    "10.255.10.1": b"192.168.20.0/24 via 10.255.10.1\n10.1.0.0/16 via 10.255.10.1 dev ppp7\n",
    "10.255.10.11": b"# office\n\n10.2.0.0/16 via 10.255.10.11\n   \t\n  # indented comment\n"
    b"0.0.0.0/0 via 10.255.10.11\n",
    "10.255.10.12": b"",
    "10.255.10.13": b"10.3.0.0/16 via 10.255.10.13\n# last line, a comment without newline",
    "9.255.10.1": b"172.16.0.0/12 via 10.0.0.1 dev eth0.100\n192.0.2.7/32 via 223.255.255.254\n",
}

#: Lines with something to warn about, each alone among clean lines in a file of its own: the fast
#: path must notice every one of them (it prints the file and asks the real parser for the warnings).
ODD_LINES = [
    b"garbage\n",
    b"10.1.0.0/16 via 10.255.11.1\r\n",
    b"\r\r\n",
    b" \r \n",
    b"\r\n\r\n# x\r\n",
    b"10.1.0.0/16  via 10.255.11.1\n",
    b"10.1.0.0/16 via 10.255.11.1 \n",
    b"\t10.1.0.0/16 via 10.255.11.1\n",
    b" 10.1.0.0/16 via 10.255.11.1\n",
    b"10.1.0.0/16\tvia 10.255.11.1\n",
    "# caf\u00e9 \u0661\u0662\n".encode(),
    b"# \xff\n",
    b"192.168.1.5/24 via 10.255.11.1\n",
    b"10.1.0.1/31 via 10.255.11.1\n",
    b"0.0.0.1/0 via 10.255.11.1\n",
    b"010.1.0.0/16 via 10.255.11.1\n",
    b"10.1.0.0/016 via 10.255.11.1\n",
    b"10.1.0.0/33 via 10.255.11.1\n",
    b"10.1.0.0/ via 10.255.11.1\n",
    b"10.1.0.0 via 10.255.11.1\n",
    b"10.1.0.0/16 via 10.255.11.01\n",
    b"10.1.0.0/16 via 224.0.0.1\n",
    b"10.1.0.0/16 via 0.1.2.3\n",
    b"10.1.0.0/16 via 127.0.0.1\n",
    b"10.1.0.0/16 via 240.0.0.1\n",
    b"10.1.0.0/16 via 255.255.255.255\n",
    b"10.1.0.0/16 via 10.255.11.1 metric 10\n",
    b"10.1.0.0/16 via 10.255.11.1 metric 007\n",
    b"10.1.0.0/16 via 10.255.11.1 table 100\n",
    b"2001:db8:100::/48 via 10.255.11.1\n",
    b"10.1.0.0/16 via 10.255.11.1 dev\n",
    b"10.1.0.0/16 via 10.255.11.1 dev ppp1 dev ppp2\n",
    b"10.1.0.0/16 via 10.255.11.1 dev .\n",
    b"10.1.0.0/16 via 10.255.11.1 dev ..\n",
    b"10.1.0.0/16 via 10.255.11.1 dev a_name_too_long_x\n",
    b"10.1.0.0/16 via 10.255.11.1 dev pp#1\n",
    b"10.1.0.0/16 via 10.255.11.1 gw ppp1\n",
    b"10.1.0.0/16 via 10.255.11.1 # a comment\n",
    b"10.1.0.0/16 via 10.255.11.1#x\n",
    b"\x0010.3.0.0/16\n",
    b"10.1.0.0/16 via\n",
    b"10.1.0.0/16 VIA 10.255.11.1\n",
    b"\xef\xbb\xbf10.1.0.0/16 via 10.255.11.1\n",
    "10.1.0.0/16 via \u0661.2.3.4\n".encode(),
    b"10.1.0.0/16 via 10.255.11.1\x0c\n",
    b"\x0b\n",
]
ODD_CONTENT = {
    f"10.255.11.{number}": b"# before\n10.9.0.0/16 via 10.255.11.9\n" + line + b"10.8.0.0/16 via 10.255.11.9\n"
    for number, line in enumerate(ODD_LINES, 1)
}
ODD_CONTENT["10.255.12.1"] = b"10.1.0.0/16 via 10.255.12.1"  # no newline at the end
ODD_CONTENT["10.255.12.2"] = b"10.1.0.0/16 via 10.255.12.2\n  "  # blanks without newline at the end


PEER_ARGS = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "01.2.3.4",
    "1.2.3.256",
    "\u0661.2.3.4",
    "1.2.3.4/32",
    "::1",
    "224.0.0.1",
    "255.255.255.255",
    "127.0.0.1",
    "0.1.2.3",
    "0.0.0.0",
    " 10.255.10.1",
    "10.255.10.1 ",
    "10.255.10.1\n",
    "--json",
    "-h",
    "10.255.10.99",
    "1.1.1.1",
    "10.255.10.1.",
    "1..2.3",
    "x.y.z.w",
    "1.2.3.-4",
    "+1.2.3.4",
    "10.255.10.30",
    "10.255.10.31",
    "10.255.10.32",
    "10.255.10.33",
]


def _populate(store: Path, files: dict) -> None:
    for peer, data in files.items():
        (store / f"{peer}.routes").write_bytes(data)


@pytest.fixture
def mixed_store(store_dir: Path) -> Path:
    """Clean files, odd files, and entries that are not route files at all."""
    _populate(store_dir, CLEAN)
    _populate(store_dir, ODD_CONTENT)
    (store_dir / "10.255.10.30.routes").symlink_to(store_dir / "10.255.10.1.routes")
    (store_dir / "10.255.10.31.routes").mkdir()
    os.mkfifo(store_dir / "10.255.10.32.routes")
    (store_dir / "10.255.10.33.routes").write_bytes(b"#" * (C.MAX_ROUTE_FILE_BYTES + 1))
    return store_dir


def _outcome(capfd, call, argv):
    capfd.readouterr()
    try:
        code = call(list(argv))
    except SystemExit as exc:  # click's shell completion exits by itself
        code = exc.code
    sys.stdout.flush()
    sys.stderr.flush()
    out, err = capfd.readouterr()
    return code, out, err


def _same(capfd, argv, *, fast=None):
    """Compare full CLI and entry for argv; `fast` says whether the fast path must (not) answer."""
    full = _outcome(capfd, cli.run, argv)
    ours = _outcome(capfd, entry.run, argv)
    assert ours == full, f"argv {argv!r}"
    if fast is not None:
        answered = _outcome(capfd, fastpath.run_fast, argv)
        assert (answered[0] is not None) == fast, f"argv {argv!r}: fast path answered {answered[0]!r}"
        if fast:
            assert answered == full
    return full


@pytest.mark.parametrize("peer", sorted(CLEAN))
def test_list_peer_of_a_clean_file_is_answered_by_the_fast_path_as_the_full_cli_does(capfd, mixed_store, peer):
    code, out, err = _same(capfd, ["list", "--peer", peer], fast=True)
    assert (code, err) == (0, "")
    assert out.startswith(f"Routes for peer {peer}:\n")
    _same(capfd, ["list", f"--peer={peer}"], fast=True)


@pytest.mark.parametrize("peer", sorted(ODD_CONTENT))
def test_list_peer_of_an_odd_file_prints_it_as_is_with_the_parsers_warnings(capfd, mixed_store, peer):
    code, out, err = _same(capfd, ["list", "--peer", peer], fast=True)
    assert code == 0 and out.startswith(f"Routes for peer {peer}:\n")
    assert all(line.startswith("l2tp-routectl: warning:") for line in err.splitlines())


@pytest.mark.parametrize("peer", PEER_ARGS)
def test_list_peer_with_any_peer_argument_matches_the_full_cli(capfd, mixed_store, peer):
    _same(capfd, ["list", "--peer", peer])
    _same(capfd, ["list", f"--peer={peer}"])


def test_bad_peers_and_unreadable_entries_are_left_to_the_full_cli(capfd, mixed_store):
    for peer in [
        "01.2.3.4",
        "127.0.0.1",
        "1.2.3.4/32",
        "\u0661.2.3.4",
        "10.255.10.30",
        "10.255.10.31",
        "10.255.10.32",
        "10.255.10.33",
    ]:
        code, _out, err = _same(capfd, ["list", "--peer", peer], fast=False)
        assert code != 0 and err.startswith("l2tp-routectl: error:")
    code, out, _err = _same(capfd, ["list", "--peer", "10.255.10.99"], fast=True)
    assert (code, out) == (0, "No routes found for peer: 10.255.10.99\n")


ARGV_SHAPES = [
    [],
    ["list"],
    ["LIST"],
    ["list", "--json"],
    ["list", "--help"],
    ["list", "-h"],
    ["--help"],
    ["--version"],
    ["list", "--peer"],
    ["list", "--peer="],
    ["list", "--peer", "10.255.10.1", "--json"],
    ["list", "--json", "--peer", "10.255.10.1"],
    ["list", "--peer", "10.255.10.1", "--peer", "10.255.10.1"],
    ["list", "--peer=10.255.10.1", "--peer=10.255.10.11"],
    ["list", "--peer", "10.255.10.1", "--dry-run"],
    ["list", "--netns", "nope"],
    ["list", "extra"],
    ["list", "--PEER", "10.255.10.1"],
    ["list", "--peer", "10.255.10.1", "--"],
    ["list", "--", "--peer", "10.255.10.1"],
    ["list", "--pee", "10.255.10.1"],
    ["list", "-p", "10.255.10.1"],
    ["list", "--peer", "10.255.10.1", "extra"],
    ["apply", "--peer", "10.255.10.1", "--dry-run"],
    ["add", "--peer"],
    ["del"],
    ["status", "--help"],
    ["list", "--json", "--json"],
    ["list", "--peer", "--json"],
]


@pytest.mark.parametrize("argv", ARGV_SHAPES, ids=lambda a: " ".join(a) or "(none)")
def test_every_other_command_line_gives_what_the_full_cli_gives(capfd, mixed_store, argv):
    _same(capfd, argv, fast=False)


def test_list_all_of_a_clean_store_is_answered_by_the_fast_path(capfd, store_dir):
    _populate(store_dir, CLEAN)
    (store_dir / "README").write_text("not a route file\n")
    (store_dir / C.LOCK_FILE_NAME).write_bytes(b"")
    (store_dir / ".10.255.10.40.routes").write_bytes(b"hidden\n")
    (store_dir / f"{C.TEMP_FILE_PREFIX}10.255.10.1.abc").write_bytes(b"half\n")
    code, out, err = _same(capfd, ["list"], fast=True)
    assert (code, err) == (0, "")
    peers = [line[len("Peer: ") :] for line in out.splitlines() if line.startswith("Peer: ")]
    assert peers == ["9.255.10.1", "10.255.10.1", "10.255.10.11", "10.255.10.12", "10.255.10.13"]  # address order


def test_list_all_with_odd_files_gets_the_parsers_warnings_in_peer_order(capfd, store_dir):
    _populate(store_dir, CLEAN)
    _populate(store_dir, ODD_CONTENT)
    code, _out, err = _same(capfd, ["list"], fast=True)
    assert code == 0 and err.count("warning:") >= len(ODD_CONTENT) - 6  # a few odd-looking lines are fine


@pytest.mark.parametrize(
    "odd", ["symlink", "directory", "fifo", "big", "bad-name", "leading-zero", "loopback", "unicode-digits", "not-utf8"]
)
def test_list_all_with_an_odd_entry_is_left_to_the_full_cli(capfd, store_dir, odd):
    _populate(store_dir, CLEAN)
    entry_path = {
        "bad-name": "office.routes",
        "leading-zero": "10.255.10.01.routes",
        "loopback": "127.0.0.1.routes",
        "unicode-digits": "\u0661\u0660.255.10.1.routes",
    }.get(odd, "10.255.10.50.routes")
    path = store_dir / entry_path
    if odd == "symlink":
        path.symlink_to(store_dir / "10.255.10.1.routes")
    elif odd == "directory":
        path.mkdir()
    elif odd == "fifo":
        os.mkfifo(path)
    elif odd == "big":
        path.write_bytes(b"#" * (C.MAX_ROUTE_FILE_BYTES + 1))
    elif odd == "not-utf8":
        path = Path(os.fsdecode(bytes(store_dir) + b"/\xff10.255.10.1.routes"))
        path.write_bytes(b"")
    else:
        path.write_bytes(b"10.9.0.0/16 via 10.255.10.1\n")
    code, _out, err = _same(capfd, ["list"], fast=False)
    assert code == 0 and "warning:" in err


def test_list_all_of_a_missing_empty_or_broken_store(capfd, store_dir, monkeypatch):
    assert _same(capfd, ["list"], fast=True) == (0, "No routes found\n", "")
    monkeypatch.setenv(C.STORE_DIR_ENV, str(store_dir / "missing"))
    assert _same(capfd, ["list"], fast=True) == (0, "No routes found\n", "")
    assert _same(capfd, ["list", "--peer", "10.255.10.1"], fast=True)[1] == "No routes found for peer: 10.255.10.1\n"
    not_a_dir = store_dir / "file"
    not_a_dir.write_bytes(b"")
    monkeypatch.setenv(C.STORE_DIR_ENV, str(not_a_dir))
    code, _out, err = _same(capfd, ["list"], fast=False)
    assert code == 1 and "error" in err
    _same(capfd, ["list", "--peer", "10.255.10.1"], fast=False)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {C.STORE_DIR_ENV: ""},
        {C.STORE_DIR_ENV: "/srv/x"},
        {"SUDO_UID": "33", C.STORE_DIR_ENV: "/srv/x"},
        {"SUDO_USER": "www-data", C.STORE_DIR_ENV: "/srv/x"},
        {"SUDO_UID": ""},
    ],
)
def test_the_fast_path_finds_the_store_where_the_store_module_does(monkeypatch, environ):
    for name in (C.STORE_DIR_ENV, "SUDO_UID", "SUDO_USER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert fastpath._store_dir() == store_dir_from_environment()


def test_under_sudo_the_environment_cannot_move_the_store(capfd, mixed_store, monkeypatch):
    monkeypatch.setenv("SUDO_UID", "33")
    for argv in (["list"], ["list", "--peer", "10.255.10.1"]):
        _same(capfd, argv)


def test_shell_completion_requests_are_left_to_the_full_cli(capfd, mixed_store, monkeypatch):
    monkeypatch.setenv("_L2TP_ROUTECTL_COMPLETE", "bash_source")
    _same(capfd, ["list", "--peer", "10.255.10.1"], fast=False)


def test_the_console_script_answers_list_without_loading_typer_sh_filelock_or_click(mixed_store, tmp_path):
    """Through the entry point, in a fresh isolated interpreter (-I -S, as the lean launcher starts it)."""
    paths = [str(REPO)] + site.getsitepackages()
    probe = (
        "import sys, atexit\n"
        f"sys.path[:0] = {paths!r}\n"
        "before = set(sys.modules)\n"
        "from l2tproute.entry import main\n"
        "heavy = ('typer', 'sh', 'filelock', 'click', 're', 'ipaddress', 'dataclasses', 'typing', 'json')\n"
        "atexit.register(lambda: sys.stderr.write(\n"
        "    'LOADED ' + ' '.join(m for m in heavy if m in sys.modules and m not in before) + '\\n'))\n"
        "sys.argv[0] = 'l2tp-routectl'\n"
        "main()\n"
    )
    for argv, expect in (
        (["list", "--peer", "10.255.10.1"], ""),
        (["list", "--peer=10.255.10.11"], ""),
        (["list", "--peer", "10.255.10.99"], ""),
        (["list", "--peer", "10.255.11.1"], "re ipaddress dataclasses typing"),  # the real parser
        (["list", "--json"], "typer re ipaddress dataclasses typing json"),
    ):  # the full CLI
        ours = subprocess.run(
            [sys.executable, "-I", "-S", "-c", probe, *argv], capture_output=True, env=dict(os.environ)
        )
        full = subprocess.run(
            [sys.executable, "-I", "-c", "import sys; from l2tproute.cli import run; sys.exit(run())", *argv],
            capture_output=True,
            env=dict(os.environ),
        )
        *warnings, loaded = ours.stderr.decode().splitlines()
        assert (ours.returncode, ours.stdout, "\n".join(warnings)) == (
            full.returncode,
            full.stdout,
            full.stderr.decode().rstrip("\n"),
        ), argv
        loaded_set = set(loaded.split()[1:])
        assert set(expect.split()) <= loaded_set, argv
        if "typer" not in expect:
            assert not loaded_set & {"typer", "click", "sh", "filelock"}, argv
        if not expect:
            assert not loaded_set, argv


def test_a_reader_that_went_away_gets_the_same_silent_status_1_from_both_paths(mixed_store):
    """The panel's request can be cancelled mid-page: no traceback, no 'Exception ignored', status 1."""
    for argv in (
        ["list", "--peer", "10.255.10.1"],
        ["list", "--peer", "10.255.11.1"],
        ["list", "--peer", "10.255.10.99"],
    ):
        seen = []
        for code in (
            "import sys; from l2tproute.cli import run; sys.exit(run())",
            "from l2tproute.entry import main; main()",
        ):
            read_end, write_end = os.pipe()
            os.close(read_end)  # every write to stdout now fails with EPIPE
            try:
                done = subprocess.run(
                    [sys.executable, "-I", "-c", code, *argv],
                    stdout=write_end,
                    stderr=subprocess.PIPE,
                    env=dict(os.environ),
                )
            finally:
                os.close(write_end)
            seen.append((done.returncode, done.stderr))
        assert seen[0] == seen[1] == (1, b""), argv


# -- properties: what the fast path calls clean or valid, the real parser agrees ---------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from l2tproute.model import InputError, parse_peer  # noqa: E402
from l2tproute.routefile import parse, problems  # noqa: E402

_PIECES = [
    b"10.1.0.0/16",
    b"192.168.1.5/24",
    b"0.0.0.0/0",
    b"10.255.10.1",
    b"224.0.0.1",
    b"010.1.0.0/16",
    b"/32",
    b"via",
    b"VIA",
    b"dev",
    b"ppp1",
    b"eth0.100",
    b"a_name_too_long_x",
    b"metric",
    b"7",
    b"table",
    b"main",
    b" ",
    b"  ",
    b"\t",
    b"\r",
    b"#",
    b".",
    b"/",
    b"0",
    b"01",
    b"255",
    b"256",
    b"\xff",
    b"\x00",
    b"\x0c",
    "\u0661".encode(),
]
_DSTS = [
    b"10.1.0.0/16",
    b"192.168.1.5/24",
    b"0.0.0.0/0",
    b"0.0.0.1/0",
    b"10.1.0.0/33",
    b"10.1.0.0/016",
    b"1.2.3.4/32",
    b"10.1.0.0",
    b"010.1.0.0/16",
    b"10.1.0.0/",
]
_GATEWAYS = [
    b"10.255.10.1",
    b"10.0.0.1",
    b"223.255.255.254",
    b"224.0.0.1",
    b"0.1.2.3",
    b"127.0.0.1",
    b"255.255.255.255",
    b"10.255.10.01",
    b"1.2.3",
]
_DEVS = [b"ppp1", b".", b"..", b"eth0.100", b"a_name_too_long_x", b"a_name_15_chars", b"pp#1", b""]
_ROUTE_SHAPED = st.tuples(
    st.sampled_from(_DSTS),
    st.sampled_from([b"via", b"VIA", b"dev"]),
    st.sampled_from(_GATEWAYS),
    st.sampled_from([[], [b"dev"], [b"metric", b"7"], [b"table", b"100"]])
    | st.sampled_from(_DEVS).map(lambda d: [b"dev", d]),
).map(lambda t: b" ".join([t[0], t[1], t[2], *t[3]]))
_LINE = st.one_of(
    _ROUTE_SHAPED,
    st.tuples(_ROUTE_SHAPED, st.lists(st.sampled_from(_PIECES), max_size=3).map(b"".join)).map(b"".join),
    st.lists(st.sampled_from(_PIECES), max_size=8).map(b"".join),  # anything
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINE, max_size=5), st.sampled_from([b"", b"\n", b"\r\n"]))
def test_a_file_the_fast_path_calls_clean_has_nothing_for_the_parser_to_warn_about(lines, end):
    data = b"\n".join(lines) + end
    if fastpath._is_clean(data):
        assert problems(parse(data), "f") == []


def test_every_route_shaped_line_the_fast_path_calls_clean_is_clean_for_the_parser():
    """Exhaustive over the shapes above (a few thousand lines), each alone and with each ending."""
    import itertools

    extras = [[], [b"dev"], [b"metric", b"7"], [b"table", b"100"]] + [[b"dev", d] for d in _DEVS]
    clean = 0
    for dst, verb, gw, extra in itertools.product(_DSTS, [b"via", b"VIA", b"dev"], _GATEWAYS, extras):
        line = b" ".join([dst, verb, gw, *extra])
        for data in (line, line + b"\n", line + b"\r\n", line + b" \n", b"#\n" + line + b"\n"):
            if fastpath._is_clean(data):
                clean += 1
                assert problems(parse(data), "f") == [], data
    assert clean >= 50  # the check above really ran on clean lines


def test_the_clean_file_property_sees_clean_route_files():
    """The property above only proves something if clean files with routes come up."""
    clean = b"10.1.0.0/16 via 10.255.10.1 dev ppp1\n0.0.0.0/0 via 10.255.10.1\n"
    assert fastpath._is_clean(clean) and problems(parse(clean), "f") == []
    assert not fastpath._is_clean(b"10.1.0.0/16 via 0.1.2.3\n")


_PEER_TEXT = st.one_of(
    st.lists(
        st.sampled_from(["0", "1", "01", "10", "127", "223", "224", "240", "255", "256", "999", "", "\u0661", " "]),
        min_size=3,
        max_size=5,
    ).map(".".join),
    st.text(max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(_PEER_TEXT)
def test_the_fast_path_accepts_exactly_the_peers_the_model_accepts(text):
    try:
        expected = str(parse_peer(text))
    except InputError:
        expected = None
    found = fastpath._peer(text)
    assert (found[0].decode() if found else None) == expected


def test_a_closed_stdout_is_left_to_the_full_cli(mixed_store):
    """Python sets sys.stdout to None when fd 1 is closed; the fast path must not answer then."""
    seen = []
    for code in (
        "import sys; from l2tproute.cli import run; sys.exit(run())",
        "from l2tproute.entry import main; main()",
    ):
        done = subprocess.run(
            [sys.executable, "-I", "-c", code, "list", "--peer", "10.255.10.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dict(os.environ),
            preexec_fn=lambda: os.close(1),
        )
        last = done.stderr.decode().strip().splitlines()[-1:]
        seen.append((done.returncode, last))
    assert seen[0] == seen[1]
    import unittest.mock

    with unittest.mock.patch.object(sys, "stdout", None):
        assert fastpath.run_fast(["list", "--peer", "10.255.10.1"]) is None
