"""Processing progress of uploaded videos: state, percent and per-rendition status.

A :class:`ProcessingTracker` drives the upload pipeline's state machine
(:class:`~reelrank.ProcessingState`) and records where each video is in a
:class:`~reelrank.ProgressStore`. Given a :class:`~reelrank.Catalog`, it also moves the
catalog's copy of the video, so feeds and manifests see the same state.

Rules the tracker enforces, each with a typed error and nothing written:

* only the moves :meth:`ProcessingState.can_move_to <reelrank.ProcessingState.can_move_to>`
  allows (:class:`~reelrank.InvalidTransitionError`);
* a percent is finite, in ``[0, 100]``, and never goes back within a state
  (:class:`~reelrank.InvalidInputError` naming ``percent``);
* ``failed`` always carries an error message, and no other state does;
* ``transcoding -> packaging`` needs every rendition ``done``; a failed rendition fails
  the video.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from ..exceptions import InvalidInputError, NotFoundError
from ..models._catalog import ProcessingState
from ..models._processing import (
    ProcessingProgress,
    RenditionProgress,
    RenditionStatus,
)
from ..stores._protocols import Catalog, ProgressStore
from ..validation import check_id, check_tag, utc_now

__all__ = ["ProcessingTracker"]


def _check_percent(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError("percent", f"must be a number, got {value!r}")
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise InvalidInputError("percent", f"must be finite and in [0, 100], got {value!r}")
    return float(value)


def _check_message(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 2_000:
        raise InvalidInputError(
            "error", f"must be a message of 1 to 2000 characters, got {value!r}"
        )
    return value


def _mean_percent(renditions: Sequence[RenditionProgress]) -> float:
    return math.fsum(r.percent for r in renditions) / len(renditions)


class ProcessingTracker:
    """Moves videos through the processing states and records their progress.

    ``catalog``, when given, is moved along: its video's state changes before the
    progress is written, and a move the catalog has already made (because a previous
    attempt failed to write the progress) is not repeated, so retrying the same call
    repairs the record. Updates through one tracker are serialised by a lock.
    """

    def __init__(
        self,
        store: ProgressStore,
        *,
        catalog: Catalog | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, video_id: int) -> ProcessingProgress:
        """The video's progress; :class:`~reelrank.NotFoundError` (``kind="processing"``)
        if processing never started."""
        progress = self._store.get_progress(check_id("video_id", video_id))
        if progress is None:
            raise NotFoundError("processing", video_id)
        return progress

    def start(self, video_id: int, renditions: Sequence[str] = ()) -> ProcessingProgress:
        """Record a newly queued video and the names of the renditions it will get.

        Raises :class:`~reelrank.InvalidInputError` (``video_id``) if processing already
        started; after a failure, retry with :meth:`move_to` ``queued`` instead. With a
        catalog, the video must exist there and be ``queued``.
        """
        check_id("video_id", video_id)
        if isinstance(renditions, str) or not isinstance(renditions, Sequence):
            raise InvalidInputError("renditions", "must be a sequence of rendition names")
        names = [check_tag("renditions", name) for name in renditions]
        with self._lock:
            if self._store.get_progress(video_id) is not None:
                raise InvalidInputError("video_id", f"processing of {video_id} already started")
            if self._catalog is not None:
                state = self._catalog.get_video(video_id).state
                if state is not ProcessingState.QUEUED:
                    raise InvalidInputError(
                        "video_id", f"video {video_id} is {state.value}, not queued"
                    )
            progress = ProcessingProgress(
                video_id=video_id,
                renditions=tuple(RenditionProgress(name=name) for name in names),
                updated_at=self._clock(),
            )
            self._store.put_progress(progress)
            return progress

    def move_to(
        self, video_id: int, state: ProcessingState, *, error: str | None = None
    ) -> ProcessingProgress:
        """Move the video to ``state``; ``error`` is required for ``failed`` and refused
        otherwise.

        The percent starts again at 0 in the new state (100 for ``ready``; a failure
        keeps where it stopped). Moving back to ``queued`` after a failure is a retry:
        every rendition starts again from ``pending``.
        """
        if not isinstance(state, ProcessingState):
            raise InvalidInputError("state", f"must be a ProcessingState, got {state!r}")
        if state is ProcessingState.FAILED:
            message: str | None = _check_message(error)
        elif error is not None:
            raise InvalidInputError("error", f"only a move to failed carries one, not {state}")
        else:
            message = None
        with self._lock:
            current = self.get(video_id)
            current.state.check_move_to(state)
            updated = self._moved(current, state, message)
            self._move_catalog(video_id, state)
            self._store.put_progress(updated)
            return updated

    def fail(self, video_id: int, error: str) -> ProcessingProgress:
        """Move the video to ``failed`` with ``error`` as the reason."""
        return self.move_to(video_id, ProcessingState.FAILED, error=error)

    def report(self, video_id: int, percent: float) -> ProcessingProgress:
        """Record progress within the current state.

        Refused (``percent``) if it is lower than the recorded one, in a final state,
        or while transcoding a video whose percent comes from its renditions.
        """
        value = _check_percent(percent)
        with self._lock:
            current = self.get(video_id)
            if current.state in (ProcessingState.READY, ProcessingState.FAILED):
                raise InvalidInputError("percent", f"no progress to report when {current.state}")
            if current.state is ProcessingState.TRANSCODING and current.renditions:
                raise InvalidInputError(
                    "percent", "while transcoding, the percent comes from the renditions"
                )
            if value < current.percent:
                raise InvalidInputError(
                    "percent",
                    f"cannot go back from {current.percent} to {value} in {current.state}",
                )
            updated = current.model_copy(update={"percent": value, "updated_at": self._clock()})
            self._store.put_progress(updated)
            return updated

    def report_rendition(
        self, video_id: int, name: str, percent: float, *, error: str | None = None
    ) -> ProcessingProgress:
        """Record the progress of one rendition while the video is transcoding.

        At 100 the rendition is ``done``; with ``error`` it is ``failed`` and the video
        moves to ``failed`` with the message ``"rendition NAME: ERROR"``. A percent lower
        than the rendition's recorded one is refused (``percent``).
        """
        value = _check_percent(percent)
        message = None if error is None else _check_message(error)
        with self._lock:
            current = self.get(video_id)
            if current.state is not ProcessingState.TRANSCODING:
                raise InvalidInputError(
                    "state", f"renditions report while transcoding, not {current.state}"
                )
            rendition = current.rendition(name)
            if rendition.status in (RenditionStatus.DONE, RenditionStatus.FAILED):
                raise InvalidInputError("name", f"rendition {name} is already {rendition.status}")
            if value < rendition.percent:
                raise InvalidInputError(
                    "percent", f"cannot go back from {rendition.percent} to {value} for {name}"
                )
            if message is not None:
                status = RenditionStatus.FAILED
            elif value == 100.0:
                status = RenditionStatus.DONE
            else:
                status = RenditionStatus.RUNNING
            changed = rendition.model_copy(
                update={"status": status, "percent": value, "error": message}
            )
            renditions = tuple(changed if r.name == name else r for r in current.renditions)
            updated = current.model_copy(
                update={
                    "renditions": renditions,
                    "percent": _mean_percent(renditions),
                    "updated_at": self._clock(),
                }
            )
            if message is not None:
                updated = self._moved(
                    updated, ProcessingState.FAILED, f"rendition {name}: {message}"
                )
                self._move_catalog(video_id, ProcessingState.FAILED)
            self._store.put_progress(updated)
            return updated

    # -- helpers ------------------------------------------------------------------------

    def _moved(
        self, current: ProcessingProgress, state: ProcessingState, error: str | None
    ) -> ProcessingProgress:
        renditions = current.renditions
        if state is ProcessingState.PACKAGING:
            unfinished = [r.name for r in renditions if r.status is not RenditionStatus.DONE]
            if unfinished:
                raise InvalidInputError(
                    "renditions", f"not done transcoding: {', '.join(unfinished)}"
                )
        if state is ProcessingState.QUEUED:
            renditions = tuple(RenditionProgress(name=r.name) for r in renditions)
        if state is ProcessingState.READY:
            percent = 100.0
        elif state is ProcessingState.FAILED:
            percent = current.percent
        else:
            percent = 0.0
        return ProcessingProgress(
            video_id=current.video_id,
            state=state,
            percent=percent,
            renditions=renditions,
            error=error,
            updated_at=self._clock(),
        )

    def _move_catalog(self, video_id: int, state: ProcessingState) -> None:
        if self._catalog is None:
            return
        video = self._catalog.get_video(video_id)
        if video.state is state:
            return
        if state is ProcessingState.READY and not video.renditions:
            raise InvalidInputError(
                "renditions", f"video {video_id} needs its renditions in the catalog to be ready"
            )
        self._catalog.set_state(video_id, state)
