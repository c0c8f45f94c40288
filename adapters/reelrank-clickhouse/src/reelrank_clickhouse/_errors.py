"""How driver, SQLAlchemy and socket failures become reelrank's store errors."""

from __future__ import annotations

import clickhouse_driver.errors as driver_errors
import sqlalchemy.exc
from clickhouse_sqlalchemy.exceptions import DatabaseException

from reelrank.stores.adapter import StoreErrorTranslator, exception_chain

__all__ = ["store_errors"]

_TIMEOUTS: tuple[type[BaseException], ...] = (
    driver_errors.SocketTimeoutError,
    TimeoutError,
    sqlalchemy.exc.TimeoutError,
)


def _is_timeout(exc: BaseException) -> bool:
    # clickhouse-sqlalchemy wraps the driver's error in DatabaseException (as ``orig``)
    # and SQLAlchemy may wrap that again; look through the chain to the root cause.
    return any(
        isinstance(error, _TIMEOUTS)
        or (
            isinstance(error, driver_errors.ServerException)
            and error.code == driver_errors.ErrorCodes.TIMEOUT_EXCEEDED
        )
        for error in exception_chain(exc)
    )


store_errors = StoreErrorTranslator(
    (driver_errors.Error, DatabaseException, sqlalchemy.exc.SQLAlchemyError, OSError, EOFError),
    is_timeout=_is_timeout,
)
"""``store_errors(store, operation)``: a timeout (a socket timeout, an exhausted
connection pool, the server's ``max_execution_time``) becomes
:class:`~reelrank.StoreTimeoutError`, any other driver, SQLAlchemy or socket failure
:class:`~reelrank.StoreError`."""
