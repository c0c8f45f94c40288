"""Turning SQLAlchemy and driver errors into reelrank's store errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import exc as sa_exc

from reelrank.exceptions import StoreError, StoreTimeoutError

__all__ = ["SchemaVersionError", "store_errors"]


class SchemaVersionError(StoreError):
    """The database schema is not the revision this version of the adapter needs.

    ``found`` is the revision in the database (``None`` for an empty database) and
    ``expected`` the adapter's; run :func:`~reelrank_postgres.migrate` to upgrade.
    """

    def __init__(self, store: str, found: str | None, expected: str) -> None:
        self.found = found
        self.expected = expected
        super().__init__(
            store,
            f"schema revision is {found!r}, this adapter needs {expected!r}; "
            "run reelrank_postgres.migrate(engine)",
        )


def _is_timeout(exc: sa_exc.SQLAlchemyError) -> bool:
    if isinstance(exc, sa_exc.TimeoutError):
        return True  # no pooled connection became free in time
    orig = getattr(exc, "orig", None)
    if isinstance(orig, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        return True  # statement_timeout or lock_timeout fired on the server
    if isinstance(orig, psycopg.errors.ConnectionTimeout):
        return True
    if isinstance(orig, psycopg.OperationalError) and "timeout" in str(orig).lower():
        return True  # libpq's connect_timeout
    return isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig)


@contextmanager
def store_errors(store: str, operation: str) -> Iterator[None]:
    """Re-raise any database failure inside the block as a reelrank store error.

    Timeouts (pool checkout, ``statement_timeout``, ``lock_timeout``, connect timeout,
    SQLite's busy timeout) become :class:`~reelrank.StoreTimeoutError`, everything else
    :class:`~reelrank.StoreError`; both name ``store`` and keep the driver's exception
    as ``__cause__``.
    """
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if _is_timeout(exc):
            raise StoreTimeoutError(store, f"{operation} timed out: {detail}") from exc
        raise StoreError(store, f"{operation} failed: {detail}") from exc
    except (psycopg.Error, sqlite3.Error, OSError) as exc:
        raise StoreError(store, f"{operation} failed: {type(exc).__name__}: {exc}") from exc
