"""Similar videos: cosine top-k over video embeddings, with a metadata fallback.

With embeddings, the similarity of videos ``a`` and ``b`` is the cosine of their
vectors, ``cos(a, b) = (e_a . e_b) / (|e_a| |e_b|)``. :class:`EmbeddingIndex` normalises
every row once when it is built, so a query is one pass of dot products through a
contiguous float32 matrix with a bounded heap keeping the best ``k`` (the numba kernel
in ``reelrank._kernels._cosine``).

Without an embedding for the query video, :class:`SimilarVideos` falls back to shared
metadata (see :class:`SimilarityConfig` for the weights)::

    score = w_sound * same_sound + w_hashtags * jaccard(hashtags) + w_creator * same_creator

Results are ordered by score descending, then video id ascending, never contain the
query video, and can leave out everything the user has seen.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import Field, model_validator

from .._kernels._cosine import top_k_cosine_kernel
from ..exceptions import ConfigError, InvalidInputError, NotFoundError
from ..models._base import DomainModel, StrictModel
from ..models._catalog import ProcessingState, Video
from ..stores._protocols import Catalog, SeenStore
from ..validation import MAX_ID, check_aware, check_id, check_limit

__all__ = [
    "EmbeddingIndex",
    "SimilarVideo",
    "SimilarVideos",
    "SimilarityConfig",
    "metadata_similarity",
    "top_k_cosine",
]


def top_k_cosine(
    matrix: NDArray[np.float32],
    query: NDArray[np.float32],
    video_ids: NDArray[np.int64],
    k: int,
    *,
    excluded: NDArray[np.bool_] | NDArray[np.uint8] | None = None,
    threads: int = 1,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The ``k`` rows of ``matrix`` closest to ``query``, as ``(video_ids, scores)``.

    ``matrix`` must be a C-contiguous float32 array of shape ``(n, d)`` whose rows are
    unit length (or all zero), ``query`` a contiguous float32 vector of length ``d``
    (unit length for the scores to be cosines), ``video_ids`` a contiguous int64 array of
    length ``n`` naming each row, and ``excluded`` an optional bool or uint8 mask of
    length ``n`` whose true rows are skipped. :class:`EmbeddingIndex` prepares all of
    this; the function is public for callers who keep their own matrix.

    Scores are ``matrix[i] . query``; the result is ordered by score descending, then
    video id ascending, and holds ``min(k, eligible rows)`` entries. Any other dtype,
    shape or memory layout raises :class:`~reelrank.InvalidInputError` naming the
    argument; nothing is copied or converted silently.

    With ``threads > 1`` and at least 32,768 rows per thread, the rows
    are split into contiguous blocks searched at the same time (the kernel releases the
    GIL) and the blocks' best ``k`` are merged; the result is identical to one thread's.
    """
    k = check_limit("k", k)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidInputError("threads", f"must be an int >= 1, got {threads!r}")
    if not isinstance(matrix, np.ndarray) or matrix.dtype != np.float32 or matrix.ndim != 2:
        raise InvalidInputError("matrix", "must be a 2-D float32 numpy array")
    if not matrix.flags.c_contiguous:
        raise InvalidInputError("matrix", "must be C-contiguous")
    rows, width = matrix.shape
    if not isinstance(query, np.ndarray) or query.dtype != np.float32 or query.shape != (width,):
        raise InvalidInputError("query", f"must be a float32 numpy array of shape ({width},)")
    if not query.flags.c_contiguous:
        raise InvalidInputError("query", "must be contiguous")
    if not np.isfinite(query).all():
        raise InvalidInputError("query", "must hold finite values only")
    if (
        not isinstance(video_ids, np.ndarray)
        or video_ids.dtype != np.int64
        or video_ids.shape != (rows,)
    ):
        raise InvalidInputError("video_ids", f"must be an int64 numpy array of shape ({rows},)")
    if not video_ids.flags.c_contiguous:
        raise InvalidInputError("video_ids", "must be contiguous")
    if excluded is None:
        mask = np.zeros(rows, dtype=np.uint8)
    else:
        if (
            not isinstance(excluded, np.ndarray)
            or excluded.dtype not in (np.bool_, np.uint8)
            or excluded.shape != (rows,)
        ):
            raise InvalidInputError("excluded", f"must be a bool or uint8 array of shape ({rows},)")
        if not excluded.flags.c_contiguous:
            raise InvalidInputError("excluded", "must be contiguous")
        mask = excluded.view(np.uint8)
    blocks = min(threads, rows // MIN_ROWS_PER_THREAD)
    if blocks <= 1:
        best_rows, scores = _search_block(matrix, query, video_ids, mask, k, 0, rows)
        return video_ids[best_rows], scores
    bounds = np.linspace(0, rows, blocks + 1).astype(np.int64).tolist()
    pool = _thread_pool(blocks)
    futures = [
        pool.submit(_search_block, matrix, query, video_ids, mask, k, low, high)
        for low, high in itertools.pairwise(bounds)
    ]
    parts = [future.result() for future in futures]
    all_rows = np.concatenate([part[0] for part in parts])
    all_scores = np.concatenate([part[1] for part in parts])
    best = np.lexsort((video_ids[all_rows], -all_scores))[:k]
    return video_ids[all_rows[best]], all_scores[best]


MIN_ROWS_PER_THREAD = 32_768
"""Fewest rows worth a thread of their own: below this, handing work over costs more."""

_pool_lock = threading.Lock()

_pools: dict[int, ThreadPoolExecutor] = {}


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    # One long-lived pool per size: starting threads on every query would cost more than
    # the split saves. Sizes are few (the ``threads`` settings in use).
    with _pool_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="reelrank-similar"
            )
        return pool


def _search_block(
    matrix: NDArray[np.float32],
    query: NDArray[np.float32],
    video_ids: NDArray[np.int64],
    mask: NDArray[np.uint8],
    k: int,
    low: int,
    high: int,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Best ``k`` of rows ``[low, high)``, as absolute row numbers and scores."""
    size = min(k, high - low)
    out_rows = np.empty(size, dtype=np.int64)
    out_scores = np.empty(size, dtype=np.float32)
    filled = top_k_cosine_kernel(
        matrix[low:high], query, video_ids[low:high], mask[low:high], out_rows, out_scores
    )
    return out_rows[:filled] + low, out_scores[:filled]


class EmbeddingIndex:
    """Video embeddings held as one row-normalised, contiguous float32 matrix.

    Build it from the ids and vectors your embedding model produced; it is immutable
    (build a new one to refresh). Each row is divided by its Euclidean norm once, here,
    so queries only take dot products; a zero vector stays zero and counts as "no
    embedding" for :class:`SimilarVideos`.

    ``threads`` is passed on to :func:`top_k_cosine` for every query: more than one
    splits a large matrix between threads.

    Raises :class:`~reelrank.InvalidInputError` naming ``video_ids`` (not 1-D, not
    valid positive int64 ids, duplicates), ``vectors`` (not 2-D, row count differs
    from the ids, zero width, not finite) or ``threads``.
    """

    def __init__(self, video_ids: ArrayLike, vectors: ArrayLike, *, threads: int = 1) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InvalidInputError("threads", f"must be an int >= 1, got {threads!r}")
        self._threads = threads
        try:
            ids = np.asarray(video_ids)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError("video_ids", f"not an array of ids: {exc}") from exc
        if ids.ndim != 1:
            raise InvalidInputError("video_ids", "must be one-dimensional")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise InvalidInputError("video_ids", f"must be integers, got dtype {ids.dtype}")
        if ids.size and (int(ids.min()) < 1 or int(ids.max()) > MAX_ID):
            raise InvalidInputError("video_ids", "every id must be in [1, 2**63 - 1]")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if np.unique(ids).size != ids.size:
            raise InvalidInputError("video_ids", "ids must be unique")
        try:
            raw = np.asarray(vectors, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError("vectors", f"not a numeric matrix: {exc}") from exc
        if raw.ndim != 2:
            raise InvalidInputError("vectors", "must be two-dimensional (videos x dimensions)")
        if raw.shape[0] != ids.size:
            raise InvalidInputError("vectors", f"has {raw.shape[0]} rows for {ids.size} video ids")
        if raw.shape[1] == 0:
            raise InvalidInputError("vectors", "must have at least one dimension")
        if not np.isfinite(raw).all():
            raise InvalidInputError("vectors", "must hold finite values only")
        # Normalise in float64, so huge or tiny vectors neither overflow nor lose their
        # direction before the cast to float32.
        norms = np.linalg.norm(raw, axis=1)
        safe = np.where(norms > 0.0, norms, 1.0)
        self._matrix: NDArray[np.float32] = np.ascontiguousarray(
            raw / safe[:, None], dtype=np.float32
        )
        self._has_vector: NDArray[np.bool_] = norms > 0.0
        self._ids: NDArray[np.int64] = ids
        self._rows: dict[int, int] = {int(video_id): row for row, video_id in enumerate(ids)}
        self._matrix.flags.writeable = False
        self._ids.flags.writeable = False

    def __len__(self) -> int:
        return int(self._ids.size)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._rows

    @property
    def dimensions(self) -> int:
        """Length of every embedding vector."""
        return int(self._matrix.shape[1])

    @property
    def video_ids(self) -> NDArray[np.int64]:
        """The ids of the rows, in row order (read-only)."""
        return self._ids

    @property
    def matrix(self) -> NDArray[np.float32]:
        """The row-normalised float32 matrix (read-only)."""
        return self._matrix

    def has_vector(self, video_id: int) -> bool:
        """Whether the video has a non-zero embedding in this index."""
        row = self._rows.get(video_id)
        return row is not None and bool(self._has_vector[row])

    def similar(
        self, video_id: int, *, k: int, exclude: Collection[int] = ()
    ) -> list[tuple[int, float]]:
        """The ``k`` videos most similar to ``video_id`` as ``(video_id, cosine)`` pairs.

        The query video and every id in ``exclude`` are left out; ids in ``exclude``
        that the index does not hold are ignored. Ordered by cosine descending, then
        video id ascending. :class:`~reelrank.NotFoundError` (``kind="embedding"``) if
        the video has no row here.
        """
        check_id("video_id", video_id)
        k = check_limit("k", k)
        row = self._rows.get(video_id)
        if row is None:
            raise NotFoundError("embedding", video_id)
        mask = np.zeros(self._ids.size, dtype=np.uint8)
        mask[row] = 1
        excluded_rows = [self._rows[other] for other in exclude if other in self._rows]
        if excluded_rows:
            mask[np.asarray(excluded_rows, dtype=np.int64)] = 1
        ids, scores = top_k_cosine(
            self._matrix, self._matrix[row], self._ids, k, excluded=mask, threads=self._threads
        )
        return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]


class SimilarityConfig(StrictModel):
    """How :class:`SimilarVideos` scores and filters similar videos.

    The metadata fallback scores a candidate ``c`` for the query video ``q`` as
    ``sound_weight * [sound(c) == sound(q)] + hashtag_weight * jaccard(H(c), H(q))
    + creator_weight * [creator(c) == creator(q)]``, where ``H`` is a video's hashtag set
    and ``jaccard(A, B) = |A & B| / |A | B|`` (0 when both are empty). The weights sum
    to 1, so the score lies in ``[0, 1]``.
    """

    sound_weight: float = Field(default=0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    """Fallback weight of using the same sound (both videos must have one)."""
    hashtag_weight: float = Field(default=0.3, ge=0.0, le=1.0, allow_inf_nan=False)
    """Fallback weight of the Jaccard overlap of the two videos' hashtag sets."""
    creator_weight: float = Field(default=0.2, ge=0.0, le=1.0, allow_inf_nan=False)
    """Fallback weight of being published by the same creator."""
    fallback_candidates: int = Field(default=5_000, ge=1, le=1_000_000)
    """How many of the catalog's most recent ready videos the fallback scores."""
    seen_window_days: float = Field(default=30.0, gt=0.0, allow_inf_nan=False)
    """With a user, videos they saw within this many days are left out."""
    max_seen: int = Field(default=10_000, ge=0, le=1_000_000)
    """At most this many of the user's most recently seen videos are left out."""
    max_k: int = Field(default=500, ge=1, le=100_000)
    """Largest ``k`` a caller may ask for."""

    @model_validator(mode="after")
    def _check_weights(self) -> SimilarityConfig:
        total = self.sound_weight + self.hashtag_weight + self.creator_weight
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError("weights", total, "sound, hashtag and creator weights must sum to 1")
        return self


class SimilarVideo(DomainModel):
    """One video similar to a query video."""

    video_id: int = Field(strict=True, ge=1, le=MAX_ID)
    """The similar video."""
    score: float = Field(allow_inf_nan=False)
    """Cosine similarity in ``[-1, 1]`` (``basis="embedding"``) or metadata score in
    ``[0, 1]`` (``basis="metadata"``)."""
    basis: Literal["embedding", "metadata"]
    """Which method produced the score."""


def metadata_similarity(query: Video, candidate: Video, config: SimilarityConfig) -> float:
    """The fallback score of ``candidate`` for ``query`` (formula in :class:`SimilarityConfig`)."""
    same_sound = query.sound_id is not None and query.sound_id == candidate.sound_id
    query_tags, candidate_tags = set(query.hashtags), set(candidate.hashtags)
    union = len(query_tags | candidate_tags)
    jaccard = len(query_tags & candidate_tags) / union if union else 0.0
    same_creator = query.creator_id == candidate.creator_id
    return (
        config.sound_weight * same_sound
        + config.hashtag_weight * jaccard
        + config.creator_weight * same_creator
    )


class SimilarVideos:
    """Finds videos similar to a given one, for a "more like this" shelf.

    Uses ``embeddings`` when the query video has a non-zero vector there, else the
    metadata fallback over the catalog's most recent ready videos. Only ready videos
    are returned. With ``user_id`` (and a ``seen`` store), videos the user saw within
    :attr:`SimilarityConfig.seen_window_days` are left out.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        embeddings: EmbeddingIndex | None = None,
        seen: SeenStore | None = None,
        config: SimilarityConfig | None = None,
    ) -> None:
        self._catalog = catalog
        self._embeddings = embeddings
        self._seen = seen
        self._config = config or SimilarityConfig()

    @property
    def config(self) -> SimilarityConfig:
        """The configuration in use."""
        return self._config

    def similar(
        self,
        video_id: int,
        *,
        k: int = 20,
        user_id: int | None = None,
        now: datetime,
    ) -> list[SimilarVideo]:
        """Up to ``k`` ready videos similar to ``video_id``, best first.

        ``now`` anchors the seen window. :class:`~reelrank.NotFoundError` if the query
        video is not in the catalog; :class:`~reelrank.InvalidInputError` naming ``k``,
        ``video_id``, ``user_id`` or ``now`` for bad arguments.
        """
        check_id("video_id", video_id)
        k = check_limit("k", k)
        if k > self._config.max_k:
            raise InvalidInputError("k", f"must be <= {self._config.max_k}, got {k}")
        if user_id is not None:
            check_id("user_id", user_id)
        check_aware("now", now)
        query = self._catalog.get_video(video_id)
        excluded = self._seen_ids(user_id, now)
        if self._embeddings is not None and self._embeddings.has_vector(video_id):
            return self._by_embedding(video_id, k, excluded)
        return self._by_metadata(query, k, excluded)

    def _seen_ids(self, user_id: int | None, now: datetime) -> set[int]:
        if user_id is None or self._seen is None or self._config.max_seen == 0:
            return set()
        since = now - timedelta(days=self._config.seen_window_days)
        return set(self._seen.recently_seen(user_id, since=since, limit=self._config.max_seen))

    def _by_embedding(self, video_id: int, k: int, excluded: set[int]) -> list[SimilarVideo]:
        assert self._embeddings is not None
        results: list[SimilarVideo] = []
        exclude = set(excluded)
        # Rows may name videos that are not ready (or gone): drop them and ask again
        # for the missing places until k are found or the index runs out.
        while len(results) < k:
            wanted = k - len(results)
            pairs = self._embeddings.similar(video_id, k=wanted, exclude=exclude)
            if not pairs:
                break
            videos = self._catalog.get_videos([pair[0] for pair in pairs])
            for candidate_id, score in pairs:
                exclude.add(candidate_id)
                video = videos.get(candidate_id)
                if video is not None and video.state is ProcessingState.READY:
                    results.append(
                        SimilarVideo(video_id=candidate_id, score=score, basis="embedding")
                    )
            if len(pairs) < wanted:
                break
        return results

    def _by_metadata(self, query: Video, k: int, excluded: set[int]) -> list[SimilarVideo]:
        candidates = self._catalog.recent_videos(limit=self._config.fallback_candidates)
        scored: list[tuple[float, int]] = []
        for candidate in candidates:
            if candidate.video_id == query.video_id or candidate.video_id in excluded:
                continue
            score = metadata_similarity(query, candidate, self._config)
            if score > 0.0:
                scored.append((-score, candidate.video_id))
        scored.sort()
        return [
            SimilarVideo(video_id=candidate_id, score=-negative, basis="metadata")
            for negative, candidate_id in scored[:k]
        ]
