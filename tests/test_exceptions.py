"""Every reelrank error survives pickling, so it crosses process boundaries as itself."""

from __future__ import annotations

import copy
import inspect
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import reelrank  # noqa: F401  # loads every subpackage, so every subclass is registered
import reelrank.exceptions as exc_module
from reelrank.exceptions import (
    ConfigError,
    CursorError,
    FeedUnavailableError,
    IdempotencyConflictError,
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

# One realistic instance per class, with the fields each must carry after a round trip.
HAND_LIST: list[tuple[ReelrankError, dict[str, Any]]] = [
    (ReelrankError("plain"), {}),
    (
        ConfigError("weights.freshness", -1.0, "must be >= 0"),
        {"field": "weights.freshness", "value": -1.0, "reason": "must be >= 0"},
    ),
    (InvalidInputError("views", "bad"), {"field": "views", "reason": "bad"}),
    (CursorError("expired"), {"field": "cursor", "reason": "expired"}),
    (QueryError("empty"), {"field": "query", "reason": "empty"}),
    (NotFoundError("video", 42), {"kind": "video", "key": 42}),
    (NotReadyError(7, "transcoding"), {"video_id": 7, "state": "transcoding"}),
    (InvalidTransitionError("ready", "uploaded"), {"current": "ready", "requested": "uploaded"}),
    (StoreError("cache", "connection refused"), {"store": "cache"}),
    (StoreTimeoutError("catalog", "deadline 50 ms"), {"store": "catalog"}),
    (StoreUnavailableError("events", "circuit open"), {"store": "events"}),
    (FeedUnavailableError("catalog down and no snapshot"), {}),
    (
        IdempotencyConflictError("event_id", "w-1", "sent before with another payload"),
        {"field": "event_id", "key": "w-1", "reason": "sent before with another payload"},
    ),
]


def _all_subclasses(root: type) -> set[type]:
    found: set[type] = set()
    pending = [root]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


def _core_classes() -> set[type]:
    """Every ReelrankError class the core defines (reelrank is imported in full above)."""
    return {ReelrankError} | {
        cls for cls in _all_subclasses(ReelrankError) if cls.__module__.startswith("reelrank.")
    }


def _assert_same(original: BaseException, copy: BaseException) -> None:
    assert type(copy) is type(original)
    assert copy.args == original.args
    assert str(copy) == str(original)
    assert vars(copy) == vars(original)


def test_hand_list_covers_every_core_error_class() -> None:
    # A new error class must be added to HAND_LIST with its fields, so it gets checked.
    assert {type(error) for error, _ in HAND_LIST} == _core_classes()
    assert set(exc_module.__all__) == {cls.__name__ for cls in _core_classes()}


@pytest.mark.parametrize(
    ("error", "fields"), HAND_LIST, ids=[type(error).__name__ for error, _ in HAND_LIST]
)
def test_round_trip_keeps_message_and_fields(error: ReelrankError, fields: dict[str, Any]) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(error, protocol=protocol))
        _assert_same(error, restored)
        for name, value in fields.items():
            assert getattr(restored, name) == value


def _sample_instance(cls: type[ReelrankError]) -> ReelrankError:
    """Build an instance of any subclass by giving each constructor parameter a string."""
    parameters = [
        name
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    return cls(*(f"<{name}>" for name in parameters))


def test_every_subclass_found_at_run_time_round_trips() -> None:
    # Catches subclasses defined anywhere (adapters and user code included) that break
    # pickling, e.g. by overriding __reduce__ or __init__ in an incompatible way.
    class LocalError(InvalidInputError):
        def __init__(self, field: str, limit: int) -> None:
            self.limit = limit
            super().__init__(field, f"above {limit}")

    classes = _all_subclasses(ReelrankError) - {LocalError}
    assert classes >= _core_classes() - {ReelrankError}
    for cls in classes:
        error = _sample_instance(cls)
        _assert_same(error, pickle.loads(pickle.dumps(error)))
    local = LocalError("views", 3)
    # A class defined inside a function cannot be pickled by reference; deepcopy goes
    # through the same __reduce__ and must keep the extra field.
    _assert_same(local, copy.deepcopy(local))
    assert copy.deepcopy(local).limit == 3


def test_cause_and_notes_do_not_break_pickling() -> None:
    try:
        try:
            raise OSError("driver")
        except OSError as cause:
            raise StoreError("catalog", "query failed") from cause
    except StoreError as caught:
        caught.add_note("while ranking user 7")
        error = caught
    restored = pickle.loads(pickle.dumps(error))
    _assert_same(error, restored)
    assert restored.__notes__ == ["while ranking user 7"]


def _raise_in_worker(index: int) -> None:
    error, _ = HAND_LIST[index]
    raise error


def test_errors_raised_in_a_process_pool_worker_reach_the_caller_intact() -> None:
    # fork: the child has this test module already, nothing to import by path.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        for index, (error, fields) in enumerate(HAND_LIST):
            future = pool.submit(_raise_in_worker, index)
            with pytest.raises(type(error)) as info:
                future.result(timeout=60)
            assert type(info.value) is type(error)
            assert str(info.value) == str(error)
            for name, value in fields.items():
                assert getattr(info.value, name) == value
