"""The feed page's response body, written from its cards without building the response
models, is the same JSON as those models give (the reference: the models' validating
constructors and serialiser, as the feed handler built the body before)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from reelrank import FeedItem, FeedPage

EXAMPLE_ROOT = Path(__file__).resolve().parents[1] / "examples" / "flask_app"
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example._api import (  # noqa: E402
    Card,
    Counts,
    CreatorRef,
    FeedCard,
    FeedPageResponse,
)
from reelrank_example._app import feed_page_json  # noqa: E402

FIRST_VIDEO = 1_000


def _card(video_id: int, stat: int) -> Card:
    return Card(
        video_id=video_id,
        creator=CreatorRef(creator_id=7, handle="cook", name="Cook \u00e9"),
        title=f'video {video_id} "quoted"',
        duration_seconds=12.5,
        published_at=datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
        + timedelta(seconds=video_id),
        sound_id=None if video_id % 2 else video_id + 5,
        hashtags=["dance", "easy hack"],
        thumbnail_url=f"https://media.example/v/{video_id}/thumb.jpg",
        stream_url=f"/api/v1/reels/stream/{video_id}",
        counts=Counts(views=stat, likes=stat // 2, shares=1, comments=0),
    )


def _validated(page: FeedPage, cards: dict[int, Card], degraded: list[str]) -> str:
    """The body as the models' validating constructors build it."""
    return FeedPageResponse(
        items=[
            FeedCard(**dict(cards[item.video_id]), score=item.score, breakdown=dict(item.breakdown))
            for item in page.items
            if item.video_id in cards
        ],
        next_cursor=page.next_cursor,
        variant=page.variant,
        degraded=degraded,
    ).model_dump_json()


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(
    scores=st.lists(finite, min_size=0, max_size=12),
    freshness=finite,
    cursor=st.none() | st.just("abc.def"),
    variant=st.none() | st.just("b"),
    degraded=st.lists(st.sampled_from(["stats", "seen", "cache"]), unique=True),
)
def test_the_body_is_the_validated_models_json(
    scores: list[float], freshness: float, cursor: str | None, variant: str | None,
    degraded: list[str],
) -> None:  # fmt: skip
    items = tuple(
        FeedItem(
            video_id=FIRST_VIDEO + n,
            score=score,
            breakdown={"freshness": freshness, "completion": 0.25},
        )
        for n, score in enumerate(scores)
    )
    # Every third video has no card (its details could not be read): left out.
    cards = {item.video_id: _card(item.video_id, n) for n, item in enumerate(items) if n % 3 != 2}
    page = FeedPage(items=items, next_cursor=cursor, from_cache=True, variant=variant)
    assert feed_page_json(page, cards, degraded).decode() == _validated(page, cards, degraded)


def test_whole_number_scores_stay_floats() -> None:
    # The feed service builds the items of a cached page without validating them, so a
    # score can arrive as an int; the model's field made it a float, and the body must
    # still write it as one.
    item = FeedItem.model_construct(video_id=FIRST_VIDEO, score=2, breakdown={"freshness": 1})
    page = FeedPage.model_construct(items=(item,), next_cursor=None, variant=None)
    cards = {FIRST_VIDEO: _card(FIRST_VIDEO, 3)}
    body = feed_page_json(page, cards, []).decode()
    assert '"score":2.0,"breakdown":{"freshness":1.0}' in body
    assert body == _validated(page, cards, [])
