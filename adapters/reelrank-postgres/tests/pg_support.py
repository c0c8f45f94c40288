"""Helpers the adapter's test modules share (imported by name: ``conftest`` is not, as
every test directory of the repository has one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from reelrank_postgres import SqlStoreConfig, connect
from reelrank_postgres.testing import find_pgbouncer, find_postgres_bin
from sqlalchemy import Engine

DIALECTS = ("sqlite", "postgresql")
"""The dialects every ``engine`` test runs on."""

DEPLOYMENTS = (*DIALECTS, "replica", "pgbouncer")
"""What ``engines`` runs on: the two dialects, PostgreSQL with a replica for the reads,
and the same pair behind pgbouncer in transaction mode."""


@dataclass(frozen=True)
class Engines:
    """The engines a store is built with: writes on ``engine``, reads on ``read_engine``
    where the store takes one."""

    engine: Engine
    read_engine: Engine | None


TRUNCATE_ALL = (
    "TRUNCATE feed_cache, trending_snapshots, trending_leases, search_documents, search_terms, "
    "search_postings, search_stats, processing_progress, model_scores, "
    "model_versions, seen_videos, affinity_totals, affinity_credits, video_likes, video_stats, "
    "engagement_events, engagement_log, follows, videos, creators RESTART IDENTITY"
)
"""Empties every table the migrations create (PostgreSQL)."""


def require_postgres() -> None:
    """Skip the calling test when the PostgreSQL binaries are missing."""
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed (scripts/test.sh installs them)")


def sqlite_engine(path: Path) -> Engine:
    """An engine on a new SQLite file built by the adapter's own factory."""
    return connect(SqlStoreConfig(url=f"sqlite:///{path}"))


def require_pgbouncer() -> None:
    """Skip the calling test when pgbouncer is missing."""
    if find_pgbouncer() is None:
        pytest.skip("pgbouncer is not installed (scripts/test.sh installs it)")
