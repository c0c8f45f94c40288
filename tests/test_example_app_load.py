"""``python -m reelrank_example load``: a catalog and past events from CSV and Parquet files."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "flask_app"))

from reelrank_example import (  # noqa: E402
    LoadError,
    Settings,
    configured_stores,
    load_directory,
    migrate,
)

NOW = datetime.now(UTC)


def _write_catalog(directory: Path) -> None:
    pd.DataFrame(
        {"creator_id": [1, 2], "handle": ["chef_ana", "dj_bo"], "display_name": ["Ana", "Bo"]}
    ).to_csv(directory / "creators.csv", index=False)
    pd.DataFrame(
        {
            "video_id": [501, 502],
            "creator_id": [1, 2],
            "duration_seconds": [30.0, 12.5],
            "published_at": [(NOW - timedelta(hours=5)).isoformat()] * 2,
            "title": ["ramen at home", "sunset mix"],
            "hashtags": ["cooking food", "music"],
            "sound_id": [7, None],
        }
    ).to_parquet(directory / "videos.parquet")
    pd.DataFrame(
        {
            "video_id": [501, 501, 502],
            "width": [640, 1280, 640],
            "height": [360, 720, 360],
            "bitrate_kbps": [800, 2500, 800],
            "codec": ["avc1.64001f"] * 3,
            "uri": [f"https://cdn/{n}.m3u8" for n in ("a", "b", "c")],
        }
    ).to_csv(directory / "renditions.csv", index=False)
    pd.DataFrame({"user_id": [900], "creator_id": [2]}).to_csv(
        directory / "follows.csv", index=False
    )
    occurred = (NOW - timedelta(hours=1)).isoformat()
    pd.DataFrame(
        {
            "event_id": ["e1", "e1", "e2"],
            "kind": ["like", "like", "watch"],
            "user_id": [900, 900, 901],
            "video_id": [501, 501, 502],
            "occurred_at": [occurred] * 3,
            "completion": [None, None, 0.5],
        }
    ).to_csv(directory / "events.csv", index=False)


def test_a_catalog_loads_into_the_embedded_database(tmp_path: Path) -> None:
    _write_catalog(tmp_path)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'reels.db'}")
    migrate(settings)
    stores = configured_stores(settings)
    try:
        counts = load_directory(stores, tmp_path)
        assert counts == {
            "creators": 2, "renditions": 3, "videos": 2, "follows": 1, "events": 3,
        }  # fmt: skip
        video = stores.catalog.get_video(501)
        assert video.hashtags == ("cooking", "food")
        assert [r.height for r in video.renditions] == [360, 720]
        assert stores.catalog.get_video(502).sound_id is None
        assert stores.catalog.followed_creators(900) == frozenset({2})
        stats = stores.events.get_stats([501, 502])
        assert stats[501].likes == 1  # the repeated event_id counts once
        assert stats[502].views == 1
    finally:
        for close in stores.closers:
            close()


@pytest.mark.parametrize(
    ("table", "change", "field"),
    [
        (
            "videos.parquet",
            lambda f: f.assign(duration_seconds=[30.0, -3.0]),
            "videos[1].duration_seconds",
        ),
        ("videos.parquet", lambda f: f.assign(creator_id=[1, 7]), "videos[1].creator_id"),
        ("follows.csv", lambda f: f.assign(creator_id=[9]), "follows[0].creator_id"),
        ("events.csv", lambda f: f.assign(video_id=[501, 501, 999]), "events[2].video_id"),
        ("events.csv", lambda f: f.assign(kind=["like", "unlike", "watch"]), "events[1].event_id"),
        ("renditions.csv", lambda f: f.assign(width=[640, -1, 640]), "renditions[1].width"),
    ],
)
def test_a_bad_row_is_refused_with_its_file_row_and_column_and_nothing_is_written(
    tmp_path: Path, table: str, change: Any, field: str
) -> None:
    _write_catalog(tmp_path)
    path = tmp_path / table
    read, write = (
        (pd.read_parquet, lambda f: f.to_parquet(path))
        if table.endswith(".parquet")
        else (pd.read_csv, lambda f: f.to_csv(path, index=False))
    )
    write(change(read(path)))
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'reels.db'}")
    migrate(settings)
    stores = configured_stores(settings)
    try:
        with pytest.raises(LoadError) as raised:
            load_directory(stores, tmp_path)
        assert raised.value.field == field
        assert raised.value.path == path
        assert table in str(raised.value)
        assert stores.catalog.get_creators([1, 2]) == {}
        assert stores.catalog.get_videos([501, 502]) == {}
        assert all(s.views == s.likes == 0 for s in stores.events.get_stats([501, 502]).values())
    finally:
        for close in stores.closers:
            close()


def test_the_load_command(tmp_path: Path) -> None:
    _write_catalog(tmp_path)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": ":".join(
            [str(ROOT / "src"), str(ROOT / "adapters" / "reelrank-postgres" / "src"),
             str(ROOT / "examples" / "flask_app"), *sys.path]
        ),
        "REELRANK_DATABASE_URL": f"sqlite:///{tmp_path / 'reels.db'}",
    }  # fmt: skip
    run = [sys.executable, "-m", "reelrank_example"]
    subprocess.run([*run, "migrate"], env=env, check=True, timeout=300, capture_output=True)
    done = subprocess.run(
        [*run, "load", str(tmp_path)], env=env, check=True, timeout=300, capture_output=True
    )
    assert done.stdout.decode().strip() == (
        "2 creators, 3 renditions, 2 videos, 1 follows, 3 events"
    )


def test_the_reelrank_load_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reelrank_example.__main__ import load_main

    _write_catalog(tmp_path)
    monkeypatch.setenv("REELRANK_DATABASE_URL", f"sqlite:///{tmp_path / 'reels.db'}")
    migrate(Settings())
    assert load_main([str(tmp_path)]) == 0
    stores = configured_stores(Settings())
    try:
        assert sorted(stores.catalog.get_videos([501, 502])) == [501, 502]
    finally:
        for close in stores.closers:
            close()
