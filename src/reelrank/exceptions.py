"""The exceptions reelrank raises.

Every error the library raises on purpose derives from :class:`ReelrankError`, so a
service can catch the whole family with one ``except`` clause::

    ReelrankError
    ├── ConfigError                 a configuration value is invalid (names the field)
    ├── InvalidInputError           an input value or column is invalid (names the field)
    │   ├── CursorError             a page cursor is forged, expired or foreign
    │   └── QueryError              a search query is empty or too long
    ├── NotFoundError               a referenced entity does not exist
    ├── IdempotencyConflictError    an event id was recorded before with another payload
    ├── NotReadyError               a video is not ready for streaming (names its state)
    ├── InvalidTransitionError      a processing state change is not allowed
    ├── StoreError                  a backing store failed (names the store)
    │   ├── StoreTimeoutError       a store call ran past its deadline
    │   └── StoreUnavailableError   a store is skipped because its circuit is open
    └── FeedUnavailableError        no feed can be served, not even a degraded one

Errors about bad input also derive from :class:`ValueError`, and
:class:`NotFoundError` from :class:`LookupError`, so code written against the
standard library's conventions keeps working.

Every error pickles with its message and fields intact, subclasses included, so it
crosses process boundaries (``concurrent.futures`` pools, Dask, Ray) as itself instead
of surfacing as a ``BrokenProcessPool`` or an unserializable-exception wrapper.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigError",
    "CursorError",
    "FeedUnavailableError",
    "IdempotencyConflictError",
    "InvalidInputError",
    "InvalidTransitionError",
    "NotFoundError",
    "NotReadyError",
    "QueryError",
    "ReelrankError",
    "StoreError",
    "StoreTimeoutError",
    "StoreUnavailableError",
]


def _rebuild(cls: type[ReelrankError], args: tuple[Any, ...]) -> ReelrankError:
    """Recreate an error from its class and ``args`` without running ``__init__``.

    The fields come back through ``__setstate__`` from the pickled ``__dict__``.
    """
    return cls.__new__(cls, *args)


class ReelrankError(Exception):
    """Root of every error reelrank raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduction calls ``cls(*self.args)``, but subclasses take their fields
        # as constructor arguments and pass only the formatted message up to Exception, so
        # unpickling would call e.g. ``InvalidInputError(message)`` and fail. Rebuilding
        # without ``__init__`` and restoring ``__dict__`` works for every subclass,
        # including ones defined outside this module.
        return _rebuild, (type(self), self.args), self.__dict__


class ConfigError(ReelrankError, ValueError):
    """A configuration value is invalid.

    ``field`` names the offending field (dotted for nested models) and ``value`` holds
    what was given.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid config field {field!r} = {value!r}: {reason}")


class InvalidInputError(ReelrankError, ValueError):
    """An input value is invalid; ``field`` names the offending field or column."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid {field!r}: {reason}")


class CursorError(InvalidInputError):
    """A page cursor is malformed, forged, expired or belongs to another user."""

    def __init__(self, reason: str) -> None:
        super().__init__("cursor", reason)


class QueryError(InvalidInputError):
    """A search query is empty, too long or otherwise unusable."""

    def __init__(self, reason: str) -> None:
        super().__init__("query", reason)


class NotFoundError(ReelrankError, LookupError):
    """A referenced entity (video, creator, user, model...) does not exist."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class IdempotencyConflictError(ReelrankError):
    """An idempotency key was used before for a different request.

    ``field`` names the key's field (``"event_id"`` for engagement events) and ``key``
    holds its value; nothing was written.
    """

    def __init__(self, field: str, key: str, reason: str) -> None:
        self.field = field
        self.key = key
        self.reason = reason
        super().__init__(f"{field} {key!r} conflicts: {reason}")


class NotReadyError(ReelrankError):
    """A video cannot be streamed yet; ``state`` is its current processing state."""

    def __init__(self, video_id: object, state: str) -> None:
        self.video_id = video_id
        self.state = state
        super().__init__(f"video {video_id!r} is not ready for streaming (state: {state})")


class InvalidTransitionError(ReelrankError):
    """A processing-state change that the state machine does not allow."""

    def __init__(self, current: str, requested: str) -> None:
        self.current = current
        self.requested = requested
        super().__init__(f"cannot move from {current!r} to {requested!r}")


class StoreError(ReelrankError):
    """A backing store failed; ``store`` names it (``"cache"``, ``"catalog"``...).

    Adapters raise it ``from`` the driver's own exception, so the cause is kept.
    """

    def __init__(self, store: str, message: str) -> None:
        self.store = store
        super().__init__(f"{store}: {message}")


class StoreTimeoutError(StoreError):
    """A store call ran past its deadline."""


class StoreUnavailableError(StoreError):
    """A store was not called because its circuit breaker is open."""


class FeedUnavailableError(ReelrankError):
    """No feed can be served: the catalog failed and no cached snapshot exists."""
