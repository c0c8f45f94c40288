"""The reelrank command line: score files, exit statuses and error lines."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
from pyarrow import csv, parquet  # noqa: E402

from reelrank import WEIGHT_FIELDS, RankingConfig, __version__, score_frame  # noqa: E402
from reelrank._cli import main  # noqa: E402

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
NOW_TEXT = "2026-03-01T12:00:00Z"
OUTPUTS = ["score", *WEIGHT_FIELDS]


def catalog(rows: int = 25) -> Any:
    rng = np.random.default_rng(11)
    views = rng.integers(0, 2_000, rows)
    return pd.DataFrame(
        {
            "video_id": np.arange(rows, dtype=np.int64),
            "creator_id": rng.integers(1, 5, rows),
            "published_at": pd.Timestamp(NOW) - pd.to_timedelta(rng.uniform(0, 90, rows), unit="h"),
            "views": views,
            "completion_sum": np.round(views * rng.random(rows), 3),
            "likes": rng.integers(0, 100, rows),
            "shares": rng.integers(0, 20, rows),
            "comments": rng.integers(0, 30, rows),
            "affinity": np.round(rng.random(rows), 3),
            "dl_score": np.where(np.arange(rows) % 4 == 0, np.nan, np.round(rng.random(rows), 3)),
            "note": [f"n{i}" for i in range(rows)],
        }
    ).assign(published_at=lambda f: f["published_at"].dt.floor("s"))


def write(frame: Any, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if path.suffix == ".csv":
        csv.write_csv(table, path)
    else:
        parquet.write_table(table, path)


def read(path: Path) -> Any:
    table = csv.read_csv(path) if path.suffix == ".csv" else parquet.read_table(path)
    return table.to_pandas()


@pytest.mark.parametrize(
    ("source_name", "target_name"),
    [("in.csv", "out.csv"), ("in.parquet", "out.parquet"), ("in.csv", "out.pq")],
)
def test_score_round_trips_files(tmp_path: Path, source_name: str, target_name: str) -> None:
    frame = catalog()
    source, target = tmp_path / source_name, tmp_path / target_name
    write(frame, source)
    assert main(["score", str(source), str(target), "--now", NOW_TEXT, "--quiet"]) == 0
    scored = read(target)
    expected = score_frame(frame, now=NOW)
    assert list(scored.columns) == list(expected.columns)
    assert scored["note"].tolist() == frame["note"].tolist()
    assert scored["video_id"].tolist() == frame["video_id"].tolist()
    # CSV stores decimal text: compare within float32 printing precision.
    np.testing.assert_allclose(
        scored[OUTPUTS].to_numpy(np.float64), expected[OUTPUTS].to_numpy(np.float64), rtol=1e-6
    )


def test_prefix_keeps_the_input_affinity(tmp_path: Path) -> None:
    frame = catalog()
    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write(frame, source)
    arguments = ["score", str(source), str(target), "--now", NOW_TEXT, "--prefix", "c_", "-q"]
    assert main(arguments) == 0
    scored = read(target)
    expected = score_frame(frame, now=NOW, prefix="c_")
    assert list(scored.columns) == list(expected.columns)
    assert scored["affinity"].tolist() == frame["affinity"].tolist()
    np.testing.assert_array_equal(
        scored[[f"c_{name}" for name in OUTPUTS]], expected[[f"c_{name}" for name in OUTPUTS]]
    )


def test_config_files_in_toml_json_and_pyproject(tmp_path: Path) -> None:
    frame = catalog()
    source = tmp_path / "in.parquet"
    write(frame, source)
    weights = {
        "freshness": 0.5,
        "completion": 0.2,
        "engagement": 0.1,
        "affinity": 0.1,
        "deep_learning": 0.1,
    }
    config = RankingConfig(**weights)
    expected = score_frame(frame, now=NOW, config=config)
    toml_text = "".join(f"{name} = {value}\n" for name, value in weights.items())
    files = {
        "ranking.toml": toml_text,
        "ranking.json": json.dumps(weights),
        "pyproject.toml": '[project]\nname = "x"\n\n[tool.reelrank]\n' + toml_text,
    }
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        target = tmp_path / f"out-{name}.parquet"
        args = ["score", str(source), str(target), "--config", str(path), "--now", NOW_TEXT, "-q"]
        assert main(args) == 0, name
        np.testing.assert_array_equal(
            read(target)["score"].to_numpy(), expected["score"].to_numpy()
        )


@pytest.mark.parametrize("now", [NOW_TEXT, "2026-03-01T13:00:00+01:00", str(NOW.timestamp())])
def test_now_accepts_offsets_and_epoch_seconds(tmp_path: Path, now: str) -> None:
    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write(catalog(), source)
    assert main(["score", str(source), str(target), "--now", now, "-q"]) == 0
    expected = score_frame(catalog(), now=NOW)
    np.testing.assert_array_equal(read(target)["score"].to_numpy(), expected["score"].to_numpy())


def invalid(capsys: pytest.CaptureFixture[str], args: list[str], *fragments: str) -> str:
    """Run main, expect exit status 2 and a single error line holding every fragment."""
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert re.match(r"reelrank( score)?: error: ", lines[0]), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_invalid_inputs_exit_2_with_one_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    bad = catalog()
    bad.loc[5, "views"] = -3
    write(bad, source)
    invalid(capsys, ["score", str(source), str(target), "--now", NOW_TEXT], "'views'", "row 5")
    write(catalog().drop(columns="likes"), source)
    invalid(capsys, ["score", str(source), str(target), "--now", NOW_TEXT], "'likes'")
    naive = catalog().assign(published_at=lambda f: f["published_at"].dt.tz_localize(None))
    write(naive, source)
    invalid(capsys, ["score", str(source), str(target)], "'published_at'", "naive")
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.csv"
    write(catalog(), source)
    out = str(tmp_path / "out.csv")
    invalid(capsys, ["score", str(source), str(tmp_path / "out.xlsx")], "unknown extension")
    invalid(capsys, ["score", str(tmp_path / "missing.csv"), out], "cannot read")
    invalid(capsys, ["score", str(source), out, "--now", "yesterday"], "--now")
    invalid(capsys, ["score", str(source), out, "--now", "2026-03-01T12:00:00"], "UTC offset")
    invalid(capsys, ["score", str(source), str(tmp_path / "no" / "out.csv")], "does not exist")
    config = tmp_path / "ranking.toml"
    config.write_text("completion = 2.0\n", encoding="utf-8")
    invalid(capsys, ["score", str(source), out, "--config", str(config)], "'completion'")
    config.write_text("surprise = 1\n", encoding="utf-8")
    invalid(capsys, ["score", str(source), out, "--config", str(config)], "'surprise'")
    invalid(capsys, ["score", str(source), out, "--config", str(tmp_path / "x.yaml")], ".toml")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    invalid(capsys, ["score", str(tmp_path / "garbage.parquet"), out], "cannot parse")
    invalid(capsys, ["frobnicate"], "invalid choice")
    invalid(capsys, ["score", str(source)], "required")
    assert not (tmp_path / "out.csv").exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"reelrank {__version__}"


def test_the_installed_script_runs_in_a_fresh_process(tmp_path: Path) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.parquet"
    write(catalog(), source)
    script = Path(sys.executable).with_name("reelrank")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "reelrank"]
    done = subprocess.run(
        [*command, "score", str(source), str(target), "--now", NOW_TEXT],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "scored 25 rows" in done.stderr
    expected = score_frame(catalog(), now=NOW)
    np.testing.assert_array_equal(read(target)["score"].to_numpy(), expected["score"].to_numpy())
    failed = subprocess.run(
        [sys.executable, "-m", "reelrank", "score", str(tmp_path / "nope.csv"), str(target)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert failed.returncode == 2
    assert failed.stderr.count("\n") == 1


def test_output_cut_short_by_its_reader_ends_quietly() -> None:
    reader = subprocess.Popen(
        [sys.executable, "-m", "reelrank", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.readline()
    reader.stdout.close()  # like `reelrank demo | head -1`
    errors = reader.stderr.read().decode()
    assert reader.wait(timeout=240) == 0
    assert "Traceback" not in errors
