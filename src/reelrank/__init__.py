"""reelrank: fast, explainable ranking for short-video feeds."""

from ._config import WEIGHT_FIELDS, RankingConfig
from .exceptions import (
    ConfigError,
    CursorError,
    FeedUnavailableError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    NotReadyError,
    QueryError,
    ReelrankError,
    StoreError,
    StoreTimeoutError,
    StoreUnavailableError,
)

__version__ = "0.1.0"

__all__ = [
    "WEIGHT_FIELDS",
    "ConfigError",
    "CursorError",
    "FeedUnavailableError",
    "InvalidInputError",
    "InvalidTransitionError",
    "NotFoundError",
    "NotReadyError",
    "QueryError",
    "RankingConfig",
    "ReelrankError",
    "StoreError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "__version__",
]
