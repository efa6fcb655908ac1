"""The command line's surface: `--version`, server flags on either side of the subcommand, exit statuses.

What needs a server (unreachable ones, differences) is in tests/integration/test_cli.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

from profile_status import cli
from profile_status.cli import _parser, main

SUBCOMMANDS = ["migrate", "projector", "api", "resync", "verify", "simulate", "demo"]
FLAGS = {"database_url": "--database-url", "redis_url": "--redis-url"}


def _version_commands() -> list[list[str]]:
    commands = [[sys.executable, "-m", "profile_status.cli", "--version"]]
    script = shutil.which("profile-status")
    if script:  # the console script, as installed by `pip install -e .`
        commands.append([script, "--version"])
    return commands


@pytest.mark.parametrize("command", _version_commands(), ids=lambda c: "console script" if "-m" not in c else "python -m")
def test_version_prints_the_package_version_and_exits_0(command: list[str]) -> None:
    out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"profile-status {metadata.version('profile-status')}\n"
    assert re.fullmatch(r"profile-status \d+\.\d+\.\d+\n", out.stdout)


def test_version_comes_from_the_package_metadata(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(metadata, "version", lambda name: "7.8.9" if name == "profile-status" else "?")
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == "profile-status 7.8.9\n"


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
@pytest.mark.parametrize("dest", list(FLAGS))
@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, None, None),
        ("x://before", None, "x://before"),
        (None, "x://after", "x://after"),
        ("x://before", "x://after", "x://after"),  # the value nearer the command wins
    ],
    ids=["neither", "before", "after", "both"],
)
def test_server_flags_before_or_after_the_subcommand(
    subcommand: str, dest: str, before: str | None, after: str | None, expected: str | None
) -> None:
    flag = FLAGS[dest]
    argv = [*([flag, before] if before else []), subcommand, *([flag, after] if after else [])]
    args = _parser().parse_args(argv)
    assert getattr(args, dest) == expected
    other = next(d for d in FLAGS if d != dest)
    assert getattr(args, other) is None, "one flag must not disturb the other"


def test_both_flags_mixed_around_the_subcommand_and_its_own_options() -> None:
    args = _parser().parse_args(
        ["--redis-url", "redis://r", "verify", "--settle", "0.5", "--database-url", "postgresql://d"]
    )
    assert (args.database_url, args.redis_url, args.settle) == ("postgresql://d", "redis://r", 0.5)
    args = _parser().parse_args(["api", "--port", "9000", "--redis-url", "redis://r", "--workers", "2"])
    assert (args.redis_url, args.port, args.workers) == ("redis://r", 9000, 2)


@pytest.mark.parametrize("argv", [["--help"], ["verify", "--help"]])
def test_help_documents_every_exit_status(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(argv)
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "exit status:" in text
    for code in ("0", "1", "2"):
        assert re.search(rf"^\s+{code}\s+\S", text, re.MULTILINE), f"exit status {code} undocumented in {argv}"


@pytest.mark.parametrize(
    ("command", "expected"),
    [("verify", cli.EXIT_CANNOT_VERIFY), ("migrate", cli.EXIT_FAILED), ("resync", cli.EXIT_FAILED)],
)
def test_invalid_configuration_is_one_line_and_its_exit_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str, expected: int
) -> None:
    monkeypatch.setenv("PROFILE_STATUS_BATCH_SIZE", "many")
    assert main([command]) == expected
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("profile-status: error: invalid configuration:"), last


def test_verify_usage_error_is_not_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "--settle", "soon"])
    assert exit_.value.code == cli.EXIT_CANNOT_VERIFY
    assert "invalid float value" in capsys.readouterr().err


def test_exit_statuses_are_distinct_where_they_must_be() -> None:
    assert len({cli.EXIT_OK, cli.EXIT_DIFFERENCES, cli.EXIT_CANNOT_VERIFY}) == 3
    assert cli.EXIT_DIFFERENCES == 1, "the contract: verify exits 1 when anything differs"
