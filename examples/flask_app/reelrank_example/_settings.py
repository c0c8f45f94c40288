"""Settings of the reels service, read from ``REELRANK_*`` environment variables."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelrank import ConfigError

__all__ = ["ENV_PREFIX", "Settings"]

ENV_PREFIX = "REELRANK_"
"""Prefix of the environment variables :class:`Settings` reads (``REELRANK_AUTH_SECRET``...)."""

Algorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"]


class Settings(BaseSettings):
    """How the service is wired, authenticated and bounded.

    Every field is read from ``REELRANK_<FIELD>`` (``REELRANK_AUTH_SECRET``,
    ``REELRANK_DATABASE_URL``...); keyword arguments win over the environment. Unknown
    keyword arguments are rejected and every invalid value raises
    :class:`~reelrank.ConfigError` naming the field.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    """Interface ``python -m reelrank_example serve`` listens on (loopback by default)."""
    port: int = Field(default=8000, ge=1, le=65_535)
    """TCP port ``python -m reelrank_example serve`` listens on."""
    workers: int = Field(default=1, ge=1, le=256)
    """Worker processes serving the same stores; above 1, ``cursor_secret`` is required
    because every worker must verify the cursors the others sign."""

    auth_secret: SecretStr | None = Field(default=None, min_length=32)
    """HS256 secret that signs the callers' JWTs (at least 32 characters)."""
    auth_public_key_file: str | None = Field(default=None, min_length=1, max_length=4096)
    """PEM file with the RSA or EC public key of an identity provider that signs tokens."""
    auth_jwks_file: str | None = Field(default=None, min_length=1, max_length=4096)
    """JWKS file (the identity provider's published keys); the token's ``kid`` picks one."""
    auth_algorithms: tuple[Algorithm, ...] = Field(default=(), max_length=8)
    """Algorithms a token may use. Empty: ``HS256`` with a secret, plus ``RS256`` and
    ``ES256`` with a public key or JWKS. Never taken from the token itself."""
    auth_leeway_seconds: float = Field(default=30.0, ge=0.0, le=300.0, allow_inf_nan=False)
    """Clock skew tolerated on ``exp`` and ``nbf``."""
    auth_issuer: str | None = Field(default=None, min_length=1, max_length=2048)
    """When set, tokens must carry this ``iss``."""
    auth_audience: str | None = Field(default=None, min_length=1, max_length=2048)
    """When set, tokens must carry this ``aud``."""
    service_token: SecretStr | None = Field(default=None, min_length=32)
    """Bearer token of internal callers (the transcoding pipeline reporting processing
    progress to ``PUT /internal/v1/reels/progress/{id}``), at least 32 characters. Not a
    JWT and never a user's: a user token there gets 403. ``None`` turns the internal
    endpoints off (403 for every caller)."""
    demo: bool = False
    """Demo mode: start without auth configuration (a random secret is drawn and a ready
    token printed) and let the explorer page re-rank with its own weights."""

    database_url: SecretStr = Field(
        default=SecretStr("sqlite:///reelrank.db"), min_length=1, max_length=2048
    )
    """SQLAlchemy URL of the catalog, search, processing progress, model registry, seen
    sets and idempotency keys (and of events and the engagement log without ClickHouse):
    ``postgresql+psycopg://...`` or ``sqlite:///file.db`` (the embedded default)."""
    clickhouse_url: SecretStr | None = Field(default=None, min_length=1, max_length=2048)
    """When set, the event store and the engagement log live in this ClickHouse."""
    clickhouse_held_like_pairs: int = Field(default=5_000_000, ge=0, le=100_000_000)
    """With ClickHouse: the most (video, user) pairs liked at the statistics' roll-up
    that each process holds in memory, 8 bytes a pair (5,000,000: about 40 MB), so the
    like counts of videos liked or unliked since the roll-up are computed from them
    instead of reading every pair of those videos again (the store's
    ``held_like_pairs``). A roll-up with more liked pairs holds none; ``0`` holds none
    (reads take the longer path, memory is saved)."""
    redis_url: str | None = Field(default=None, min_length=1, max_length=2048)
    """When set, a shared Redis level of the feed cache under the in-process LRU level;
    without it, the shared level is a table in the SQL database."""
    redis_state_url: str | None = Field(default=None, min_length=1, max_length=2048)
    """Redis for the seen sets, the idempotency keys and the rate limits. Defaults to
    ``redis_url``; give it a server of its own when the cache runs with an eviction
    policy, which would otherwise evict state too. Without either, they live in the SQL
    database (rate limits in each process)."""
    redis_prefix: str = Field(default="reelrank", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """Namespace of the service's Redis keys."""
    local_cache_ttl_seconds: float = Field(default=30.0, gt=0.0, le=3_600.0, allow_inf_nan=False)
    """Longest a feed snapshot lives in a worker's own in-process cache level. Dropping a
    user's snapshots (``invalidate``) reaches the shared level (Redis, or the SQL
    database on the embedded default) at once, but the other workers' in-process copies
    only when they expire: this is the bound on how stale another worker's feed can be."""
    shared_cache_deadline_seconds: float = Field(default=0.25, gt=0.0, le=10.0, allow_inf_nan=False)
    """How long a feed request waits for the shared feed-cache level before working
    around it (ranking afresh, or cutting a retried cursor's page again)."""
    feed_refill_ahead_items: int = Field(default=20, ge=0, le=100_000)
    """When a feed page cut from a cached snapshot leaves fewer than this many of its
    items, the user's next snapshot is ranked in the background, so the page after is
    served from the cache too (:attr:`reelrank.FeedServiceConfig.refill_ahead_items`);
    ``0`` ranks it when a request finds the snapshot used up. Keep it above the page
    size clients ask for, so that the refill lands before the page that would use the
    snapshot up."""
    feed_refill_deadline_seconds: float = Field(default=1.0, gt=0.0, le=60.0, allow_inf_nan=False)
    """How long each store call of a background refill may wait
    (:attr:`reelrank.FeedServiceConfig.refill_deadline_seconds`): a refill answers no
    request, so it waits longer than a request's store deadlines rather than end
    degraded on a busy machine, and no longer than this on a frozen store."""
    feed_hold_ran_out: bool = True
    """Answer a user who has been shown every candidate they had with the end of the
    feed from the cache until the worker's candidate pool is fetched again (at most 10
    seconds), instead of ranking again on every request
    (:attr:`reelrank.FeedServiceConfig.hold_ran_out_feeds`)."""
    feed_affinity_reuse_seconds: float = Field(default=30.0, ge=0.0, le=3600.0, allow_inf_nan=False)
    """How long a worker reuses a user's affinities (their credit with each creator)
    read for a ranking in that user's next rankings, instead of a ClickHouse read per
    cache miss (:attr:`reelrank.FeedServiceConfig.affinity_reuse_seconds`); an event
    the worker records for the user drops them at once, one recorded by another worker
    counts in the ranking at most this late. ``0`` reads them for every ranking."""
    switch_interval_seconds: float = Field(default=0.005, ge=0.0001, le=0.1, allow_inf_nan=False)
    """The interpreter's thread switch interval (:func:`sys.setswitchinterval`) in each
    worker: how long a thread that needs the interpreter lock waits while another
    thread runs Python before that thread is asked to let go. A cache hit needs the
    lock several times (after each socket read and store call), so behind background
    work (the candidate pool's refresh, trending, refills) it waits up to this long
    each time. The default is Python's own, 5 ms. In-process, 1 ms halved the cache
    hits' median beside a thread running Python; over HTTP an earlier trial did not
    lower the hits' tail on a quiet machine (*Thread switch interval* in the capacity
    log), so measure before lowering it."""
    redis_timeout_seconds: float = Field(default=0.1, gt=0.0, le=5.0, allow_inf_nan=False)
    """Socket and connect timeout of every Redis client the service makes (feed cache,
    seen sets, rate limits); a timed-out call is not retried, so a frozen Redis costs a
    request at most this long per client before it is worked around."""
    cursor_secret: SecretStr | None = Field(default=None, min_length=16)
    """Key that signs cursors (at least 16 characters); every worker and replica must
    share it. ``None`` (one worker only) draws a random key at start-up."""

    seed: int = Field(default=7, ge=0)
    """Seed of the synthetic catalog the ``seed`` command writes."""
    creators: int = Field(default=30, ge=1, le=10_000)
    """Creators in the synthetic catalog."""
    videos: int = Field(default=400, ge=1, le=1_000_000)
    """Ready videos in the synthetic catalog."""
    pending_videos: int = Field(default=6, ge=0, le=10_000)
    """Extra videos left part-way through processing, so progress has something to show."""
    users: int = Field(default=60, ge=1, le=1_000_000)
    """Users who engage with the synthetic catalog (ids ``100_001`` onwards)."""
    events: int = Field(default=4_000, ge=0, le=10_000_000)
    """Engagement events recorded while seeding."""
    embedding_dimensions: int = Field(default=16, ge=1, le=4_096)
    """Length of the synthetic video embeddings (in-memory catalogs only)."""
    model_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    """Registered model whose active version scores the feed's deep-learning signal
    (from the model registry in the database); ``None`` uses the neutral score."""
    experiment: bool = False
    """Split users between two ranking variants (``control`` and ``fresh``)."""

    max_body_bytes: int = Field(default=16 * 1024, ge=1_024, le=16 * 1024 * 1024)
    """Largest request body accepted, however it is sent; a larger one gets 413."""
    events_per_minute: int = Field(default=120, ge=1, le=100_000)
    """Event requests (like, unlike, watch, share) one user may make per minute; more
    get 429 with ``Retry-After``."""
    idempotency_hours: float = Field(default=24.0, ge=1.0, le=720.0, allow_inf_nan=False)
    """How long an ``Idempotency-Key`` is remembered; also how old an event's
    ``occurred_at`` may be (older is 400), checked by the HTTP layer and by the service's
    event recorder. The ``seed`` and ``load`` commands write history and are not bound
    by it."""
    parallel_event_writes: bool = True
    """Whether an event request writes the engagement log beside the event store
    (:attr:`RecorderConfig.parallel_writes <reelrank.RecorderConfig.parallel_writes>`),
    waiting for the slower of the two writes instead of both in a row. Each process
    then runs up to :attr:`parallel_event_write_threads` recorder threads; ``False``
    writes the log after the event store, on the request's thread."""
    parallel_event_write_threads: int = Field(default=8, ge=1, le=256)
    """With :attr:`parallel_event_writes`, the recorder threads of a process
    (:attr:`RecorderConfig.parallel_write_threads
    <reelrank.RecorderConfig.parallel_write_threads>`): at most this many log writes
    run beside their event store writes at once; an event request that finds them all
    busy writes in turn."""
    trending_reuse_seconds: float = Field(default=60.0, ge=0.0, le=3_600.0, allow_inf_nan=False)
    """How long a trending result is served before it is computed again. The result is
    kept in the shared trending store (Redis with ``redis_url``, else the SQL database),
    so every worker and replica serves the same snapshot and the fleet computes each
    kind and window about once per interval: the first request that finds the snapshot
    older takes the store's lease and computes the next, and the others serve the
    previous snapshot meanwhile. 0 computes on every call."""
    trending_refresh_ahead_seconds: float = Field(
        default=300.0, ge=0.0, le=3_600.0, allow_inf_nan=False
    )
    """How much older than ``trending_reuse_seconds`` a trending result may be and
    still be served at once while one background thread per process computes the next
    (the request that finds it older does not wait for the computation; the store's
    lease still lets one worker of the fleet compute). A result older than both, or
    none, is computed during the request. A response may thus show a result up to
    ``trending_reuse_seconds`` + this + one computation old (about 6 minutes by default,
    against windows of hours). 0 computes during the request once the result is too
    old to reuse."""
    ready_check_timeout_seconds: float = Field(default=0.25, gt=0.0, le=10.0, allow_inf_nan=False)
    """Deadline of each ``/healthz/ready`` check. The checks run concurrently, so the
    probe answers within about this long even when every store hangs."""
    card_cache_seconds: float = Field(default=30.0, ge=0.0, le=3_600.0, allow_inf_nan=False)
    """How long a process reuses the video and creator details of the cards it built,
    and the video details the feed's ranking read (aged from when their read began).
    Older details are read again, but kept and served while the catalog is
    unavailable; 0 reads them on every request (and keeps nothing)."""
    card_details_stale_seconds: float = Field(
        default=120.0, ge=0.0, le=3_600.0, allow_inf_nan=False
    )
    """How long past ``card_cache_seconds`` a process still shows the video and creator
    details of list cards (feed pages, search, similar videos) while a background read
    fetches them again, so a page whose details were read within both together waits
    for no catalog read; older details, or none, are read during the request. A
    video's detail reads details past ``card_cache_seconds`` during the request. 0
    reads them during the request once past ``card_cache_seconds``."""
    card_counts_seconds: float = Field(default=10.0, ge=0.0, le=300.0, allow_inf_nan=False)
    """How long a process reuses the counts (views, likes, shares) it read for list
    cards: feed pages, search and similar videos. Older counts are still shown while
    one background read fetches them again; counts never read (by the cards, or by the
    feed's ranking, whose reads the cards keep too) are read during the request. A
    video's detail always reads them afresh, and an event this process records has
    that video's counts read during the next request; 0 reads them on every request."""
    search_counts_seconds: float = Field(default=10.0, ge=0.0, le=300.0, allow_inf_nan=False)
    """How long a process reuses the counts (views, likes, shares) search blends with
    text relevance, read for up to 500 matches a query. Reused counts rank a search
    as the candidate pool's statistics rank a feed: up to this old; 0 reads them on
    every search."""
    search_counts_stale_seconds: float = Field(default=30.0, ge=0.0, le=300.0, allow_inf_nan=False)
    """How long past ``search_counts_seconds`` a process still ranks a search on the
    counts it read, while one background read brings them up to date, so a query
    repeated within that time does not wait for the event store's count read (the
    largest part of a search's time). Counts older than both together, never read, or
    dropped by an event this process recorded are not ranked on (see
    ``search_waits_for_unknown_counts``)."""
    search_waits_for_unknown_counts: bool = True
    """Whether a search waits for the counts it has none recent enough for (never read
    by this process, older than ``search_counts_seconds`` plus
    ``search_counts_stale_seconds``, or dropped by an event this process recorded):
    one event-store read during the search, failing the search with the store (the
    default). ``False`` ranks such a match as a video nobody engaged with (the prior
    quality) and reads its counts in the background for the next search, so a search
    never waits for the event store and the first search of a query on a process ranks
    its new matches on text relevance alone; an event then has its video's counts read
    again at once in the background. Not the default: in full HTTP runs of the load
    benchmark it made event requests slower and the service saturate sooner (see *The
    first search of a query* in the capacity docs)."""
    search_match_reuse_seconds: float = Field(default=30.0, ge=0.0, le=3600.0, allow_inf_nan=False)
    """How long a process reuses a query's text matches (the search index's best 500
    video ids and text scores) instead of asking the index (PostgreSQL) again
    (:attr:`~reelrank.SearchConfig.match_reuse_seconds`); the counts are still blended
    on every search. A video this process indexes or drops (its processing reaching
    ``ready`` or ``failed``) shows or stops showing at once; one another worker or pod
    indexes or drops, at most this much later. 0 asks the index on every search."""
    search_match_reuse_queries: int = Field(default=1_000, ge=1, le=1_000_000)
    """Most queries whose matches a process keeps at once, the least recently used
    dropped first (about 8.7 KB each)."""
    search_term_statistics_seconds: float = Field(
        default=30.0, ge=0.0, le=3600.0, allow_inf_nan=False
    )
    """How long a process reuses what a search reads from PostgreSQL before ranking (how
    many videos hold each query term, the terms a prefix expands to, the index's
    statistics), so a search whose terms were all read recently is one statement
    (:attr:`~reelrank.SearchConfig.term_statistics_seconds`). A video this process
    indexes or drops counts at once; one another worker or pod indexes or drops counts
    in the scores at most this much later. 0 reads them on every search."""
    bounded_counts_seconds: float = Field(default=10.0, ge=0.0, le=300.0, allow_inf_nan=False)
    """How old the counts may be that a process takes from the event store's memory
    (:class:`~reelrank.BoundedAgeEventStore`; the ClickHouse store's held roll-up and
    arrivals) for the videos it has no counts of: a search's matches (ranked on them as
    on a read that old, whether or not ``search_waits_for_unknown_counts``, so a repeat
    within the reuse times reads them again in the background) and list cards' videos
    (up to ``card_counts_seconds``), with no event-store query during the request. Only when
    the store cannot promise counts that recent are they read as before. A video this
    process recorded an event on in that time is read exactly, as before. 0 never
    asks."""
    media_base_url: str = Field(
        default="https://cdn.example.com", pattern=r"^https?://[^\s]{1,2000}$"
    )
    """Base of the thumbnail URLs on the cards."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Least severe log records written, for the service's loggers and its libraries'."""
    log_format: Literal["json", "console"] = "json"
    """How log lines are rendered: one JSON object per line (the default, and what log
    collectors parse), or ``console`` key=value lines for reading in a terminal."""

    tracing: bool = False
    """Trace requests with OpenTelemetry. Off, no tracing code is even imported."""
    tracing_exporter: Literal["otlp", "console"] = "otlp"
    """Where finished spans go: an OTLP/HTTP collector (needs the ``tracing`` extra, with
    ``opentelemetry-exporter-otlp-proto-http``), or stdout as JSON, for a quick look."""
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s]{1,2000}$")
    """Traces URL of the OTLP/HTTP collector (``http://collector:4318/v1/traces``);
    ``None`` uses the exporter's own default and ``OTEL_EXPORTER_OTLP_*`` variables."""
    service_name: str = Field(default="reelrank", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    """``service.name`` of the traces' resource."""
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Share of new traces recorded; a request whose ``traceparent`` says sampled or not
    keeps its caller's decision."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "<root>"
            raise ConfigError(field, first.get("input"), first["msg"]) from exc

    @model_validator(mode="after")
    def _check_shared_secrets(self) -> Settings:
        if self.workers > 1 and self.cursor_secret is None:
            raise ValueError("cursor_secret is required with more than one worker")
        if self.auth_public_key_file is not None and self.auth_jwks_file is not None:
            raise ValueError("give auth_public_key_file or auth_jwks_file, not both")
        return self

    @property
    def auth_configured(self) -> bool:
        """Whether a secret, public key or JWKS is configured."""
        return (
            self.auth_secret is not None
            or self.auth_public_key_file is not None
            or self.auth_jwks_file is not None
        )
