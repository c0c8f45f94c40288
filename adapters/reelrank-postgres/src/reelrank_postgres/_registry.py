"""The model registry and processing progress in SQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, select
from sqlalchemy.exc import IntegrityError

from reelrank.models import ModelInfo, ModelStatus, ProcessingProgress
from reelrank.stores.adapter import (
    InvalidInputError,
    NotFoundError,
    StoreError,
    check_id,
    check_ids,
    check_tag,
    finite_or_raise,
)

from ._base import ReplicaReadStore, SqlStore, check_instance, unique
from ._errors import store_errors
from ._schema import model_scores, model_versions, processing_progress

__all__ = ["SqlModelRegistry", "SqlProgressStore"]

_ACTIVE = ModelStatus.ACTIVE.value


def _model(row: Row[Any]) -> ModelInfo:
    return ModelInfo(
        name=row.name,
        version=row.version,
        status=ModelStatus(row.status),
        metrics=dict(row.metrics),
        created_at=row.created_at,
    )


class SqlModelRegistry(ReplicaReadStore):
    """A :class:`~reelrank.ModelRegistry` in PostgreSQL or SQLite.

    A partial unique index (one ``active`` row per name) enforces the registry's rule in
    the database itself, so two concurrent activations cannot both win.

    With a ``read_engine``, :meth:`get_model`, :meth:`list_models`, :meth:`active_model`
    and :meth:`get_scores` read from the replica; :meth:`register`, :meth:`activate` and
    :meth:`put_scores` (each checks what it changes in its own transaction) run on the
    primary.
    """

    _store = "models"

    def register(self, model: ModelInfo) -> None:
        """Add a staging or retired version; a duplicate raises ``InvalidInputError``."""
        check_instance("model", model, ModelInfo)
        if model.status is ModelStatus.ACTIVE:
            raise InvalidInputError("status", "register as staging, then activate")
        insert = model_versions.insert().values(
            name=model.name,
            version=model.version,
            status=model.status.value,
            metrics=dict(model.metrics),
            created_at=model.created_at,
        )
        try:
            with store_errors(self._store, "register"), self._engine.begin() as connection:
                if self._find(connection, model.name, model.version) is not None:
                    raise InvalidInputError(
                        "version", f"{model.name} {model.version} already exists"
                    )
                connection.execute(insert)
        except StoreError as exc:
            # A concurrent registration of the same version lost the race on the index.
            if isinstance(exc.__cause__, IntegrityError):
                raise InvalidInputError(
                    "version", f"{model.name} {model.version} already exists"
                ) from exc
            raise

    def get_model(self, name: str, version: str) -> ModelInfo:
        """One version; :class:`~reelrank.NotFoundError` if unknown."""
        check_tag("name", name)
        check_tag("version", version)
        with store_errors(self._store, "get_model"), self._reader.connect() as connection:
            return self._require(connection, name, version)

    def list_models(self, name: str) -> list[ModelInfo]:
        """Every version of ``name`` in registration order."""
        check_tag("name", name)
        query = select(model_versions).where(model_versions.c.name == name)
        with store_errors(self._store, "list_models"), self._reader.connect() as connection:
            rows = connection.execute(query.order_by(model_versions.c.id)).all()
        return [_model(row) for row in rows]

    def activate(self, name: str, version: str) -> ModelInfo:
        """Make ``version`` active; the previously active version is retired."""
        check_tag("name", name)
        check_tag("version", version)
        with store_errors(self._store, "activate"), self._engine.begin() as connection:
            # Lock every version of the name, so concurrent activations of one model run
            # one after the other instead of failing on the one-active index (PostgreSQL;
            # SQLite runs one writer at a time anyway).
            connection.execute(
                select(model_versions.c.id).where(model_versions.c.name == name).with_for_update()
            ).all()
            target = self._require(connection, name, version)
            connection.execute(
                model_versions.update()
                .where(
                    model_versions.c.name == name,
                    model_versions.c.status == _ACTIVE,
                    model_versions.c.version != version,
                )
                .values(status=ModelStatus.RETIRED.value)
            )
            connection.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == version)
                .values(status=_ACTIVE)
            )
        return target.model_copy(update={"status": ModelStatus.ACTIVE})

    def active_model(self, name: str) -> ModelInfo | None:
        """The active version of ``name``, if any."""
        check_tag("name", name)
        query = select(model_versions).where(
            model_versions.c.name == name, model_versions.c.status == _ACTIVE
        )
        with store_errors(self._store, "active_model"), self._reader.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _model(row)

    def put_scores(self, name: str, version: str, scores: Mapping[int, float]) -> None:
        """Store per-video scores in ``[0, 1]`` for a registered version."""
        check_tag("name", name)
        check_tag("version", version)
        if not isinstance(scores, Mapping):
            raise InvalidInputError("scores", "must be a mapping of video id to score")
        rows: list[dict[str, Any]] = []
        for video_id, score in scores.items():
            check_id("scores", video_id)
            value = finite_or_raise("scores", score)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError("scores", f"score of {video_id} must be in [0, 1]")
            rows.append({"name": name, "version": version, "video_id": video_id, "score": value})
        with store_errors(self._store, "put_scores"), self._engine.begin() as connection:
            self._require(connection, name, version)
            if not rows:
                return
            insert = self._insert(model_scores).values(rows)
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[
                        model_scores.c.name,
                        model_scores.c.version,
                        model_scores.c.video_id,
                    ],
                    set_={"score": insert.excluded.score},
                )
            )

    def get_scores(
        self, name: str, video_ids: Sequence[int], *, version: str | None = None
    ) -> dict[int, float]:
        """Scores of ``version`` (the active one when ``None``); missing ones omitted."""
        check_tag("name", name)
        ids = unique(check_ids("video_ids", video_ids))
        if version is not None:
            check_tag("version", version)
        with store_errors(self._store, "get_scores"), self._reader.connect() as connection:
            if version is None:
                version = connection.execute(
                    select(model_versions.c.version).where(
                        model_versions.c.name == name, model_versions.c.status == _ACTIVE
                    )
                ).scalar_one_or_none()
                if version is None:
                    return {}
            else:
                self._require(connection, name, version)
            if not ids:
                return {}
            rows = connection.execute(
                select(model_scores.c.video_id, model_scores.c.score).where(
                    model_scores.c.name == name,
                    model_scores.c.version == version,
                    self._id_in(model_scores.c.video_id, ids),
                )
            ).all()
        return {row.video_id: float(row.score) for row in rows}

    @staticmethod
    def _find(connection: Connection, name: str, version: str) -> Row[Any] | None:
        query = select(model_versions).where(
            model_versions.c.name == name, model_versions.c.version == version
        )
        return connection.execute(query).first()

    def _require(self, connection: Connection, name: str, version: str) -> ModelInfo:
        row = self._find(connection, name, version)
        if row is None:
            raise NotFoundError("model", f"{name}:{version}")
        return _model(row)


class SqlProgressStore(SqlStore):
    """A :class:`~reelrank.ProgressStore`: one row per video holding the progress as JSON.

    It takes no replica: a processing worker reads the progress it is about to advance,
    so every read runs on the primary.
    """

    _store = "progress"

    def get_progress(self, video_id: int) -> ProcessingProgress | None:
        """The progress of the video, or ``None`` if processing never started."""
        check_id("video_id", video_id)
        query = select(processing_progress.c.payload).where(
            processing_progress.c.video_id == video_id
        )
        with store_errors(self._store, "get_progress"), self._engine.connect() as connection:
            payload = connection.execute(query).scalar_one_or_none()
        return None if payload is None else ProcessingProgress.model_validate_json(payload)

    def put_progress(self, progress: ProcessingProgress) -> None:
        """Insert or replace the progress of ``progress.video_id``."""
        check_instance("progress", progress, ProcessingProgress)
        insert = self._insert(processing_progress).values(
            video_id=progress.video_id,
            payload=progress.model_dump_json(),
            updated_at=progress.updated_at,
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[processing_progress.c.video_id],
            set_={"payload": insert.excluded.payload, "updated_at": insert.excluded.updated_at},
        )
        with store_errors(self._store, "put_progress"), self._engine.begin() as connection:
            connection.execute(upsert)
