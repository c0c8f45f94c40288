"""The public ground a store adapter is built on.

An adapter (``reelrank-redis``, ``reelrank-postgres``, ``reelrank-clickhouse`` or your
own) implements the store protocols of :mod:`reelrank.stores` on top of a database
driver. Everything it needs from reelrank is exported here, so an adapter imports no
private module and keeps working across internal refactors of the core:

* :class:`AdapterSettings`, the base of an adapter's settings model. By convention a
  timeout is a ``float`` named ``*_seconds`` and a secret (a password, a URL or DSN that
  may carry one) is a :class:`pydantic.SecretStr`, which never shows in a repr or in a
  :class:`~reelrank.ConfigError`.
* :class:`StoreErrorTranslator`, which turns the driver's exceptions into
  :class:`~reelrank.StoreTimeoutError` and :class:`~reelrank.StoreError` with one
  message format (``"<store>: <operation> timed out: <Type>: <detail>"``), and
  :func:`exception_chain` to look through wrapped driver errors.
* The argument checks of :mod:`reelrank.validation`; each takes ``(field, value)`` and
  raises :class:`~reelrank.InvalidInputError` naming ``field``.
* :class:`~reelrank.EngagementEventColumns`, engagement events given as columns and
  checked with numpy by the rules of :class:`~reelrank.EngagementEvent`, for a bulk
  ingest that builds no model per event; :func:`check_id_column` checks a further
  column of ids (the creators of the events, say).
* The optional bulk reads of many users that cache warming uses when a store has them
  (:class:`BulkReadCatalog`, :class:`BulkReadEventStore`, :class:`BulkReadSeenStore`),
  the helpers that fall back to one call per user without them
  (:func:`bulk_followed_videos`, :func:`bulk_affinities`, :func:`bulk_recently_seen`),
  their argument checks (:func:`check_user_ids`, :func:`check_ids_by_user`) and
  :func:`chunked` to bound each statement of a large batch.
* :class:`FollowedCandidatesCatalog`, the optional catalog read of a user's followed
  videos with their statistics in one round trip, which a cache miss uses when the
  catalog holds the event store's statistics, and :class:`FollowedColumnsCatalog`,
  the optional read of the same videos as columns without statistics, which a miss
  uses otherwise.
* :class:`LabelColumnsCatalog`, the optional read of videos' labels as columns
  (:class:`~reelrank.VideoLabelColumns`), which trending uses when the catalog has it.
* The capabilities a store declares to the feed service: :class:`SelfBoundingStore`
  (:func:`bounds_own_calls`) and :class:`InProcessStore` (:func:`is_in_process`).
* The shared semantics an adapter must reproduce exactly: the text analysis of the
  search index (:func:`tokenize`, :func:`parse_query`, :class:`SearchConfig`) and the
  affinity arithmetic of the event store (:func:`affinity`, :func:`affinity_credit`).
* :func:`check_appendable_event`, the checks every event store applies to an event
  before :meth:`~reelrank.stores.EventStore.append` writes it (a watch carries its
  completion).
* The store protocols themselves and the exceptions a store raises.

The value types stores exchange (:class:`~reelrank.Video`,
:class:`~reelrank.EngagementEvent`, ...) are public in :mod:`reelrank.models`, and the
contract suite that checks an adapter is :mod:`reelrank.testing`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ContextDecorator
from types import TracebackType
from typing import Any, Literal, get_args

from pydantic import SecretStr, ValidationError

from .._public import _public_module
from ..exceptions import (
    ConfigError,
    InvalidInputError,
    NotFoundError,
    ReelrankError,
    StoreError,
    StoreTimeoutError,
)
from ..models import (
    EngagementEventColumns,
    PageOutcome,
    PageRequest,
    StrictModel,
    affinity,
    affinity_credit,
)
from ..models._base import config_error_from
from ..models._trending import check_trending_kind
from ..validation import (
    MAX_ID,
    check_aware,
    check_feed_key,
    check_id,
    check_id_column,
    check_ids,
    check_ids_by_user,
    check_lease_owner,
    check_limit,
    check_max_age,
    check_tag,
    check_ttl,
    check_user_ids,
    check_variant,
    finite_or_raise,
    utc_now,
)
from ._bulk_reads import bulk_affinities, bulk_followed_videos, bulk_recently_seen, chunked
from ._common import check_appendable_event
from ._pages import page_record, take_page_in_steps
from ._protocols import (
    AtomicSeenStore,
    BoundedAgeEventStore,
    BulkReadCatalog,
    BulkReadEventStore,
    BulkReadSeenStore,
    Catalog,
    CoordinatedTrendingSnapshotStore,
    EngagementLog,
    EventStore,
    FeedCache,
    FeedKey,
    FollowedCandidatesCatalog,
    FollowedColumnsCatalog,
    InProcessStore,
    LabelColumnsCatalog,
    ModelRegistry,
    PageTakingSeenStore,
    ProgressStore,
    SearchIndex,
    SeenStore,
    SelfBoundingStore,
    TrendingSnapshotStore,
    bounds_own_calls,
    is_in_process,
)
from ._text import SearchConfig, parse_query, tokenize

__all__ = [
    "MAX_ID",
    "AdapterSettings",
    "AtomicSeenStore",
    "BulkReadCatalog",
    "BoundedAgeEventStore",
    "BulkReadEventStore",
    "BulkReadSeenStore",
    "CoordinatedTrendingSnapshotStore",
    "Catalog",
    "ConfigError",
    "EngagementEventColumns",
    "EngagementLog",
    "EventStore",
    "FeedCache",
    "FeedKey",
    "FollowedCandidatesCatalog",
    "FollowedColumnsCatalog",
    "LabelColumnsCatalog",
    "InProcessStore",
    "InvalidInputError",
    "ModelRegistry",
    "NotFoundError",
    "PageOutcome",
    "PageRequest",
    "PageTakingSeenStore",
    "ProgressStore",
    "SearchConfig",
    "SearchIndex",
    "SeenStore",
    "SelfBoundingStore",
    "StoreError",
    "StoreErrorTranslation",
    "StoreErrorTranslator",
    "StoreTimeoutError",
    "TrendingSnapshotStore",
    "affinity",
    "affinity_credit",
    "bounds_own_calls",
    "bulk_affinities",
    "bulk_followed_videos",
    "bulk_recently_seen",
    "check_appendable_event",
    "check_aware",
    "check_feed_key",
    "check_id",
    "check_id_column",
    "check_ids",
    "check_ids_by_user",
    "check_lease_owner",
    "check_limit",
    "check_max_age",
    "check_tag",
    "check_trending_kind",
    "check_ttl",
    "check_user_ids",
    "check_variant",
    "chunked",
    "describe_error",
    "exception_chain",
    "finite_or_raise",
    "is_in_process",
    "page_record",
    "parse_query",
    "take_page_in_steps",
    "tokenize",
    "utc_now",
]

_MASK = "**********"


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


class AdapterSettings(StrictModel):
    """Base of an adapter's settings model (its ``RedisConfig``, ``SqlStoreConfig``...).

    Like every reelrank config it rejects unknown fields, is immutable, takes a
    docstring under each field (shown in the API reference) and raises
    :class:`~reelrank.ConfigError` naming the first bad field. On top of that, the value
    of a field declared as :class:`pydantic.SecretStr` (or ``SecretStr | None``) is
    masked in that error, so a rejected password or URL never reaches a log.

    Conventions the bundled adapters follow, and a new adapter should too:

    * timeouts are ``float`` fields named ``*_seconds``, bounded above (a store sits on
      the request path, so every wait must end);
    * passwords, and URLs or DSNs that may carry one, are ``SecretStr``;
    * the factory that builds the driver handle from the settings is called
      ``connect(config)``.
    """

    @classmethod
    def _typed_error(cls, exc: ValidationError) -> ReelrankError:
        """:class:`~reelrank.ConfigError` naming the first bad field, secrets masked."""
        error = config_error_from(exc)
        field = cls.model_fields.get(error.field.split(".", 1)[0])
        if field is not None and _is_secret(field.annotation):
            return ConfigError(error.field, _MASK, error.reason)
        return error


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it wraps, outermost first.

    Follows a DB-API wrapper's ``orig`` (SQLAlchemy's :class:`~sqlalchemy.exc.DBAPIError`
    and dialects built like it) and otherwise ``__cause__``; each exception is yielded
    once, so a cycle ends the walk. Use it in an ``is_timeout`` test to find the
    driver's timeout behind its wrappers.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        nested = getattr(current, "orig", None)
        current = nested if isinstance(nested, BaseException) else current.__cause__


def describe_error(exc: BaseException) -> str:
    """``"<Type>: <first line of the message>"`` of ``exc``, or just the type name.

    Only the first line is kept: drivers append the statement and its parameters on
    later lines, which do not belong in an error message or a log.
    """
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class StoreErrorTranslator:
    """Turns a driver's exceptions into reelrank's store errors, the same way everywhere.

    ``driver_errors`` are the exception types the driver raises for a failed call (for
    redis-py ``(redis.exceptions.RedisError, OSError)``); ``is_timeout`` tells which of
    them mean that a deadline passed. Calling the translator with a store name and an
    operation gives a :class:`StoreErrorTranslation`, usable as a context manager or a
    decorator::

        store_errors = StoreErrorTranslator(
            (redis.exceptions.RedisError, OSError),
            is_timeout=lambda exc: isinstance(exc, redis.exceptions.TimeoutError | TimeoutError),
        )

        with store_errors("cache", "get"):
            raw = client.get(key)

    Any other exception (a bug, a reelrank error raised inside the block) passes
    through unchanged.
    """

    def __init__(
        self,
        driver_errors: tuple[type[BaseException], ...],
        *,
        is_timeout: Callable[[BaseException], bool],
    ) -> None:
        self.driver_errors = driver_errors
        self.is_timeout = is_timeout

    def __call__(self, store: str, operation: str) -> StoreErrorTranslation:
        """A context manager and decorator translating failures of ``operation`` on ``store``."""
        return StoreErrorTranslation(self, store, operation)

    def translate(self, store: str, operation: str, exc: BaseException) -> StoreError:
        """The store error that stands for the driver error ``exc``.

        :class:`~reelrank.StoreTimeoutError` when ``is_timeout(exc)``, else
        :class:`~reelrank.StoreError`; the message is
        ``"<store>: <operation> timed out: <detail>"`` or
        ``"<store>: <operation> failed: <detail>"`` with :func:`describe_error`'s detail.
        Raise it ``from exc`` so the driver's error stays the ``__cause__``.
        """
        detail = describe_error(exc)
        if self.is_timeout(exc):
            return StoreTimeoutError(store, f"{operation} timed out: {detail}")
        return StoreError(store, f"{operation} failed: {detail}")


class StoreErrorTranslation(ContextDecorator):
    """One use of a :class:`StoreErrorTranslator`: a context manager and a decorator.

    A driver error escaping the block (or the decorated function) is re-raised as the
    translator's store error, ``from`` the driver error.
    """

    def __init__(self, translator: StoreErrorTranslator, store: str, operation: str) -> None:
        self.translator = translator
        self.store = store
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if exc is not None and isinstance(exc, self.translator.driver_errors):
            raise self.translator.translate(self.store, self.operation, exc) from exc
        return False


# Only these are defined privately and exported first from here.
_public_module(
    __name__, ["check_appendable_event", "check_trending_kind", "page_record"], globals()
)
