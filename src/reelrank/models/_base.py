"""The bases of every model, and the field types they share.

:class:`DomainModel` is the base of value types, :class:`StrictModel` of configs.
All models are immutable pydantic models that reject unknown fields. A validation
failure raises :class:`~reelrank.InvalidInputError` whose ``field`` names the bad field
(dotted for nested values, for example ``renditions.0.height``).

Identifiers (video, creator and user ids) are positive 64-bit integers,
``1 <= id <= 2**63 - 1``: the scoring kernels hold video ids in ``int64`` arrays, so any
id a store hands out fits them without a lookup table. Booleans, floats and numeric
strings are refused as ids (JSON integers are fine).

Timestamps must carry a timezone; they are converted to UTC on the way in, so every
stored or returned datetime is a timezone-aware UTC datetime.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

from ..exceptions import ConfigError, InvalidInputError, ReelrankError
from ..validation import MAX_ID

__all__ = ["DomainModel", "StrictModel", "WEIGHT_FIELDS", "config_error_from", "input_error_from"]

WEIGHT_FIELDS: tuple[str, ...] = (
    "freshness",
    "completion",
    "engagement",
    "affinity",
    "deep_learning",
)
"""The five signal weights, in the order the kernels and explanations use."""


def config_error_from(exc: ValidationError) -> ConfigError:
    """Turn pydantic's first validation error into a :class:`ConfigError`."""
    first = exc.errors()[0]
    path = ".".join(str(part) for part in first["loc"])
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        # A nested model names the field relative to itself; prefix where it sits.
        field = f"{path}.{cause.field}" if path else cause.field
        return ConfigError(field, cause.value, cause.reason)
    return ConfigError(path or "<root>", first.get("input"), first["msg"])


class TypedErrorModel(BaseModel):
    """A strict, immutable pydantic model whose validation errors are reelrank errors.

    Unknown fields are rejected and instances are immutable. Whether a model is built
    by calling the class, :meth:`model_validate` or :meth:`model_validate_json`, a
    validation failure raises what ``_typed_error`` makes of pydantic's error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @classmethod
    def _typed_error(cls, exc: ValidationError) -> ReelrankError:
        """The reelrank error that a validation failure of this model raises."""
        raise NotImplementedError

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise self._typed_error(exc) from exc

    @classmethod
    def model_validate(cls, *args: Any, **kwargs: Any) -> Self:
        """Validate a Python object; raises a typed reelrank error on bad values."""
        try:
            return super().model_validate(*args, **kwargs)
        except ValidationError as exc:
            raise cls._typed_error(exc) from exc

    @classmethod
    def model_validate_json(cls, *args: Any, **kwargs: Any) -> Self:
        """Validate JSON text; raises a typed reelrank error on bad values."""
        try:
            return super().model_validate_json(*args, **kwargs)
        except ValidationError as exc:
            raise cls._typed_error(exc) from exc


class StrictModel(TypedErrorModel):
    """Base for every reelrank config model.

    Unknown fields are rejected, instances are immutable, and every validation
    failure surfaces as :class:`~reelrank.ConfigError` naming the field.
    """

    @classmethod
    def _typed_error(cls, exc: ValidationError) -> ReelrankError:
        """:class:`~reelrank.ConfigError` naming the first bad field."""
        return config_error_from(exc)


def load_toml_table(source: str | Path, table: str | None = None) -> Any:
    """Parse TOML text or a ``.toml`` file and return the dotted sub-``table`` (or all).

    Raises :class:`~reelrank.ConfigError` for text that is not TOML or a missing table.
    """
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    try:
        data: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<toml>", None, f"not valid TOML: {exc}") from exc
    for part in table.split(".") if table else []:
        if not isinstance(data, dict) or part not in data:
            raise ConfigError(table or "<toml>", None, "table not found")
        data = data[part]
    return data


def input_error_from(exc: ValidationError) -> InvalidInputError:
    """Turn pydantic's first validation error into an :class:`InvalidInputError`."""
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, InvalidInputError):
        # Raised by a nested model or a model validator: its field is relative to
        # the model that raised it, so prefix where that model sits.
        if not location:
            return cause
        return InvalidInputError(f"{location}.{cause.field}", cause.reason)
    return InvalidInputError(location or "<root>", f"{first['msg']} (got {first.get('input')!r})")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # Reported by pydantic as a validation error of the field, so a typed error
        # naming it: a time near year 1 or 9999 whose offset carries it out of range.
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from None


Id = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
"""A positive int64 identifier."""

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]

NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]

NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]

Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
"""A short identifier-like label: variants, model names and versions, config tags."""


class DomainModel(TypedErrorModel):
    """Base for every reelrank domain model.

    Unknown fields are rejected, instances are immutable, and every validation
    failure surfaces as :class:`~reelrank.InvalidInputError` naming the field, whether
    the model is built by calling the class, :meth:`model_validate` or
    :meth:`model_validate_json`.
    """

    @classmethod
    def _typed_error(cls, exc: ValidationError) -> ReelrankError:
        """:class:`~reelrank.InvalidInputError` naming the first bad field."""
        return input_error_from(exc)
