"""How the HTTP load benchmark counts a step: served answers, refusals and timeouts."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "flask_app"))

from reelrank_example.testing import LoadRecord, tally


def _record(endpoint: str, scheduled: float, latency: float, status: int) -> LoadRecord:
    return LoadRecord(endpoint=endpoint, scheduled=scheduled, latency=latency, status=status)


def test_refusals_and_timeouts_are_errors_not_served_requests() -> None:
    records = [
        # Six answers served, at 0.0 ... 1.0 s.
        _record("feed", 0.0, 0.010, 200),
        _record("feed page", 0.2, 0.020, 200),
        _record("watch", 0.4, 0.030, 201),
        _record("search", 0.6, 0.040, 200),
        _record("feed", 0.8, 0.050, 200),
        _record("trending", 1.0, 0.060, 200),
        # Refused fast by an overloaded worker, and one with no answer: the last to end,
        # at 1.5 + 0.5 = 2.0 s.
        _record("feed", 1.1, 0.001, 503),
        _record("feed", 1.2, 0.001, 503),
        _record("search", 1.3, 0.002, 503),
        _record("watch", 1.5, 0.500, 0),
    ]
    counted = tally(records)
    assert counted.requests == 10
    assert counted.succeeded == 6
    assert counted.error_count == 4
    assert counted.span_seconds == 2.0
    # 6 served over 2 s; counting the refusals too would make it 5.
    assert counted.succeeded_per_second == 3.0
    assert counted.errors == {"feed": {"503": 2}, "search": {"503": 1}, "watch": {"no answer": 1}}


def test_the_span_starts_at_the_earliest_scheduled_request() -> None:
    # Records arrive in completion order: a slow early request is listed last.
    records = [_record("feed", 1.0, 0.5, 200), _record("search", 0.5, 1.5, 200)]
    counted = tally(records)
    assert counted.span_seconds == 1.5
    assert counted.succeeded_per_second == 2 / 1.5
    assert counted.errors == {}


def test_no_records_count_nothing() -> None:
    counted = tally([])
    assert (counted.requests, counted.succeeded, counted.succeeded_per_second) == (0, 0, 0.0)
