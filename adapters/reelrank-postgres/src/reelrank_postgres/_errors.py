"""How SQLAlchemy and driver failures become reelrank's store errors."""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy import exc as sa_exc

from reelrank.stores.adapter import StoreError, StoreErrorTranslator

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


def _is_timeout(exc: BaseException) -> bool:
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


store_errors = StoreErrorTranslator(
    (sa_exc.SQLAlchemyError, psycopg.Error, sqlite3.Error, OSError), is_timeout=_is_timeout
)
"""``store_errors(store, operation)``: a timeout (pool checkout, ``statement_timeout``,
``lock_timeout``, connect timeout, SQLite's busy timeout) becomes
:class:`~reelrank.StoreTimeoutError`, any other database failure
:class:`~reelrank.StoreError`."""
