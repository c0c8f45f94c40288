"""reelrank demo: two reproducible feed pages served from the in-memory stores, explained."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import numpy as np
import pytest
import reference as ref

from reelrank import WEIGHT_FIELDS, DiversityRule, RankingConfig
from reelrank._cli import main
from reelrank._demo import (
    DEMO_NOW,
    DEMO_USER,
    DemoFeed,
    _build_stores,
    run_demo,
    serve_demo_feed,
)
from reelrank._kernels._diversity import NO_SOUND

HEADER = ["pos", "video", "creator", "age", "views", "score", *WEIGHT_FIELDS]
NUMBERS = ["pos", "video", "creator", "views", "score", *WEIGHT_FIELDS]


def table_rows(text: str) -> list[dict[str, float]]:
    """Parse every printed table back into numbers, one dict per served item."""
    lines = text.splitlines()
    rows = []
    for start, line in enumerate(lines):
        if line.split() != HEADER:
            continue
        for row_line in lines[start + 2 :]:
            if not row_line.strip():
                break
            cells = row_line.split()
            # The age column prints as two tokens, "4.3 h" or "6.6 d".
            values = [cells[0], cells[1], cells[2], cells[5], *cells[6:]]
            rows.append(dict(zip(NUMBERS, map(float, values), strict=True)))
    return rows


def demo_text(**kwargs: int) -> str:
    out = io.StringIO()
    run_demo(out, **kwargs)
    return out.getvalue()


@pytest.fixture(scope="module")
def default_text() -> str:
    return demo_text()


@pytest.fixture(scope="module")
def feed() -> DemoFeed:
    return serve_demo_feed()


def test_two_pages_of_explained_rows(default_text: str) -> None:
    rows = table_rows(default_text)
    assert [int(row["pos"]) for row in rows] == list(range(1, 21))
    assert "page 1: 10 items, ranked fresh" in default_text
    assert "page 2: 10 items, from the cached snapshot" in default_text
    assert len({row["video"] for row in rows}) == 20
    for row in rows:
        # Six values printed with four decimals: the sum can be off by 6 x 0.00005.
        assert abs(sum(row[name] for name in WEIGHT_FIELDS) - row["score"]) <= 3e-4


def test_rows_follow_the_score_except_where_the_diversity_rule_moves_one(feed: DemoFeed) -> None:
    rows = [row for _, page_rows in feed.pages for row in page_rows]
    by_score = sorted(rows, key=lambda row: (-row.score, row.video_id))
    order = DiversityRule().order(
        [row.creator_id for row in by_score],
        [NO_SOUND if row.sound_id is None else row.sound_id for row in by_score],
    )
    assert [by_score[i].video_id for i in order] == [row.video_id for row in rows]
    assert rows[0].score == max(row.score for row in rows)


def test_watched_videos_are_left_out(feed: DemoFeed) -> None:
    served = {row.video_id for _, rows in feed.pages for row in rows}
    assert feed.watched
    assert not served & set(feed.watched)


def test_scores_match_the_reference_formulas_on_the_stored_data(feed: DemoFeed) -> None:
    stores = _build_stores(7, 500)
    config = RankingConfig()
    now = DEMO_NOW.timestamp()
    for _, rows in feed.pages:
        for row in rows:
            video = stores.catalog.get_video(row.video_id)
            stats = stores.events.get_stats([row.video_id])[row.video_id]
            dl = stores.models.get_scores("watch-time", [row.video_id]).get(row.video_id, math.nan)
            affinity = stores.events.get_affinities(DEMO_USER, [video.creator_id])[video.creator_id]
            signals = [
                ref.freshness(video.published_at.timestamp(), now, config),
                ref.completion(stats.views, stats.completion_sum, config),
                ref.engagement(stats.views, stats.likes, stats.shares, stats.comments, config),
                affinity,
                ref.deep_learning(dl, config),
            ]
            expected = np.array(signals) * np.array(config.weights)
            np.testing.assert_allclose(row.contributions, expected, atol=2e-6, rtol=0)
            assert row.score == pytest.approx(expected.sum(), abs=2e-6)


def test_output_is_reproducible_and_follows_the_seed(default_text: str) -> None:
    assert demo_text() == default_text
    assert demo_text(seed=3, catalog_size=120) != demo_text(seed=4, catalog_size=120)


def test_page_and_catalog_size_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seed", "5", "--catalog-size", "80", "--page-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert printed == demo_text(seed=5, catalog_size=80, page_size=4)
    assert len(table_rows(printed)) == 8
    assert main(["demo", "--page-size", "0"]) == 2
    assert "--page-size" in capsys.readouterr().err


def test_the_demo_needs_only_the_core(default_text: str) -> None:
    blocked = (
        "import sys\nfor name in ('pandas', 'pyarrow', 'tqdm'):\n    sys.modules[name] = None\n"
    )
    code = blocked + "from reelrank._cli import main\nraise SystemExit(main(['demo']))\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == default_text
