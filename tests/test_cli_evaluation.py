"""The ``reelrank evaluate`` and ``reelrank tune`` subcommands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("ranx")

from reelrank import RankingConfig  # noqa: E402
from reelrank._cli import main  # noqa: E402
from reelrank.evaluation import evaluate, synthetic_events, time_split  # noqa: E402

DAY = 86_400


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    data = synthetic_events(users=120, videos=600, seed=2)
    directory = tmp_path_factory.mktemp("cli_eval")
    events = data.events.copy()
    # CSV with ISO 8601 text times, to exercise the parsing; the catalog in Parquet.
    events["time"] = pd.to_datetime(events["time"], unit="s", utc=True).dt.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    events.to_csv(directory / "events.csv", index=False)
    data.catalog.to_parquet(directory / "catalog.parquet")
    return data, directory / "events.csv", directory / "catalog.parquet"


def iso(seconds: float) -> str:
    return pd.Timestamp(seconds, unit="s", tz="UTC").isoformat()


def test_evaluate_prints_the_library_figures(files: Any, capsys: Any, tmp_path: Path) -> None:
    data, events, catalog = files
    fresh = tmp_path / "fresh.json"
    fresh_config = RankingConfig(
        freshness=0.6, completion=0.1, engagement=0.1, affinity=0.1, deep_learning=0.1
    )
    fresh.write_text(fresh_config.model_dump_json())
    cutoff = data.start + 10 * DAY
    status = main(
        [
            "evaluate",
            str(events),
            str(catalog),
            "--cutoff",
            iso(cutoff),
            "--config",
            f"fresh={fresh}",
            "-k",
            "5",
            "--resamples",
            "200",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    train, test = time_split(data.events, cutoff)
    expected = evaluate(
        train,
        test,
        data.catalog,
        {"default": RankingConfig(), "fresh": fresh_config},
        now=cutoff,
        k=5,
    ).table()
    lines: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.strip():  # the summary table comes first; later lines reuse the names
            lines.setdefault(line.split()[0], line.split()[1:])
    for name in ("default", "fresh"):
        printed = [float(value) for value in lines[name]]
        assert printed == pytest.approx(expected.loc[name].tolist(), abs=1e-4)
    assert "fresh - default, paired bootstrap" in out
    assert "ndcg@5" in lines


def test_tune_writes_a_config_that_loads(files: Any, capsys: Any, tmp_path: Path) -> None:
    data, events, catalog = files
    target = tmp_path / "tuned.toml"
    status = main(
        [
            "tune",
            str(events),
            str(catalog),
            "--validation-cutoff",
            iso(data.start + 10 * DAY),
            "--test-cutoff",
            iso(data.start + 12 * DAY),
            "--trials",
            "5",
            "--output",
            str(target),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    tuned = RankingConfig.from_toml(target)
    assert "held-out test" in out and "tuned weights: freshness" in out
    assert sum(tuned.weights) == pytest.approx(1.0)


def test_tune_draws_its_progress_bar_on_stderr_only_when_asked(files: Any, capsys: Any) -> None:
    data, events, catalog = files
    arguments = [
        "tune",
        str(events),
        str(catalog),
        "--validation-cutoff",
        iso(data.start + 10 * DAY),
        "--test-cutoff",
        iso(data.start + 12 * DAY),
        "--trials",
        "2",
    ]
    assert main([*arguments, "--progress"]) == 0
    asked = capsys.readouterr()
    steps = 1 + 2 + 3 * 5 * 2  # the base, the random points, three rounds of 10 moves
    assert "tuning: 100%" in asked.err and f"{steps}/{steps}" in asked.err
    assert "tuning:" not in asked.out
    # By default only a terminal gets the bar; captured stderr is not one.
    assert main(arguments) == 0
    assert main([*arguments, "--no-progress"]) == 0
    assert "tuning" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--split", "time"], "--split time needs --cutoff"),
        (["--cutoff", "2026-01-11T00:00:00"], "UTC offset"),
        (["--cutoff", "1767225600", "--config", "oops"], "expected NAME=FILE"),
        (["--split", "hold-last", "--cutoff", "1767225600"], "--cutoff applies"),
    ],
)
def test_evaluate_usage_errors_exit_2(
    files: Any, capsys: Any, arguments: list[str], message: str
) -> None:
    _, events, catalog = files
    assert main(["evaluate", str(events), str(catalog), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_naive_text_times_are_rejected(tmp_path: Path, files: Any, capsys: Any) -> None:
    _, _, catalog = files
    events = tmp_path / "naive.csv"
    events.write_text("user_id,video_id,time,kind,completion\n1,1,2026-01-02T00:00:00,watch,1\n")
    assert main(["evaluate", str(events), str(catalog), "--cutoff", "1767225600"]) == 2
    assert "'time'" in capsys.readouterr().err
