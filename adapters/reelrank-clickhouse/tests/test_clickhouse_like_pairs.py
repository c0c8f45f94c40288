"""Like counts from the pairs that changed since the roll-up (schema version 4): a
store holding the pairs liked at the roll-up's watermark reads no like count again,
whatever the order of likes and unlikes across held and fresh buckets, on one server
and on a 2-shard cluster; with ``held_like_pairs=0`` it reads them again as before.
The migration from version 3 writes the like state of every pair before every
watermark, and a roll-up from before it keeps holding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ch_support import (
    assert_refused_then_migrated,
    assert_same_statistics,
    assert_store_refuses,
    batch_of,
    deliver,
    install_older_view,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from reelrank_clickhouse import (
    ClickHouseConfig,
    ClickHouseEventStore,
    _event_store,
)
from reelrank_clickhouse._schema import Tag
from sqlalchemy.engine import Engine
from test_clickhouse_held_arrivals import (
    _buckets,
    _fold,
    _read_queries,
    _reads_likes_again,
    _settled,
    _store,
)

from reelrank import InMemoryEventStore

_VIDEOS = [1, 2, 3, 4]
_USERS = [1, 2, 3, 4, 5]


def _like_rows_of_bucket_0(store: ClickHouseEventStore) -> int:
    with store._clients.reader() as client:
        return int(
            client.execute(
                f"SELECT count() FROM (SELECT b, c FROM event_aggregates "
                f"WHERE tag = {Tag.FINE_LIKE} AND a = 0 GROUP BY b, c)"
            )[0][0]
        )


def test_version_3_tables_migrate_with_their_roll_up_and_like_states(
    deployment: tuple[Engine, ClickHouseConfig],
) -> None:
    engine, config = deployment
    install_older_view(engine, config, 3)
    store = _store(engine, config)
    buckets = _buckets(store)
    reference = InMemoryEventStore()
    deliver(
        store,
        reference,
        batch_of(("like", 1, 1), ("like", 2, 1), ("like", 3, 2), ("watch", 1, 1)),
    )
    buckets.next_fine()
    deliver(store, reference, batch_of(("unlike", 1, 1), ("like", 1, 2), ("share", 2, 3)))
    assert store.fold_stats(until=buckets.close_coarse()) == 3
    fold = buckets.coarse
    # After the version-3 roll-up's watermark, before the migration: a re-like, an
    # unlike of a pair liked at the watermark, a new pair.
    deliver(store, reference, batch_of(("like", 1, 1), ("unlike", 3, 2), ("like", 4, 3)))
    assert_refused_then_migrated(engine, config, 3)
    # One row in bucket 0 per pair with a like or unlike before the migration:
    # (1, 1), (1, 2), (2, 3), (2, 1), (3, 4).
    assert _like_rows_of_bucket_0(store) == 5
    assert_same_statistics(store, reference, _VIDEOS, _USERS, [10])
    assert store._held is not None and store._held.fold == fold  # the old roll-up holds
    _settled(store)
    # The held liked pairs are the rows the migration wrote, in bucket 0: each pair's
    # state at the migration, later likes and unlikes included. As (video, user):
    # (1, 1), (1, 2), (2, 1), (3, 4); (2, 3) was unliked after the watermark.
    assert store._liked is not None and store._liked.fold == fold
    assert store._liked.keys.tolist() == [1 << 32 | 1, 1 << 32 | 2, 2 << 32 | 1, 3 << 32 | 4]
    queries = _read_queries(store)
    # After the migration: an unlike of a pair liked at the watermark, a re-like of
    # one unliked since, a like and an unlike of pairs liked since, a new video.
    buckets.next_fine()
    deliver(
        store,
        reference,
        batch_of(("unlike", 2, 1), ("like", 3, 2), ("like", 5, 3), ("unlike", 4, 3)),
    )
    buckets.next_fine()
    deliver(store, reference, batch_of(("like", 5, 4), ("unlike", 1, 2)))
    assert_same_statistics(store, reference, _VIDEOS, _USERS, [10])
    # Hand-worked: video 1 liked by user 1 only, 2 by user 3, 3 by user 5, 4 by user 5.
    assert [store.get_stats(_VIDEOS)[v].likes for v in _VIDEOS] == [1, 1, 1, 1]
    assert store._held.fold == fold
    assert store._queries.held_stats_with_pairs in queries
    assert not _reads_likes_again(store, queries)
    # A roll-up of the new version over the migrated rows.
    assert store.fold_stats(until=buckets.close_coarse()) == 4
    deliver(store, reference, batch_of(("unlike", 1, 1), ("like", 2, 4)))
    assert_same_statistics(store, reference, _VIDEOS, _USERS, [10])
    assert [store.get_stats(_VIDEOS)[v].likes for v in _VIDEOS] == [0, 1, 1, 2]


def _likes(store: ClickHouseEventStore, videos: list[int]) -> list[int]:
    found = store.get_stats(videos)
    return [found[video].likes for video in videos]


def test_a_read_after_likes_on_held_videos_reads_no_like_count_again(
    clickhouse_engine: Engine,
) -> None:
    store = _store(clickhouse_engine)
    reference = InMemoryEventStore()
    deliver(store, reference, batch_of(("like", 1, 1), ("like", 2, 1), ("like", 1, 2)))
    assert _fold(store) == 2
    assert _likes(store, [1, 2]) == [2, 1]  # loads the roll-up, then its liked pairs
    _settled(store)
    queries = _read_queries(store)
    deliver(store, reference, batch_of(("unlike", 1, 1), ("like", 3, 1), ("like", 2, 2)))
    assert _likes(store, [1, 2]) == [2, 2]
    assert store._queries.held_stats_with_pairs in queries
    assert not _reads_likes_again(store, queries)
    assert_same_statistics(store, reference, [1, 2], [1, 2, 3], [10])


def test_without_held_like_pairs_a_read_reads_like_counts_again(
    clickhouse_engine: Engine,
) -> None:
    store = _store(clickhouse_engine, held_like_pairs=0)
    reference = InMemoryEventStore()
    deliver(store, reference, batch_of(("like", 1, 1), ("like", 2, 1), ("like", 1, 2)))
    assert _fold(store) == 2
    assert _likes(store, [1, 2]) == [2, 1]
    _settled(store)
    assert store._liked is None and store._liked_thread is None
    queries = _read_queries(store)
    deliver(store, reference, batch_of(("unlike", 1, 1), ("like", 3, 1), ("like", 2, 2)))
    assert _likes(store, [1, 2]) == [2, 2]
    assert store._queries.held_stats_with_pairs not in queries
    assert _reads_likes_again(store, queries)
    assert_same_statistics(store, reference, [1, 2], [1, 2, 3], [10])


def test_like_counts_of_pairs_changed_in_held_and_fresh_buckets(
    deployment: tuple[Engine, ClickHouseConfig],
) -> None:
    """Users 1 to 8 spread over both shards of the cluster. Before the watermark:
    video 1 liked by users 1, 2, 3; video 2 by 4, 5; video 3 by 6; video 4 by 7, 8."""
    engine, config = deployment
    store = _store(engine, config)
    buckets = _buckets(store)
    reference = InMemoryEventStore()
    videos = [1, 2, 3, 4, 5]
    users = list(range(1, 9))
    deliver(
        store,
        reference,
        batch_of(
            ("like", 1, 1), ("like", 2, 1), ("like", 3, 1), ("like", 4, 2), ("like", 5, 2),
            ("like", 6, 3), ("like", 7, 4), ("like", 8, 4), ("unlike", 8, 5),
        ),
    )  # fmt: skip
    assert _fold(store) == 5
    assert _likes(store, videos) == [3, 2, 1, 2, 0]
    _settled(store)
    assert store._liked is not None and store._liked.keys.shape[0] == 8
    queries = _read_queries(store)
    # A held bucket: user 1 unlikes video 1 (liked before the watermark), user 4
    # likes video 2 again (no change), user 7 unlikes video 4, user 6 likes video 5.
    deliver(
        store,
        reference,
        batch_of(("unlike", 1, 1), ("like", 4, 2), ("unlike", 7, 4), ("like", 6, 5)),
    )
    assert _likes(store, videos) == [2, 2, 1, 1, 1]
    _settled(store)
    assert store._since is not None and store._since.unheld == buckets.bucket + 1
    # A fresh bucket: user 1 likes video 1 again (held chunk, then fresh bucket), user
    # 3 likes and unlikes video 3 in the one bucket, user 8 unlikes video 4, user 6
    # unlikes video 5: every like of videos 4 (since the watermark) and 5 undone.
    buckets.next_fine()
    deliver(
        store,
        reference,
        batch_of(
            ("like", 1, 1), ("like", 3, 3), ("unlike", 3, 3), ("unlike", 8, 4),
            ("unlike", 6, 5),
        ),
    )  # fmt: skip
    assert _likes(store, videos) == [3, 2, 1, 0, 0]
    # Two fresh buckets: user 2 unlikes video 1, then likes it again; user 5 likes
    # video 3, then unlikes it.
    buckets.next_fine()
    deliver(store, reference, batch_of(("unlike", 2, 1), ("like", 5, 3)))
    buckets.next_fine()
    deliver(store, reference, batch_of(("like", 2, 1), ("unlike", 5, 3)))
    assert _likes(store, videos) == [3, 2, 1, 0, 0]
    assert_same_statistics(store, reference, videos, users, [10])
    assert store._queries.held_stats_with_pairs in queries
    assert not _reads_likes_again(store, queries)
    # The same, with the fresh buckets held.
    _settled(store)
    del queries[:]
    assert _likes(store, videos) == [3, 2, 1, 0, 0]
    assert_same_statistics(store, reference, videos, users, [10])
    assert not _reads_likes_again(store, queries)


def test_too_many_liked_pairs_are_not_held_and_reads_stay_exact(
    clickhouse_engine: Engine,
) -> None:
    store = _store(clickhouse_engine, held_like_pairs=2)
    reference = InMemoryEventStore()
    deliver(store, reference, batch_of(("like", 1, 1), ("like", 2, 1), ("like", 3, 2)))
    _fold(store)
    store.get_stats([1, 2])
    _settled(store)
    assert store._liked is None and store._liked_refused == store._held.fold
    queries = _read_queries(store)
    deliver(store, reference, batch_of(("unlike", 1, 1)))
    assert_same_statistics(store, reference, [1, 2], [1, 2, 3], [10])
    assert _reads_likes_again(store, queries)
    assert store._liked_thread is not None and not store._liked_thread.is_alive()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "5"])
def test_a_bad_held_like_pairs_is_refused_naming_it(bad: object) -> None:
    assert_store_refuses("held_like_pairs", held_like_pairs=bad)


_PAIRS = st.tuples(st.integers(1, 6), st.sampled_from([1, 2, 3, 2**32 - 1]))


@settings(max_examples=200, deadline=None)
@given(
    liked_at_watermark=st.sets(_PAIRS, max_size=12),
    changes=st.lists(
        st.dictionaries(_PAIRS, st.tuples(st.booleans(), st.integers(1, 3)), max_size=8),
        max_size=4,
    ),
    videos=st.sets(st.integers(1, 7), min_size=1),
)
def test_like_counts_from_held_and_changed_pairs_match_a_replay(
    liked_at_watermark: set[tuple[int, int]],
    changes: list[dict[tuple[int, int], tuple[bool, int]]],
    videos: set[int],
) -> None:
    """The arithmetic of a held read against replaying the changes, bucket by bucket,
    on the set of pairs liked at the watermark: each bucket gives a pair's last state
    there and its number of likes and unlikes there."""
    liked_now = set(liked_at_watermark)
    marks = dict.fromkeys(videos, 0)
    for bucket in changes:
        for (video, user), (state, events) in bucket.items():
            (liked_now.add if state else liked_now.discard)((video, user))
            if video in marks:
                marks[video] += events
    asked_in_order = sorted(videos, reverse=True)  # not sorted: the store's aren't
    expected = [sum(1 for video, _ in liked_now if video == each) for each in asked_in_order]

    def keys(pairs: Any) -> Any:
        return np.array([video << 32 | user for video, user in pairs], dtype=np.int64)

    def column(bucket: Any, values: Any) -> Any:
        return np.array([values(pair, change) for pair, change in bucket.items()], dtype=np.int64)

    held = _event_store._HeldLikes.of_pairs(0, keys(liked_at_watermark))
    parts = [
        _event_store._ChangedPairs.of_rows(
            column(bucket, lambda pair, change: pair[0]),
            column(bucket, lambda pair, change: pair[1]),
            column(bucket, lambda pair, change: int(change[0])),
            column(bucket, lambda pair, change: change[1]),
        )
        for bucket in changes
    ]
    asked = np.array(asked_in_order, dtype=np.int64)
    changed = _event_store._ChangedPairs.latest(
        [p.of_videos(np.sort(asked)) for p in parts if p is not None]
        or [_event_store._NO_CHANGED_PAIRS]
    )
    assert held.likes(asked, changed).tolist() == expected
    assert changed.marks(asked).tolist() == [marks[each] for each in asked_in_order]
