"""Turning driver, SQLAlchemy and socket errors into reelrank's store errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import clickhouse_driver.errors as driver_errors
import sqlalchemy.exc
from clickhouse_sqlalchemy.exceptions import DatabaseException

from reelrank.exceptions import StoreError, StoreTimeoutError

__all__ = ["store_errors"]

_TIMEOUTS: tuple[type[BaseException], ...] = (
    driver_errors.SocketTimeoutError,
    socket.timeout,
    TimeoutError,
    sqlalchemy.exc.TimeoutError,
)


def _is_timeout(exc: BaseException) -> bool:
    # clickhouse-sqlalchemy wraps the driver's error in DatabaseException (as ``orig``)
    # and SQLAlchemy may wrap that again; walk the chain to the root cause.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _TIMEOUTS):
            return True
        if isinstance(current, driver_errors.ServerException) and current.code == (
            driver_errors.ErrorCodes.TIMEOUT_EXCEEDED
        ):
            return True
        nested = getattr(current, "orig", None)
        current = nested if isinstance(nested, BaseException) else current.__cause__
    return False


@contextmanager
def store_errors(store: str, operation: str) -> Iterator[None]:
    """Re-raise any driver, SQLAlchemy or socket failure inside the block as a store error.

    Timeouts (a socket timeout, an exhausted connection pool, the server's
    ``max_execution_time``) become :class:`~reelrank.StoreTimeoutError`, everything
    else :class:`~reelrank.StoreError`; both name ``store`` and keep the driver's
    exception as ``__cause__``.
    """
    try:
        yield
    except (
        driver_errors.Error,
        DatabaseException,
        sqlalchemy.exc.SQLAlchemyError,
        OSError,
        EOFError,
    ) as exc:
        if _is_timeout(exc):
            raise StoreTimeoutError(store, f"{operation} timed out: {exc}") from exc
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StoreError(store, f"{operation} failed: {type(exc).__name__}: {first_line}") from exc
