"""Experiments: A/B tests of ranking configurations with deterministic user assignment.

An :class:`Experiment` holds named :class:`Variant` s, each a :class:`RankingConfig`
with a share of the traffic. A user is assigned by hashing ``f"{salt}:{user_id}"``
with BLAKE2b into a point in ``[0, 1)`` and finding the variant whose slice of the
cumulative shares contains it. The hash is stable across processes, machines and
Python versions (unlike :func:`hash`, which is salted per process), so the same user
sees the same variant everywhere without any stored assignment table.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from functools import cached_property
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from ..exceptions import ConfigError
from ..models._base import StrictModel, Tag, load_toml_table
from ._config import RankingConfig

__all__ = ["ASSIGNMENT_DIGEST_BYTES", "Experiment", "Variant", "assignment_point"]

ASSIGNMENT_DIGEST_BYTES = 8
"""Bytes of the BLAKE2b digest read as the big-endian integer behind an assignment point."""

_SHARE_SUM_TOLERANCE = 1e-9


# A double holds 53 significant bits: keeping the top 53 bits of the 64-bit digest
# makes the division exact, so the point can never round up to 1.0.
_POINT_BITS = 53

_DROPPED_BITS = 8 * ASSIGNMENT_DIGEST_BYTES - _POINT_BITS


def assignment_point(salt: str, user_id: object) -> float:
    """Map a user to a point in ``[0, 1)``, uniformly and reproducibly.

    With ``h = int.from_bytes(blake2b(f"{salt}:{user_id}".encode("utf-8"),
    digest_size=8).digest(), "big")``, the point is ``(h >> 11) / 2**53``: the top 53
    bits of the digest, a multiple of ``2**-53`` below 1. ``user_id`` is formatted with
    :func:`str`, so the integer ``42`` and the string ``"42"`` land on the same point.
    """
    key = f"{salt}:{user_id}".encode()
    digest = hashlib.blake2b(key, digest_size=ASSIGNMENT_DIGEST_BYTES).digest()
    return (int.from_bytes(digest, "big") >> _DROPPED_BITS) / 2.0**_POINT_BITS


class Variant(StrictModel):
    """One arm of an experiment: a ranking configuration and its share of the traffic."""

    name: Tag
    """Name reported on feed pages and recorded on engagement events: up to 64 letters,
    digits and ``_.-``, starting with a letter or digit."""
    share: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    """Fraction of users assigned to this variant; the shares of an experiment sum to 1."""
    config: RankingConfig = Field(default_factory=RankingConfig)
    """Ranking configuration served to the users of this variant."""


class Experiment(StrictModel):
    """An A/B test: named variants whose traffic shares sum to 1.

    A user's variant is the one whose slice of ``[0, 1)`` contains
    :func:`assignment_point` ``(salt, user_id)``; the slices follow the order of
    :attr:`variants`, the first starting at 0. Changing the salt reshuffles every
    user; changing shares moves only the users near the moved slice boundaries.
    """

    name: str = Field(min_length=1, max_length=64)
    """Name of the experiment, for reports and logs."""
    salt: str = Field(min_length=1, max_length=256)
    """Secret-free string mixed into the hash; a new salt gives an independent assignment."""
    variants: tuple[Variant, ...] = Field(min_length=1)
    """The arms, in the order their slices are laid out on ``[0, 1)``; names are unique."""

    @model_validator(mode="after")
    def _check_variants(self) -> Self:
        seen: set[str] = set()
        for variant in self.variants:
            if variant.name in seen:
                raise ConfigError("variants.name", variant.name, "variant names must be unique")
            seen.add(variant.name)
        total = math.fsum(variant.share for variant in self.variants)
        if abs(total - 1.0) > _SHARE_SUM_TOLERANCE:
            raise ConfigError(
                "variants.share", total, f"shares must sum to 1 within {_SHARE_SUM_TOLERANCE}"
            )
        return self

    @classmethod
    def from_toml(cls, source: str | Path, *, table: str | None = None) -> Self:
        """Build an experiment from TOML text or a ``.toml`` file path.

        ``table`` selects a dotted sub-table, for example ``"tool.reelrank.experiment"``;
        variants are an array of tables, each with an optional ``config`` table.
        """
        return cls.model_validate(load_toml_table(source, table))

    @cached_property
    def _upper_bounds(self) -> list[float]:
        # Computed from the validated shares; the last bound is pinned to 1 so that
        # rounding in the running sum can never leave a gap at the top of [0, 1).
        bounds: list[float] = []
        running = 0.0
        for variant in self.variants:
            running += variant.share
            bounds.append(running)
        bounds[-1] = 1.0
        return bounds

    def assign(self, user_id: object) -> Variant:
        """The variant ``user_id`` belongs to; the same on every process and machine."""
        point = assignment_point(self.salt, user_id)
        return self.variants[bisect.bisect_right(self._upper_bounds, point)]

    def variant(self, name: str) -> Variant:
        """The variant called ``name``; raises :class:`ConfigError` for an unknown name."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ConfigError("variant", name, "no variant with this name in the experiment")

    def config_for(self, user_id: object) -> RankingConfig:
        """The ranking configuration ``user_id`` is served (that of :meth:`assign`)."""
        return self.assign(user_id).config

    def variant_name(self, user_id: int) -> str:
        """The name of the variant ``user_id`` belongs to.

        Pass it as ``variant_for`` to :class:`~reelrank.EngagementRecorder`, so every
        recorded event carries the user's variant.
        """
        return self.assign(user_id).name

    def resolve(self, user_id: int) -> tuple[str, RankingConfig]:
        """``(variant name, ranking config)`` of ``user_id``.

        Pass it as ``assign_variant`` to :class:`~reelrank.FeedRankingService`: pages
        then report the variant and cached snapshots are keyed by it.
        """
        variant = self.assign(user_id)
        return variant.name, variant.config

    @property
    def variant_names(self) -> tuple[str, ...]:
        """The variant names, in slice order."""
        return tuple(variant.name for variant in self.variants)
