"""The reels service: reelrank's feeds, events and discovery behind an authenticated HTTP API.

Build the services, hand them to the app factory, serve::

    from reelrank_example import Settings, build_default_services, create_app

    settings = Settings(auth_secret="a secret of at least thirty-two characters")
    app = create_app(build_default_services(settings), settings)

Logs are JSON lines (:func:`configure_logging`); tracing is off unless
``REELRANK_TRACING`` is set (:func:`configure_tracing`).

``python -m reelrank_example migrate|seed|load|serve|token`` works from ``REELRANK_*``
environment variables (see :class:`Settings`), and ``gunicorn
"reelrank_example:create_default_app()"`` serves the configured stores.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import secrets
import sys
from datetime import timedelta
from typing import Any, cast

import numpy as np
from flask import Flask

from reelrank import (
    Catalog,
    ConfigError,
    EngagementLog,
    EventStore,
    FeedObserver,
    FeedUnavailableError,
    GuardedStore,
    StoreError,
    warmup,
)

from ._api import (
    DASH_CONTENT_TYPE,
    DEFAULT_PAGE_SIZE,
    HLS_CONTENT_TYPE,
    MAX_PAGE_SIZE,
    MAX_QUERY_LENGTH,
    OPERATIONS,
    Operation,
    openapi_document,
)
from ._app import ERROR_STATUSES, ProblemError, create_app, prefetch_cards
from ._auth import Authenticator, AuthError, issue_token
from ._bulk_seed import seed_synthetic_catalog_bulk
from ._cards import store_guard
from ._health import StartupProgress
from ._load import TABLES, LoadError, load_directory
from ._logging import (
    REQUEST_ID_HEADER,
    GunicornLogger,
    configure_logging,
    gunicorn_logconfig_dict,
    logging_config,
    redact,
)
from ._metrics import AppMetrics
from ._services import (
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    IdempotencyRecord,
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    Services,
    SqlIdempotencyStore,
    Stores,
    build_default_services,
    build_services,
    configured_stores,
    fold_stats,
    is_empty,
    memory_stores,
    migrate,
    seed_synthetic_catalog,
)
from ._settings import ENV_PREFIX, Settings
from ._turns import workers_take_turns

__all__ = [
    "DASH_CONTENT_TYPE",
    "DEFAULT_PAGE_SIZE",
    "ENV_PREFIX",
    "ERROR_STATUSES",
    "FIRST_USER_ID",
    "FIRST_VIDEO_ID",
    "HLS_CONTENT_TYPE",
    "MAX_PAGE_SIZE",
    "MAX_QUERY_LENGTH",
    "OPERATIONS",
    "REQUEST_ID_HEADER",
    "TABLES",
    "AuthError",
    "Authenticator",
    "GunicornLogger",
    "IdempotencyRecord",
    "IdempotencyStore",
    "LoadError",
    "MemoryIdempotencyStore",
    "Operation",
    "ProblemError",
    "RedisIdempotencyStore",
    "Services",
    "Settings",
    "SqlIdempotencyStore",
    "StartupProgress",
    "Stores",
    "build_default_services",
    "build_services",
    "configure_logging",
    "configure_tracing",
    "configured_stores",
    "create_app",
    "create_default_app",
    "demo_authenticator",
    "fold_stats",
    "gunicorn_logconfig_dict",
    "is_empty",
    "issue_token",
    "load_directory",
    "logging_config",
    "memory_stores",
    "migrate",
    "openapi_document",
    "redact",
    "seed_synthetic_catalog",
    "seed_synthetic_catalog_bulk",
]

_logger = logging.getLogger(__name__)
# Start-up warms the feeds of the users active in the last day, newest first, a batch at
# a time so that its progress shows in the metrics. The day's events are read as
# columns (32 bytes an event); past these bounds the most recently active users are
# warmed and the others' first page is ranked for its request.
_WARM_EVENTS = 1_000_000
_WARM_USERS = 20_000
_WARM_BATCH = 500
# Reading them is a batch job: a large engagement log takes longer to answer than a
# request's read deadline allows.
_WARM_READ_DEADLINE_SECONDS = 10.0
# ... and keeps the card details of the newest videos, the bulk of the feed's candidates,
# so their cards can be built while the catalog is down.
_WARM_CARDS = 2_000
# How long a worker waits for another one's warming before it warms too. Each batch of
# warming is bounded by its store deadlines; this only stops a stuck worker from
# holding the others' start-up for good.
_WARM_TURN_WAIT_SECONDS = 300.0
# Python runs a full collection once ten middle ones have run and the objects promoted
# since the last full one number a quarter of those it kept. After gc.freeze() the
# unfrozen oldest generation is small, so that quarter is reached every ten middle
# collections: several full collections a minute, each holding the interpreter lock for
# up to tens of milliseconds. A full collection after a hundred middle ones instead.
_FULL_COLLECTION_AFTER_MIDDLE = 100


def _active_users(user_ids: np.ndarray[Any, Any], most: int) -> list[int]:
    """The distinct users of events listed newest first, most recently active first, at
    most ``most`` of them."""
    distinct, first_row = np.unique(user_ids, return_index=True)
    newest_first = distinct[np.argsort(first_row, kind="stable")]
    users: list[int] = newest_first[:most].tolist()
    return users


def _prefetch_recent_cards(app: Flask, catalog: Catalog) -> int:
    """Keep the card details of the catalog's newest videos in ``app`` (start-up's last
    step); returns how many were kept. A catalog that cannot answer leaves none kept:
    cards are then read per request, as the service does for any other video."""
    try:
        videos = catalog.recent_videos(limit=_WARM_CARDS)
    except StoreError:
        _logger.warning("could not read the newest videos' card details at start-up", exc_info=True)
        return 0
    return prefetch_cards(app, videos)


def demo_authenticator(settings: Settings) -> Authenticator:
    """The authenticator of ``settings``; in demo mode without keys, one on a fresh secret.

    When it draws the secret, it prints a token for the first synthetic user and a
    ``curl`` line using it (``scripts/serve.sh`` draws one secret for all workers and
    prints its own).
    Without auth configuration and outside demo mode, raises
    :class:`~reelrank.ConfigError` (field ``auth_secret``): the service never starts open.
    """
    if settings.auth_configured or not settings.demo:
        return Authenticator(settings)
    if settings.workers > 1:
        raise ConfigError(
            "auth_secret", None, "several workers must share it: set it, even in demo mode"
        )
    secret = secrets.token_urlsafe(32)
    authenticator = Authenticator(settings, secret=secret)
    token = issue_token(secret, FIRST_USER_ID)
    print(
        f"demo mode: a token for user {FIRST_USER_ID}, valid 24 hours:\n{token}\n"
        f'curl -H "Authorization: Bearer {token}" '
        f"http://{settings.host}:{settings.port}/api/v1/reels?limit=5",
        file=sys.stderr,
        flush=True,
    )
    return authenticator


def configure_tracing(settings: Settings, exporter: Any = None) -> Any:
    """Set up OpenTelemetry tracing from ``settings`` (see :mod:`reelrank_example._tracing`).

    Returns the process's ``TracerProvider``. Call it before building the stores, so
    their clients are traced; :func:`create_default_app` does when ``settings.tracing``
    is on. ``exporter`` (an SDK ``SpanExporter``, such as ``InMemorySpanExporter`` in
    tests) replaces the configured one (joins it, once tracing is set up) and receives
    every span as it ends. Tracing code is imported only here and when
    ``settings.tracing`` is on, so a service without tracing never loads it.
    """
    from ._tracing import configure_tracing as configure

    return configure(settings, exporter)


# Reads of the event store and the engagement log are point lookups and small
# aggregates; writes insert one event (with an id check) and get longer.
_READ_DEADLINE_SECONDS = 0.25
_WRITE_DEADLINE_SECONDS = 1.0


def _guarded(stores: Stores, observer: FeedObserver) -> Stores:
    """``stores`` with the event store and the engagement log behind deadlines and
    breakers (a :class:`~reelrank.GuardedStore` each, calls reported to ``observer``).

    Warming's read of many users' affinities (one per batch of ``_WARM_BATCH`` users)
    gets the start-up reads' deadline rather than a point read's."""
    events = GuardedStore(
        stores.events, store_guard("events", deadline=_READ_DEADLINE_SECONDS, observer=observer),
        writes=("append", "append_many"), write_deadline_seconds=_WRITE_DEADLINE_SECONDS,
        batch_reads=("get_affinities_many",),
        batch_deadline_seconds=_WARM_READ_DEADLINE_SECONDS,
    )  # fmt: skip
    log = GuardedStore(
        stores.log, store_guard("log", deadline=_READ_DEADLINE_SECONDS, observer=observer),
        writes=("record", "record_many"), write_deadline_seconds=_WRITE_DEADLINE_SECONDS,
    )  # fmt: skip
    return dataclasses.replace(
        stores, events=cast(EventStore, events), log=cast(EngagementLog, log)
    )


def create_default_app(settings: Settings | None = None) -> Flask:
    """The app over :func:`configured_stores`, with settings from the environment.

    For ``gunicorn "reelrank_example:create_default_app()"``. The database must have
    been migrated (``python -m reelrank_example migrate``); nothing is seeded here.
    The app answers at once; on a background thread, start-up then compiles the
    kernels (or loads them from cache), checks that the database is at the newest
    migration, and warms the feeds of users active in the last day and the card
    details of the feed's candidates. ``/healthz/startup`` answers 503 until all of it
    is done (and ``/healthz/ready`` with it), so no routed request pays a compile.
    Then everything start-up allocated is moved out of the garbage collector's reach
    (:func:`gc.freeze`), so full collections no longer walk it during requests, and
    full collections are made rarer (one per 100 middle collections instead of 10, see
    :func:`gc.set_threshold`). Every collection's pause is timed into
    ``reelrank_gc_pause_seconds``. The thread switch interval is set from
    ``REELRANK_SWITCH_INTERVAL_SECONDS`` (Python's 5 ms by default).
    """
    settings = settings or Settings()
    configure_logging(settings)
    # Process-wide: a request thread needing the interpreter lock back waits at most
    # this long for a thread running Python (background work) to let it go.
    sys.setswitchinterval(settings.switch_interval_seconds)
    if settings.tracing:
        configure_tracing(settings)
    authenticator = demo_authenticator(settings)
    stores = configured_stores(settings)
    metrics = AppMetrics()
    metrics.time_garbage_collections()
    services = build_services(_guarded(stores, metrics.observer), settings, metrics=metrics)
    startup_log = cast(
        EngagementLog,
        GuardedStore(stores.log, store_guard("log", deadline=_WARM_READ_DEADLINE_SECONDS)),
    )
    startup_catalog = cast(
        Catalog,
        GuardedStore(stores.catalog, store_guard("catalog", deadline=_WARM_READ_DEADLINE_SECONDS)),
    )
    for startup_store in (startup_log, startup_catalog):
        services.close_guard(cast(GuardedStore, startup_store).guard)
    startup = StartupProgress()
    app = create_app(services, settings, authenticator=authenticator, startup=startup)

    def check_migrations() -> None:
        from reelrank_postgres import SqlStoreConfig, check_schema, connect

        engine = connect(SqlStoreConfig(url=settings.database_url))
        try:
            check_schema(engine)
        finally:
            engine.dispose()

    def warm() -> None:
        now = services.clock()
        try:
            day = startup_log.columns_between(now - timedelta(days=1), now, limit=_WARM_EVENTS)
            users = _active_users(day.user_ids, _WARM_USERS)
        except StoreError:
            # As below: feeds start cold rather than the service not starting.
            _logger.warning("could not read the last day's events at start-up", exc_info=True)
            users = []
        try:
            # One worker at a time: the next one skips the users whose snapshots the
            # shared cache level holds already, so each is ranked and counted once.
            with workers_take_turns("warming", wait_seconds=_WARM_TURN_WAIT_SECONDS):
                for start in range(0, len(users), _WARM_BATCH):
                    services.feed.warm(users[start : start + _WARM_BATCH])
                    done = min(start + _WARM_BATCH, len(users))
                    services.metrics.warming_progress(done / len(users))
        except FeedUnavailableError:
            # A cold cache is slower, not wrong: serve, and let readiness report the outage.
            _logger.warning("could not warm feeds at start-up", exc_info=True)
        _prefetch_recent_cards(app, startup_catalog)
        # What start-up allocated (stores, compiled kernels, warmed snapshots and cards)
        # lives as long as the process. Frozen, the collector stops walking it on every
        # full collection, which otherwise lands on a random request as a 50-90 ms pause.
        # (Requests answered meanwhile are frozen too; they are few and small.)
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _FULL_COLLECTION_AFTER_MIDDLE)

    startup.run(
        [("kernels", warmup), ("migrations", check_migrations), ("warming", warm)],
        on_complete=services.metrics.startup_complete,
    )
    return app
