"""Recording engagement: validate an event against the catalog, then apply it once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from ..exceptions import ConfigError, InvalidInputError, NotReadyError
from ..models._base import StrictModel
from ..models._catalog import ProcessingState, Video
from ..models._engagement import EngagementEvent, EngagementKind
from ..stores._protocols import Catalog, EngagementLog, EventStore, SeenStore
from ..validation import utc_now

__all__ = ["EngagementRecorder", "RecorderConfig", "watch_completion"]


class RecorderConfig(StrictModel):
    """How :class:`EngagementRecorder` validates and applies events."""

    max_future_skew_seconds: float = Field(default=300.0, ge=0.0, allow_inf_nan=False)
    """How far ``occurred_at`` may lie ahead of the server clock (client clocks drift)."""
    mark_watched_seen: bool = False
    """Whether a watch also marks the video seen for the user, at ``occurred_at``.

    Needs a seen store. Off by default because feed pages usually mark what they serve;
    turn it on when videos reach users by other paths (shared links, profiles).
    """


def watch_completion(event: EngagementEvent, video: Video) -> float:
    """The completion a watch counts with.

    An explicit ``completion`` is used as given; otherwise it is
    ``min(watched_seconds / duration_seconds, 1)``, so a looped video counts as
    fully watched once.
    """
    if event.completion is not None:
        return event.completion
    if event.watched_seconds is None:
        raise InvalidInputError("watched_seconds", "a watch needs watched_seconds or completion")
    return min(event.watched_seconds / video.duration_seconds, 1.0)


class EngagementRecorder:
    """Validates engagement events and records each one exactly once.

    :meth:`record` checks an event against the catalog and the clock, fills in the
    completion of a watch (see :func:`watch_completion`) and appends it to the event
    store, which updates the video's statistics and the user's affinity with the
    creator. A bad event raises before anything is written:

    * a malformed field raises :class:`~reelrank.InvalidInputError` naming it (negative
      or non-finite ``watched_seconds``, ``completion`` outside ``[0, 1]``, a naive or
      a future ``occurred_at`` beyond :attr:`RecorderConfig.max_future_skew_seconds`);
    * an unknown video raises :class:`~reelrank.NotFoundError` (``kind="video"``);
    * a video that is not ``ready`` raises :class:`~reelrank.NotReadyError`.

    Delivering the same ``event_id`` again is harmless: the store counts it once and
    :meth:`record` returns ``False``.

    With a ``log`` (an :class:`~reelrank.EngagementLog`, which discovery features read),
    each applied event is also kept there, as appended (a watch with its completion).
    With ``variant_for`` (for example :meth:`Experiment.variant_name
    <reelrank.Experiment.variant_name>`), an event that arrives without a ``variant``
    is recorded with the user's variant, so every event can be attributed to one.
    With ``mark_watched_seen``, a watch marks the video seen. Both writes follow the
    event store's and are made for redeliveries too (they are idempotent), so retrying
    an event after one of them failed completes the job.
    """

    def __init__(
        self,
        catalog: Catalog,
        events: EventStore,
        *,
        seen: SeenStore | None = None,
        log: EngagementLog | None = None,
        config: RecorderConfig | None = None,
        now: Callable[[], datetime] = utc_now,
        variant_for: Callable[[int], str | None] | None = None,
    ) -> None:
        self._config = config or RecorderConfig()
        if self._config.mark_watched_seen and seen is None:
            raise ConfigError("mark_watched_seen", True, "needs a seen store")
        self._catalog = catalog
        self._events = events
        self._seen = seen
        self._log = log
        self._now = now
        self._variant_for = variant_for

    @property
    def config(self) -> RecorderConfig:
        """The configuration in use."""
        return self._config

    def record(self, event: EngagementEvent | Mapping[str, Any]) -> bool:
        """Validate and apply one event; ``False`` if its ``event_id`` was applied before.

        ``event`` may be a mapping (decoded JSON, for example); it is validated as an
        :class:`~reelrank.EngagementEvent`.
        """
        if not isinstance(event, EngagementEvent):
            if not isinstance(event, Mapping):
                raise InvalidInputError("event", "must be an EngagementEvent or a mapping")
            event = EngagementEvent.model_validate(dict(event))
        latest = self._now() + timedelta(seconds=self._config.max_future_skew_seconds)
        if event.occurred_at > latest:
            raise InvalidInputError(
                "occurred_at",
                f"{event.occurred_at.isoformat()} is in the future (allowed up to "
                f"{latest.isoformat()})",
            )
        video = self._catalog.get_video(event.video_id)
        if video.state is not ProcessingState.READY:
            raise NotReadyError(video.video_id, video.state.value)
        if event.kind is EngagementKind.WATCH:
            completion = watch_completion(event, video)
            if completion != event.completion:
                event = EngagementEvent.model_validate(
                    {**event.model_dump(), "completion": completion}
                )
        if event.variant is None and self._variant_for is not None:
            event = EngagementEvent.model_validate(
                {**event.model_dump(), "variant": self._variant_for(event.user_id)}
            )
        applied = self._events.append(event, creator_id=video.creator_id)
        if self._log is not None:
            self._log.record(event)
        if (
            self._seen is not None
            and self._config.mark_watched_seen
            and event.kind is EngagementKind.WATCH
        ):
            self._seen.mark_seen(event.user_id, [event.video_id], event.occurred_at)
        return applied

    def watch(
        self,
        user_id: int,
        video_id: int,
        *,
        event_id: str,
        occurred_at: datetime | None = None,
        watched_seconds: float | None = None,
        completion: float | None = None,
        variant: str | None = None,
    ) -> bool:
        """Record a watch; ``occurred_at`` defaults to now."""
        return self._record_kind(
            EngagementKind.WATCH,
            user_id,
            video_id,
            event_id,
            occurred_at,
            variant,
            watched_seconds=watched_seconds,
            completion=completion,
        )

    def like(
        self,
        user_id: int,
        video_id: int,
        *,
        event_id: str,
        occurred_at: datetime | None = None,
        variant: str | None = None,
    ) -> bool:
        """Record a like; liking a video the user already likes changes no statistic."""
        return self._record_kind(
            EngagementKind.LIKE, user_id, video_id, event_id, occurred_at, variant
        )

    def unlike(
        self,
        user_id: int,
        video_id: int,
        *,
        event_id: str,
        occurred_at: datetime | None = None,
        variant: str | None = None,
    ) -> bool:
        """Record an unlike, which reverses the user's like (if any) and its affinity credit."""
        return self._record_kind(
            EngagementKind.UNLIKE, user_id, video_id, event_id, occurred_at, variant
        )

    def share(
        self,
        user_id: int,
        video_id: int,
        *,
        event_id: str,
        channel: str,
        occurred_at: datetime | None = None,
        variant: str | None = None,
    ) -> bool:
        """Record a share through ``channel``."""
        return self._record_kind(
            EngagementKind.SHARE,
            user_id,
            video_id,
            event_id,
            occurred_at,
            variant,
            channel=channel,
        )

    def _record_kind(
        self,
        kind: EngagementKind,
        user_id: int,
        video_id: int,
        event_id: str,
        occurred_at: datetime | None,
        variant: str | None,
        **extra: Any,
    ) -> bool:
        fields: dict[str, Any] = {
            "event_id": event_id,
            "kind": kind,
            "user_id": user_id,
            "video_id": video_id,
            "occurred_at": self._now() if occurred_at is None else occurred_at,
            "variant": variant,
        }
        fields.update({name: value for name, value in extra.items() if value is not None})
        return self.record(EngagementEvent(**fields))
