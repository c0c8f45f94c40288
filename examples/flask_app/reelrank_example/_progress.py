"""Processing reports from the transcoding pipeline, applied through the core's tracker.

``PUT /internal/v1/reels/progress/{id}`` (service token only) hands a
:class:`~reelrank_example._api.ProgressReport` to :func:`apply_progress_report`: the
core's :class:`~reelrank.ProcessingTracker` checks every move against the processing
state machine (a move it forbids is :class:`~reelrank.InvalidTransitionError`, 409)
and moves the catalog's video along. A video that becomes ready is indexed for search;
one that fails leaves the index.
"""

from __future__ import annotations

from reelrank import ProcessingProgress, ProcessingState

from ._api import ProgressReport
from ._services import Services

__all__ = ["apply_progress_report"]


def apply_progress_report(
    services: Services, video_id: int, report: ProgressReport
) -> ProcessingProgress:
    """Apply ``report`` to the video's processing; returns the progress it leads to.

    ``state: queued`` starts a video never processed (with its ``renditions``) and
    retries a failed one; another ``state`` is a move; ``rendition`` reports one
    rendition's percent (a failed rendition fails the video); ``percent`` alone reports
    progress within the current state.
    """
    tracker = services.processing
    if report.state is not None:
        state = ProcessingState(report.state)
        if state is ProcessingState.QUEUED and not services.stores.progress.get_progress(video_id):
            return tracker.start(video_id, report.renditions or ())
        progress = tracker.move_to(video_id, state, error=report.error)
    elif report.rendition is not None:
        assert report.percent is not None  # the model requires it with a rendition
        progress = tracker.report_rendition(
            video_id, report.rendition, report.percent, error=report.error
        )
    else:
        assert report.percent is not None  # the model requires one report
        return tracker.report(video_id, report.percent)
    if progress.state in (ProcessingState.READY, ProcessingState.FAILED):
        video = services.stores.catalog.get_video(video_id)
        creator = services.stores.catalog.get_creators([video.creator_id]).get(video.creator_id)
        services.search.index_video(video, creator=creator)
    return progress
