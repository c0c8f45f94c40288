"""The in-memory store of processing progress."""

from __future__ import annotations

import threading

from ..exceptions import InvalidInputError
from ..models._processing import ProcessingProgress
from ..validation import check_id

__all__ = ["InMemoryProgressStore"]


class InMemoryProgressStore:
    """A :class:`~reelrank.ProgressStore` in a dictionary, safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: dict[int, ProcessingProgress] = {}

    def get_progress(self, video_id: int) -> ProcessingProgress | None:
        """The progress of the video, or ``None``."""
        check_id("video_id", video_id)
        with self._lock:
            return self._progress.get(video_id)

    def put_progress(self, progress: ProcessingProgress) -> None:
        """Insert or replace the progress of ``progress.video_id``."""
        if not isinstance(progress, ProcessingProgress):
            raise InvalidInputError("progress", f"must be a ProcessingProgress, got {progress!r}")
        with self._lock:
            self._progress[progress.video_id] = progress
