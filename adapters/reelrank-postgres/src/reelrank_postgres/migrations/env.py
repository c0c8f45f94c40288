"""Alembic environment: migrations run on the connection :func:`reelrank_postgres.migrate`
passes in; there is no ``alembic.ini`` and no offline (SQL script) mode."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection


def _run_on_passed_connection() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run migrations through reelrank_postgres.migrate(engine)")
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


_run_on_passed_connection()
