"""`--version`, `--help` with examples for every command, and bash completion, all
through the installed console script (the one sudo, the hooks and the panel run)."""

from __future__ import annotations

import re
import shlex
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from conftest import routectl_path, run_routectl

from l2tproute import __version__
from l2tproute.fronts.cli import app

ROOT = typer.main.get_command(app)
COMMANDS = sorted(ROOT.commands)


def test_version_prints_name_and_the_packages_version():
    result = run_routectl("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"l2tp-routectl {__version__}\n", "")
    assert __version__ == version("l2tproute")  # what pip installed is what the tool says


def test_commands_are_the_contracts_plus_status():
    assert set(COMMANDS) == {"add", "del", "list", "apply", "status"}


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_top_level_help_lists_every_command_and_examples(flag):
    result = run_routectl(flag)
    assert result.returncode == 0 and result.stderr == ""
    listed = re.search(r"Commands:\n(.*?)\n\n", result.stdout, re.S).group(1)
    assert [line.split()[0] for line in listed.splitlines()] == ["add", "del", "list", "apply", "status"]
    assert "Examples:\n    l2tp-routectl add --peer 10.255.10.2 --dst 192.168.20.0/24\n" in result.stdout
    for option in ("--version", "--install-completion", "--show-completion"):
        assert option in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples_that_parse(command):
    result = run_routectl(command, "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith(f"Usage: l2tp-routectl {command} [OPTIONS]\n")
    examples = [line.split("Example: ", 1)[1] for line in result.stdout.splitlines() if "Example: " in line]
    assert examples, result.stdout
    for example in examples:
        argv = shlex.split(example.split("  (")[0])
        assert argv[:2] == ["l2tp-routectl", command], example
        # Parsing an example checks each option exists and has its value; nothing runs.
        sub = ROOT.commands[command]
        with sub.make_context(command, argv[2:], parent=ROOT.make_context("l2tp-routectl", [command])) as ctx:
            assert ctx.args == [], example  # nothing left over
    # Every option says what it is for.
    for param in ROOT.commands[command].params:
        assert getattr(param, "help", None), f"{command} {param.opts} has no help text"


def test_short_help_flag_works_on_commands_too():
    short, long = run_routectl("list", "-h"), run_routectl("list", "--help")
    assert (short.returncode, short.stderr) == (0, ""), short
    assert short.stdout.startswith("Usage: l2tp-routectl list [OPTIONS]\n"), short.stdout
    assert short.stdout == long.stdout


# -- bash completion ------------------------------------------------------------

def bash(script: str, home: Path, interactive: bool = False) -> subprocess.CompletedProcess:
    """Run bash as an admin's login would: the console script on PATH, HOME as given."""
    script_dir = str(Path(routectl_path()).parent)
    env = {"PATH": f"{script_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
           "TERM": "dumb"}
    # A trailing command keeps bash from exec'ing the last one: the command's parent must be
    # bash, or completion finds whatever shell ran pytest (or none).
    script += "\nstatus=$?; exit $status"
    argv = ["bash", "-i", "-c", script] if interactive else ["bash", "--norc", "--noprofile", "-c", script]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)


COMPLETE = r"""
complete_line() {  # complete_line "WORDS" -> what TAB offers for the last word
    read -ra COMP_WORDS <<< "$1"
    [[ $1 == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMPREPLY=()
    _l2tp_routectl_completion l2tp-routectl
    echo "$1|${COMPREPLY[*]}"
}
"""

CASES = {
    "l2tp-routectl ": "add del list apply status",
    "l2tp-routectl a": "add apply",
    "l2tp-routectl s": "status",
    "l2tp-routectl add --p": "--peer",
    "l2tp-routectl add --peer 10.255.10.2 --d": "--dst --dev --dry-run",
    "l2tp-routectl list --p": "--peer",
    "l2tp-routectl del --dst all --u": "--user",
    "l2tp-routectl --v": "--version",
}


def test_show_completion_gives_a_bash_script_that_completes_commands_and_options(tmp_path):
    shown = bash("l2tp-routectl --show-completion", tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "complete -o default -F _l2tp_routectl_completion l2tp-routectl" in shown.stdout
    (tmp_path / "completion.sh").write_text(shown.stdout)
    calls = "".join(f"complete_line {shlex.quote(words)}\n" for words in CASES)
    result = bash(f"source {tmp_path / 'completion.sh'}\n{COMPLETE}\n{calls}", tmp_path)
    assert result.returncode == 0, result.stderr
    got = dict(line.split("|", 1) for line in result.stdout.splitlines())
    assert {words: set(offer.split()) for words, offer in got.items()} == \
        {words: set(offer.split()) for words, offer in CASES.items()}


def test_install_completion_for_bash_is_picked_up_by_a_new_shell(tmp_path):
    installed = bash("l2tp-routectl --install-completion", tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "bash completion installed in" in installed.stdout
    assert (tmp_path / ".bash_completions" / "l2tp-routectl.sh").is_file()
    assert "l2tp-routectl.sh" in (tmp_path / ".bashrc").read_text()
    fresh = bash("complete -p l2tp-routectl", tmp_path, interactive=True)
    assert fresh.stdout.strip() == "complete -o default -F _l2tp_routectl_completion l2tp-routectl", fresh.stderr


@pytest.mark.parametrize("flag", ["--show-completion", "--install-completion"])
def test_completion_from_a_shell_it_does_not_know_is_one_clear_error(tmp_path, flag):
    # sh is the nearest shell above the command (no exec: it stays the parent).
    result = subprocess.run(["sh", "-c", '"$0" "$1"; status=$?; exit $status', routectl_path(), flag],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                            timeout=60)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"l2tp-routectl: error: {flag} could not tell which shell it was started from "
                             "(found sh); run it from an interactive bash, zsh, fish or powershell\n")
    assert list(tmp_path.iterdir()) == []  # nothing installed
