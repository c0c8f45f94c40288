"""Running the schema migrations and checking which revision a database is at."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text

from reelrank.stores.adapter import StoreError

from ._errors import SchemaVersionError, store_errors
from ._schema import HEAD_REVISION

__all__ = ["check_schema", "downgrade", "migrate", "schema_revision"]

_SCRIPTS = Path(__file__).parent / "migrations"


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    return config


@contextmanager
def _schema_errors(operation: str) -> Iterator[None]:
    # Alembic's own errors (an unknown revision...) are not SQLAlchemy errors.
    try:
        with store_errors("schema", operation):
            yield
    except CommandError as exc:
        raise StoreError("schema", f"{operation} failed: {exc}") from exc


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (default: the newest), in one transaction.

    Safe to run on every start: a database already at the revision is left as it is.
    On PostgreSQL the engine's ``statement_timeout`` is lifted for the migration's own
    transaction (building an index over a million videos takes minutes); its
    ``lock_timeout`` stays. Failures raise :class:`~reelrank.StoreError` (store
    ``"schema"``).
    """
    with _schema_errors("migrate"), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL statement_timeout = 0"))
        command.upgrade(_alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Downgrade the database to ``revision``; ``"base"`` drops every table the
    migrations created (and their data).

    As in :func:`migrate`, the engine's ``statement_timeout`` is lifted for the
    transaction on PostgreSQL: going below revision 0009 builds an index over the
    videos again."""
    with _schema_errors("downgrade"), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL statement_timeout = 0"))
        command.downgrade(_alembic_config(connection), revision)


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` before the first migration."""
    with store_errors("schema", "read revision"), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Raise :class:`~reelrank_postgres.SchemaVersionError` unless the database is at
    :data:`~reelrank_postgres.HEAD_REVISION`."""
    found = schema_revision(engine)
    if found != HEAD_REVISION:
        raise SchemaVersionError("schema", found, HEAD_REVISION)
