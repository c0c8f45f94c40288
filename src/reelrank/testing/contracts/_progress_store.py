"""The contract of :class:`~reelrank.ProgressStore`."""

from __future__ import annotations

import pytest

from ...exceptions import InvalidInputError
from ...models._catalog import ProcessingState
from ...models._processing import ProcessingProgress, RenditionProgress, RenditionStatus
from ...stores._protocols import ProgressStore
from ..factories import EPOCH
from ._support import BAD_IDS, hours

__all__ = ["ProgressStoreContract"]


def _progress(video_id: int = 1, **overrides: object) -> ProcessingProgress:
    fields: dict[str, object] = {
        "video_id": video_id,
        "renditions": (RenditionProgress(name="720p"), RenditionProgress(name="1080p")),
        "updated_at": EPOCH,
    }
    fields.update(overrides)
    return ProcessingProgress.model_validate(fields)


class ProgressStoreContract:
    """Checks a :class:`~reelrank.ProgressStore`; needs a ``progress_store`` fixture."""

    def test_satisfies_the_protocol(self, progress_store: ProgressStore) -> None:
        assert isinstance(progress_store, ProgressStore)

    def test_unknown_video_has_no_progress(self, progress_store: ProgressStore) -> None:
        assert progress_store.get_progress(404) is None

    def test_put_then_get_returns_an_equal_record(self, progress_store: ProgressStore) -> None:
        progress = _progress(7)
        progress_store.put_progress(progress)
        assert progress_store.get_progress(7) == progress
        assert progress_store.get_progress(8) is None

    def test_put_replaces_the_previous_record(self, progress_store: ProgressStore) -> None:
        progress_store.put_progress(_progress(1))
        failed = _progress(
            1,
            state=ProcessingState.FAILED,
            percent=40.0,
            error="encoder crashed",
            renditions=(
                RenditionProgress(name="720p", status=RenditionStatus.DONE, percent=100.0),
                RenditionProgress(
                    name="1080p", status=RenditionStatus.FAILED, percent=20.0, error="oom"
                ),
            ),
            updated_at=EPOCH + hours(1),
        )
        progress_store.put_progress(failed)
        assert progress_store.get_progress(1) == failed

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_bad_ids_raise_invalid_input(self, progress_store: ProgressStore, bad: object) -> None:
        with pytest.raises(InvalidInputError) as info:
            progress_store.get_progress(bad)  # type: ignore[arg-type]
        assert info.value.field == "video_id"

    def test_anything_but_progress_is_refused(self, progress_store: ProgressStore) -> None:
        with pytest.raises(InvalidInputError) as info:
            progress_store.put_progress(_progress(1).model_dump())  # type: ignore[arg-type]
        assert info.value.field == "progress"
        assert progress_store.get_progress(1) is None
