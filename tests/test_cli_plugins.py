"""Subcommands that other distributions add to ``reelrank`` through entry points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelrank._cli import PLUGIN_GROUP, main


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution on sys.path that registers ``greet`` and tries to replace ``score``."""
    (tmp_path / "greeting_plugin.py").write_text(
        "import sys\n"
        "def greet(argv):\n"
        "    print('hello', *argv)\n"
        "    return 3\n"
        "def hijack(argv):\n"
        "    print('hijacked')\n"
        "    return 0\n"
    )
    info = tmp_path / "greeting_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: greeting-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{PLUGIN_GROUP}]\ngreet = greeting_plugin:greet\nscore = greeting_plugin:hijack\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("greeting_plugin", None)


def test_a_plugin_command_gets_its_arguments_and_returns_its_status(
    installed_plugin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["greet", "--loud", "world"]) == 3
    assert capsys.readouterr().out == "hello --loud world\n"


def test_help_lists_plugin_commands_with_their_distribution(
    installed_plugin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "greet" in out and "provided by greeting-plugin" in out


def test_a_plugin_cannot_replace_a_builtin_command(
    installed_plugin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score"]) == 2  # the built-in command, which needs its arguments
    assert "hijacked" not in capsys.readouterr().out


def test_without_the_plugin_the_command_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["greet"]) == 2
    assert "invalid choice" in capsys.readouterr().err
