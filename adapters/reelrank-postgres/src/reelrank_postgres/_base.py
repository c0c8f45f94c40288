"""What every SQL store shares: the engine, the schema check and dialect-aware upserts."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import BigInteger, ColumnElement, Engine, Table, any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite

from reelrank.stores.adapter import InvalidInputError

from ._migrations import check_schema

__all__ = ["SqlStore", "check_instance", "unique"]

_T = TypeVar("_T")

Insert = postgresql.Insert | sqlite.Insert


def check_instance(field: str, value: object, kind: type[_T]) -> _T:
    """Return ``value`` if it is a ``kind``, else raise ``InvalidInputError`` naming ``field``."""
    if not isinstance(value, kind):
        raise InvalidInputError(field, f"must be a {kind.__name__}, got {type(value).__name__}")
    return value


def unique(ids: list[int]) -> list[int]:
    """``ids`` without duplicates, in first-seen order."""
    return list(dict.fromkeys(ids))


class SqlStore:
    """Base of the stores: holds the engine and refuses a database at another revision.

    ``verify_schema=False`` skips the one query that reads the revision, for an
    application that checked it once at start-up with :func:`check_schema`.
    """

    _store = "store"

    def __init__(self, engine: Engine, *, verify_schema: bool = True) -> None:
        if not isinstance(engine, Engine):
            raise InvalidInputError("engine", f"must be a SQLAlchemy Engine, got {engine!r}")
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise InvalidInputError("engine", f"must be PostgreSQL or SQLite, not {dialect}")
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
