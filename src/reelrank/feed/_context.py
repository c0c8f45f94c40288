"""What one feed request carries through ranking and paging.

A :class:`RequestContext` names the user, their variant and ranking config, the time of
the request and the :class:`DegradedReport` that collects the dependencies it worked
around; the parts of the service take it instead of long argument lists.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from ..models._feed import DegradedDependency
from ..scoring._config import RankingConfig
from ..stores._protocols import FeedKey


@lru_cache(maxsize=256)
def config_tag(config: RankingConfig) -> str:
    """A hash of the ranking config; a cached snapshot must carry the current one."""
    digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()
    return f"cfg-{digest[:16]}"


@dataclass(slots=True)
class DegradedReport:
    """Which dependencies one request (or one warming batch) worked around, and how."""

    degraded: list[DegradedDependency] = field(default_factory=list)

    def report(self, dependency: str, fallback: str) -> None:
        entry = DegradedDependency(dependency=dependency, fallback=fallback)
        if entry not in self.degraded:
            self.degraded.append(entry)

    def copy(self) -> DegradedReport:
        return DegradedReport(list(self.degraded))

    @property
    def is_degraded(self) -> bool:
        return bool(self.degraded)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who one ranking or page is for, under which config and time, and where the
    dependencies it had to work around are reported.

    Warming ranks many users with one shared ``report``.
    """

    user_id: int
    variant: str | None
    ranking: RankingConfig
    tag: str
    """The ranking config's tag, which a cached snapshot must carry to be current."""
    now: datetime
    report: DegradedReport

    @property
    def key(self) -> FeedKey:
        return (self.user_id, self.variant)

    @property
    def seen_since(self) -> datetime:
        """Start of the seen window: videos seen since then are not served again."""
        return self.now - timedelta(seconds=self.ranking.seen_window_seconds)
