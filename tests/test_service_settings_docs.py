"""The settings table of docs/service.md agrees with the example service's settings."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "flask_app"))

from reelrank_example import Settings  # noqa: E402

from reelrank import ConfigError  # noqa: E402

_ROW = re.compile(r"^\| `REELRANK_([A-Z0-9_]+)` \| `(?!REELRANK_)([^`]*)` \|", re.MULTILINE)
"""A row naming one setting, whose default is one literal (not another setting's)."""


def _documented_defaults() -> dict[str, str]:
    page = (ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    return {name.lower(): default for name, default in _ROW.findall(page)}


def _literal(value: object) -> str:
    """A default as the table writes it: ``true``/``false``, numbers without ``.0``."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_held_like_pairs_setting_is_documented() -> None:
    assert "clickhouse_held_like_pairs" in _documented_defaults()


_SETTINGS_PAGES = ("service.md", "operate/deployment.md", "operate/logs-and-traces.md")
"""The pages whose tables document the settings, between them."""


def _tabled_settings(docs: Path) -> set[str]:
    """The settings named in the first cell of a table row of the settings pages (a
    row may name two: `REELRANK_AUTH_ISSUER`, `REELRANK_AUTH_AUDIENCE`)."""
    names: set[str] = set()
    for page in _SETTINGS_PAGES:
        for line in (docs / page).read_text(encoding="utf-8").splitlines():
            if line.startswith("| `REELRANK_"):
                first_cell = line.split(" | ")[0]
                names |= {name.lower() for name in re.findall(r"`REELRANK_(\w+)`", first_cell)}
    return names


def test_every_setting_is_in_a_docs_table() -> None:
    assert sorted(set(Settings.model_fields) - _tabled_settings(ROOT / "docs")) == []


@pytest.mark.parametrize("name", sorted(_documented_defaults()))
def test_a_documented_default_is_the_settings_default(name: str) -> None:
    assert name in Settings.model_fields, f"REELRANK_{name.upper()} is not a setting"
    default = Settings.model_fields[name].default
    assert _documented_defaults()[name] == _literal(default)


def test_the_held_like_pairs_setting_is_read_from_the_environment_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().clickhouse_held_like_pairs == 5_000_000
    monkeypatch.setenv("REELRANK_CLICKHOUSE_HELD_LIKE_PAIRS", "0")
    assert Settings().clickhouse_held_like_pairs == 0
    for refused in (-1, 100_000_001):
        with pytest.raises(ConfigError) as caught:
            Settings(clickhouse_held_like_pairs=refused)
        assert caught.value.field == "clickhouse_held_like_pairs"


def test_the_recorder_runs_as_many_write_threads_as_set() -> None:
    from reelrank_example import build_services, memory_stores

    settings = Settings(auth_secret="c" * 40, parallel_event_write_threads=3)
    services = build_services(memory_stores(), settings)
    try:
        assert services.recorder.config.parallel_write_threads == 3
    finally:
        services.close()
    for refused in (0, 257):
        with pytest.raises(ConfigError) as caught:
            Settings(parallel_event_write_threads=refused)
        assert caught.value.field == "parallel_event_write_threads"
