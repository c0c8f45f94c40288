"""Settings of the example application: what to seed and which stores to use."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from reelrank import ConfigError

__all__ = ["ENV_PREFIX", "Settings"]

ENV_PREFIX = "REELRANK_EXAMPLE_"
"""Prefix of the environment variables :meth:`Settings.from_env` reads."""


class Settings(BaseModel):
    """How :func:`~reelrank_example.build_default_services` wires the example.

    Unknown fields are rejected and every invalid value raises
    :class:`~reelrank.ConfigError` naming the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    """Interface ``python -m reelrank_example`` listens on (loopback by default)."""
    port: int = Field(default=8000, ge=1, le=65_535)
    """TCP port ``python -m reelrank_example`` listens on."""
    seed: int = Field(default=7, ge=0)
    """Seed of the synthetic catalog: the same seed gives the same catalog and events."""
    creators: int = Field(default=30, ge=1, le=10_000)
    """Creators in the synthetic catalog."""
    videos: int = Field(default=400, ge=1, le=1_000_000)
    """Ready videos in the synthetic catalog."""
    pending_videos: int = Field(default=6, ge=0, le=10_000)
    """Extra videos left part-way through processing (queued, transcoding, packaging or
    failed), so the processing and manifest endpoints have something not ready to show."""
    users: int = Field(default=60, ge=1, le=1_000_000)
    """Users who engage with the synthetic catalog (ids ``100_001`` onwards)."""
    events: int = Field(default=4_000, ge=0, le=10_000_000)
    """Engagement events recorded while seeding (watches, likes, unlikes, shares)."""
    embedding_dimensions: int = Field(default=16, ge=1, le=4_096)
    """Length of the synthetic video embeddings behind the similar-videos endpoint."""
    cursor_secret: SecretStr | None = Field(default=None, min_length=16)
    """Key that signs feed cursors (at least 16 characters). Processes serving the same
    users must share it; ``None`` draws a random key at start-up."""
    experiment: bool = False
    """Split users between two ranking variants (``control`` and ``fresh``, which weighs
    freshness higher), reported as ``variant`` on each feed page."""
    redis_url: str | None = Field(default=None, min_length=1, max_length=2048)
    """When set, the feed cache (behind an in-process level), the seen store and the
    event store live in this Redis (needs the ``reelrank-redis`` adapter); ``None``
    keeps everything in memory."""
    redis_state_url: str | None = Field(default=None, min_length=1, max_length=2048)
    """Optional second Redis for the seen store and the event store, so the feed cache
    can run with ``allkeys-lru`` eviction without evicting state (the adapter's
    recommended layout); ``None`` keeps them on ``redis_url``."""
    redis_prefix: str = Field(default="reelrank-example", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """Namespace of the example's Redis keys."""
    max_body_bytes: int = Field(default=64 * 1024, ge=1_024, le=16 * 1024 * 1024)
    """Largest request body accepted; a larger one gets 413."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "<root>"
            raise ConfigError(field, first.get("input"), first["msg"]) from exc

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Settings from variables such as ``REELRANK_EXAMPLE_PORT=8080``.

        Names are the field names upper-cased after :data:`ENV_PREFIX`; a variable with
        the prefix that names no field is an error, like an unknown key.
        """
        env = os.environ if environ is None else environ
        data = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in env.items()
            if key.startswith(ENV_PREFIX)
        }
        return cls(**data)
