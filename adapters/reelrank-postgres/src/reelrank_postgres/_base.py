"""What every SQL store shares: the engine, the schema check and dialect-aware upserts."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Engine,
    Table,
    TableValuedAlias,
    any_,
    bindparam,
    func,
)
from sqlalchemy.dialects import postgresql, sqlite

from reelrank.stores.adapter import InvalidInputError

from ._migrations import check_schema

__all__ = ["ReplicaReadStore", "SqlStore", "check_instance", "requested_users", "unique"]

_T = TypeVar("_T")

Insert = postgresql.Insert | sqlite.Insert


def check_instance(field: str, value: object, kind: type[_T]) -> _T:
    """Return ``value`` if it is a ``kind``, else raise ``InvalidInputError`` naming ``field``."""
    if not isinstance(value, kind):
        raise InvalidInputError(field, f"must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _dialect(field: str, engine: object) -> str:
    """The dialect of ``engine``; ``InvalidInputError`` naming ``field`` unless it is a
    PostgreSQL or SQLite engine."""
    if not isinstance(engine, Engine):
        raise InvalidInputError(field, f"must be a SQLAlchemy Engine, got {engine!r}")
    dialect = engine.dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise InvalidInputError(field, f"must be PostgreSQL or SQLite, not {dialect}")
    return dialect


def unique(ids: list[int]) -> list[int]:
    """``ids`` without duplicates, in first-seen order."""
    return list(dict.fromkeys(ids))


def requested_users() -> TableValuedAlias:
    """``unnest(:user_ids) AS requested(user_id)``: the users of a PostgreSQL read of many
    users, one row each, for a ``LATERAL`` subquery to read per user. The parameter
    ``user_ids`` is one ``bigint[]`` value, so a statement is cached once whatever the
    batch size."""
    user_ids = bindparam("user_ids", type_=postgresql.ARRAY(BigInteger))
    return func.unnest(user_ids).table_valued("user_id").render_derived(name="requested")


class SqlStore:
    """Base of the stores: holds the engine and refuses a database at another revision.

    ``verify_schema=False`` skips the one query that reads the revision, for an
    application that checked it once at start-up with :func:`check_schema`.
    """

    _store = "store"
    users_per_statement = 500
    """The users one statement of a read of many users (``followed_videos_many``...)
    reads; a larger batch takes one statement per slice of this many. It bounds the
    parameters of a statement (SQLite binds one per user) and the rows of one reply."""

    def __init__(self, engine: Engine, *, verify_schema: bool = True) -> None:
        dialect = _dialect("engine", engine)
        self._engine = engine
        self._postgres = dialect == "postgresql"
        if verify_schema:
            check_schema(engine)

    @property
    def engine(self) -> Engine:
        """The engine the store runs its statements on."""
        return self._engine

    def _id_in(self, column: ColumnElement[Any], ids: list[int]) -> ColumnElement[bool]:
        """``column IN ids``; on PostgreSQL as ``column = ANY(:ids)`` with one array
        parameter, so 500 ids are one bound value and one cached statement."""
        if self._postgres:
            array = bindparam(None, ids, type_=postgresql.ARRAY(BigInteger))
            return column == any_(array)
        return column.in_(ids)

    def _insert(self, table: Table) -> Insert:
        """An ``INSERT`` with ``ON CONFLICT`` support in the engine's dialect."""
        return postgresql.insert(table) if self._postgres else sqlite.insert(table)


class ReplicaReadStore(SqlStore):
    """A store whose reads that tolerate lag may run on a replica.

    ``read_engine`` (a streaming replica of the primary, see
    :func:`~reelrank_postgres.connect_read`) takes the reads that return what the store
    holds without writing; every write, and every read inside a write's transaction,
    runs on ``engine``. Without it every statement
    runs on ``engine``. A replica replays the primary's changes a little later, so a read
    right after a write may not see it yet (see the adapter's documentation on replicas).
    With ``verify_schema`` the replica's revision is checked as well: a replica that has
    not replayed a migration yet is refused like a primary at another revision.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        read_engine: Engine | None = None,
        verify_schema: bool = True,
    ) -> None:
        super().__init__(engine, verify_schema=verify_schema)
        if read_engine is not None:
            dialect = _dialect("read_engine", read_engine)
            if dialect != engine.dialect.name:
                raise InvalidInputError(
                    "read_engine",
                    f"must use the engine's dialect {engine.dialect.name}, not {dialect}",
                )
            if verify_schema:
                check_schema(read_engine)
        self._read_engine = engine if read_engine is None else read_engine
        # On PostgreSQL a read runs outside a transaction block: in one, psycopg sends
        # BEGIN before the statement and SQLAlchemy a ROLLBACK when the connection goes
        # back to the pool, two round trips for each read's one. Under READ COMMITTED a
        # statement sees the same rows either way. A read that needs the block (SET
        # LOCAL) connects to ``_read_engine``.
        self._reader = (
            self._read_engine.execution_options(isolation_level="AUTOCOMMIT")
            if self._postgres
            else self._read_engine
        )

    @property
    def read_engine(self) -> Engine:
        """The engine the replica-safe reads run on: ``read_engine`` if one was given,
        else :attr:`engine`."""
        return self._read_engine
