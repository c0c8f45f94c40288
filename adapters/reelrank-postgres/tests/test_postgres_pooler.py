"""pgbouncer in transaction mode: why the engines need ``transaction_pooling``.

The contract suites also run through pgbouncer (``engines``'s ``pgbouncer`` deployment);
these tests show what breaks without the setting. A pooler with a single server
connection makes the failures deterministic: every client's transactions run on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from pg_support import require_pgbouncer
from reelrank_postgres import SqlCatalog, SqlStoreConfig, connect
from reelrank_postgres.testing import PgBouncer, PostgresServer
from sqlalchemy import Engine, text

from reelrank import StoreError
from reelrank.testing import make_creator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def one_connection_pooler(
    postgres_server: PostgresServer, postgres_engine: Engine
) -> Iterator[PgBouncer]:
    """pgbouncer with one server connection to the session cluster (migrated)."""
    require_pgbouncer()
    with PgBouncer({"feeds": postgres_server}, pool_size=1) as pooler:
        yield pooler


def test_prepared_statements_collide_on_a_shared_server_connection(
    one_connection_pooler: PgBouncer,
) -> None:
    dsn = one_connection_pooler.dsn("feeds")
    # psycopg names its prepared statements per client connection (_pg3_0, ...), so two
    # clients preparing on the one server connection ask for the same name.
    with (
        psycopg.connect(dsn, prepare_threshold=0, autocommit=True) as first,
        psycopg.connect(dsn, prepare_threshold=0, autocommit=True) as second,
    ):
        assert first.execute("SELECT %s::int", (1,)).fetchone() == (1,)
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
            second.execute("SELECT %s::int", (2,))
    with (
        psycopg.connect(dsn, prepare_threshold=None, autocommit=True) as first,
        psycopg.connect(dsn, prepare_threshold=None, autocommit=True) as second,
    ):
        for value in range(10):
            assert first.execute("SELECT %s::int", (value,)).fetchone() == (value,)
            assert second.execute("SELECT %s::int", (value,)).fetchone() == (value,)


def test_pgbouncer_refuses_the_options_start_up_parameter(
    one_connection_pooler: PgBouncer,
) -> None:
    direct = connect(SqlStoreConfig(url=one_connection_pooler.url("feeds")))
    try:
        with pytest.raises(StoreError) as info:
            SqlCatalog(direct, verify_schema=False).put_creator(make_creator(1))
        assert "unsupported startup parameter" in str(info.value.__cause__)
    finally:
        direct.dispose()


def test_transaction_pooling_runs_many_clients_over_one_server_connection(
    one_connection_pooler: PgBouncer, postgres_engine: Engine
) -> None:
    with postgres_engine.begin() as connection:
        connection.execute(text("TRUNCATE videos, creators CASCADE"))
    pooled = connect(
        SqlStoreConfig(url=one_connection_pooler.url("feeds"), transaction_pooling=True)
    )
    try:
        catalog = SqlCatalog(pooled)
        # More runs than psycopg's default prepare threshold (5), on several pooled
        # client connections at once, all served by the one server connection.
        held = [pooled.connect() for _ in range(3)]
        for creator in range(1, 13):
            catalog.put_creator(make_creator(creator))
            assert catalog.get_creators([creator])[creator].creator_id == creator
        for connection in held:
            assert connection.execute(text("SELECT count(*) FROM creators")).scalar_one() == 12
            connection.close()
    finally:
        pooled.dispose()
