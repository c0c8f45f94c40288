"""Similar videos: the cosine top-k kernel, the embedding index and the metadata fallback."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reelrank import (
    ConfigError,
    EmbeddingIndex,
    InMemoryCatalog,
    InMemorySeenStore,
    InvalidInputError,
    NotFoundError,
    ProcessingState,
    SimilarityConfig,
    SimilarVideos,
    metadata_similarity,
    top_k_cosine,
)
from reelrank.discovery._similar import MIN_ROWS_PER_THREAD
from reelrank.testing import EPOCH, make_creator, make_video


def normalised(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.ascontiguousarray(rows / np.where(norms > 0, norms, 1.0), dtype=np.float32)


# -- the kernel against its reference -------------------------------------------------

vectors = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 40), st.integers(1, 8)),
    elements=st.floats(-4, 4, width=32),
)


@settings(max_examples=150, deadline=None)
@given(raw=vectors, k=st.integers(0, 45), data=st.data())
def test_kernel_matches_the_reference(raw: np.ndarray, k: int, data: st.DataObject) -> None:
    matrix = normalised(raw)
    rows = matrix.shape[0]
    ids = np.asarray(
        data.draw(st.lists(st.integers(1, 10_000), min_size=rows, max_size=rows, unique=True)),
        dtype=np.int64,
    )
    excluded = np.asarray(data.draw(st.lists(st.booleans(), min_size=rows, max_size=rows)))
    query = matrix[data.draw(st.integers(0, rows - 1))].copy()

    got_ids, got_scores = top_k_cosine(matrix, query, ids, k, excluded=excluded)
    ranked = ref.cosine_top_k(matrix, query, ids, rows, excluded)
    expected = ranked[:k]

    assert len(got_ids) == len(expected)
    np.testing.assert_allclose(got_scores, [s for _, s in expected], atol=1e-5)
    # Each returned id must hold, in the reference, the score of the place it fills: near
    # ties may come out in either order after float32 rounding, but nothing else may move.
    reference_score = dict(ranked)
    for position, (_, score) in enumerate(expected):
        assert abs(reference_score[int(got_ids[position])] - score) < 1e-5
    assert not set(got_ids.tolist()) & set(ids[excluded].tolist())


def test_ties_are_broken_by_ascending_video_id() -> None:
    matrix = normalised(np.ones((50, 4), dtype=np.float32))
    ids = np.arange(50, 0, -1, dtype=np.int64)
    got_ids, got_scores = top_k_cosine(matrix, matrix[0].copy(), ids, 7)
    assert got_ids.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert np.all(got_scores == got_scores[0])


def test_results_are_sorted_by_score_then_id() -> None:
    rng = np.random.default_rng(3)
    matrix = normalised(rng.integers(-2, 3, size=(300, 3)).astype(np.float32))
    ids = rng.permutation(np.arange(1, 301)).astype(np.int64)
    got_ids, got_scores = top_k_cosine(matrix, matrix[5].copy(), ids, 60)
    keys = list(zip((-got_scores).tolist(), got_ids.tolist(), strict=True))
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("matrix", lambda m, q, i: top_k_cosine(m.astype(np.float64), q, i, 3)),
        ("matrix", lambda m, q, i: top_k_cosine(np.asfortranarray(m), q, i, 3)),
        ("matrix", lambda m, q, i: top_k_cosine(m[0], q, i, 3)),
        ("query", lambda m, q, i: top_k_cosine(m, q[:2], i, 3)),
        ("query", lambda m, q, i: top_k_cosine(m, q.astype(np.float64), i, 3)),
        ("query", lambda m, q, i: top_k_cosine(m, np.full_like(q, np.nan), i, 3)),
        ("video_ids", lambda m, q, i: top_k_cosine(m, q, i.astype(np.int32), 3)),
        ("video_ids", lambda m, q, i: top_k_cosine(m, q, i[:-1], 3)),
        ("excluded", lambda m, q, i: top_k_cosine(m, q, i, 3, excluded=np.zeros(2, bool))),
        ("excluded", lambda m, q, i: top_k_cosine(m, q, i, 3, excluded=np.zeros(10))),
        ("k", lambda m, q, i: top_k_cosine(m, q, i, -1)),
        ("k", lambda m, q, i: top_k_cosine(m, q, i, True)),
        ("threads", lambda m, q, i: top_k_cosine(m, q, i, 3, threads=0)),
    ],
)
def test_wrapper_rejects_bad_arrays_naming_the_argument(field: str, call: object) -> None:
    matrix = normalised(np.random.default_rng(0).standard_normal((10, 4)))
    ids = np.arange(1, 11, dtype=np.int64)
    with pytest.raises(InvalidInputError) as caught:
        call(matrix, matrix[0].copy(), ids)  # type: ignore[operator]
    assert caught.value.field == field


@pytest.mark.parametrize("threads", [2, 3])
def test_threads_give_the_same_result_as_one(threads: int) -> None:
    rng = np.random.default_rng(5)
    rows = MIN_ROWS_PER_THREAD * threads + 17
    # Small integer vectors: many exact ties, which the merge must order like one thread.
    matrix = normalised(rng.integers(-1, 2, size=(rows, 3)).astype(np.float32))
    ids = rng.permutation(np.arange(1, rows + 1)).astype(np.int64)
    excluded = rng.random(rows) < 0.3
    for query_row in (0, rows // 2, rows - 1):
        query = matrix[query_row].copy()
        for k in (1, 25, 400):
            one = top_k_cosine(matrix, query, ids, k, excluded=excluded)
            many = top_k_cosine(matrix, query, ids, k, excluded=excluded, threads=threads)
            np.testing.assert_array_equal(many[0], one[0])
            np.testing.assert_array_equal(many[1], one[1])


# -- the embedding index --------------------------------------------------------------


def test_index_normalises_rows_once() -> None:
    index = EmbeddingIndex([1, 2, 3], [[3.0, 4.0], [0.0, 0.0], [1e30, 0.0]])
    assert index.matrix.dtype == np.float32 and index.matrix.flags.c_contiguous
    np.testing.assert_allclose(index.matrix, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6)
    assert index.has_vector(1) and not index.has_vector(2) and not index.has_vector(99)
    with pytest.raises(ValueError):
        index.matrix[0, 0] = 1.0


@settings(max_examples=60, deadline=None)
@given(
    raw=hnp.arrays(
        np.float64, st.tuples(st.integers(2, 30), st.integers(1, 6)), elements=st.floats(-9, 9)
    ),
    data=st.data(),
)
def test_similar_never_returns_the_query_or_excluded_videos(
    raw: np.ndarray, data: st.DataObject
) -> None:
    ids = list(range(1, raw.shape[0] + 1))
    index = EmbeddingIndex(ids, raw)
    query = data.draw(st.sampled_from(ids))
    exclude = set(data.draw(st.lists(st.sampled_from(ids))))
    k = data.draw(st.integers(0, 40))
    results = index.similar(query, k=k, exclude=exclude)
    got = [vid for vid, _ in results]
    assert query not in got
    assert not exclude & set(got)
    assert len(got) == min(k, len(set(ids) - exclude - {query}))
    keys = [(-score, vid) for vid, score in results]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("ids", "vectors", "field"),
    [
        ([1, 1], [[1.0], [2.0]], "video_ids"),
        ([0, 1], [[1.0], [2.0]], "video_ids"),
        ([[1, 2]], [[1.0], [2.0]], "video_ids"),
        (["a", "b"], [[1.0], [2.0]], "video_ids"),
        ([1, 2], [1.0, 2.0], "vectors"),
        ([1, 2], [[1.0]], "vectors"),
        ([1, 2], [[1.0], [float("nan")]], "vectors"),
        ([1, 2], np.zeros((2, 0)), "vectors"),
    ],
)
def test_index_rejects_bad_input_naming_the_field(ids: object, vectors: object, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        EmbeddingIndex(ids, vectors)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_unknown_video_in_index_raises_not_found() -> None:
    index = EmbeddingIndex([1, 2], [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(NotFoundError):
        index.similar(3, k=1)


# -- the service ----------------------------------------------------------------------


def build_catalog() -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    for creator_id in (1, 2):
        catalog.put_creator(make_creator(creator_id))
    videos = [
        make_video(1, 1, sound_id=7, hashtags=("dance", "fun")),
        make_video(2, 2, sound_id=7, hashtags=("dance",)),  # 0.5 + 0.3 * 1/2
        make_video(3, 1, hashtags=("dance", "fun")),  # 0.3 + 0.2
        make_video(4, 2, sound_id=8, hashtags=("cooking",)),  # nothing shared
        make_video(5, 1),  # 0.2
        make_video(6, 2, sound_id=7, hashtags=("dance", "fun"), state=ProcessingState.QUEUED),
    ]
    for video in videos:
        catalog.put_video(video)
    return catalog


def test_metadata_fallback_follows_the_documented_formula() -> None:
    service = SimilarVideos(build_catalog())
    results = service.similar(1, k=10, now=EPOCH)
    assert [(r.video_id, round(r.score, 9), r.basis) for r in results] == [
        (2, 0.65, "metadata"),
        (3, 0.5, "metadata"),
        (5, 0.2, "metadata"),
    ]


def test_metadata_similarity_is_symmetric_in_its_parts() -> None:
    config = SimilarityConfig()
    a = make_video(1, 1, sound_id=7, hashtags=("x", "y"))
    b = make_video(2, 1, sound_id=7, hashtags=("y", "z"))
    assert metadata_similarity(a, b, config) == pytest.approx(0.5 + 0.3 / 3 + 0.2)
    assert metadata_similarity(a, b, config) == metadata_similarity(b, a, config)


def test_embeddings_are_used_and_unready_videos_dropped() -> None:
    catalog = build_catalog()
    # Video 6 is nearest to 1 but not ready; 4 comes next, then 2.
    index = EmbeddingIndex([1, 2, 4, 6], [[1.0, 0.0], [0.0, 1.0], [1.0, 0.5], [1.0, 0.01]])
    service = SimilarVideos(catalog, embeddings=index)
    results = service.similar(1, k=2, now=EPOCH)
    assert [(r.video_id, r.basis) for r in results] == [(4, "embedding"), (2, "embedding")]
    assert results[0].score == pytest.approx(1 / np.sqrt(1.25), rel=1e-6)


def test_video_without_embedding_falls_back_to_metadata() -> None:
    index = EmbeddingIndex([2, 4], [[1.0, 0.0], [0.0, 1.0]])
    results = SimilarVideos(build_catalog(), embeddings=index).similar(1, k=1, now=EPOCH)
    assert [(r.video_id, r.basis) for r in results] == [(2, "metadata")]


def test_seen_videos_are_left_out_for_a_user() -> None:
    seen = InMemorySeenStore()
    seen.mark_seen(42, [2], EPOCH - timedelta(days=1))
    seen.mark_seen(42, [3], EPOCH - timedelta(days=90))  # outside the seen window
    service = SimilarVideos(build_catalog(), seen=seen)
    assert [r.video_id for r in service.similar(1, k=10, user_id=42, now=EPOCH)] == [3, 5]
    assert [r.video_id for r in service.similar(1, k=10, now=EPOCH)] == [2, 3, 5]


def test_service_rejects_bad_arguments() -> None:
    service = SimilarVideos(build_catalog())
    with pytest.raises(InvalidInputError) as caught:
        service.similar(1, k=10_000, now=EPOCH)
    assert caught.value.field == "k"
    with pytest.raises(InvalidInputError) as caught:
        service.similar(0, now=EPOCH)
    assert caught.value.field == "video_id"
    with pytest.raises(InvalidInputError) as caught:
        service.similar(1, now=EPOCH.replace(tzinfo=None))
    assert caught.value.field == "now"
    with pytest.raises(NotFoundError):
        service.similar(99, now=EPOCH)


def test_fallback_weights_must_sum_to_one() -> None:
    with pytest.raises(ConfigError) as caught:
        SimilarityConfig(sound_weight=0.9)
    assert caught.value.field == "weights"
    with pytest.raises(ConfigError) as caught:
        SimilarityConfig(surprise=1)  # type: ignore[call-arg]
    assert caught.value.field == "surprise"
