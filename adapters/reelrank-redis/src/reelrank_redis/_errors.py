"""How redis-py and socket failures become reelrank's store errors."""

from __future__ import annotations

import redis

from reelrank import StoreError
from reelrank.stores.adapter import StoreErrorTranslator

__all__ = ["ReplicationError", "store_errors"]


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, redis.exceptions.TimeoutError | TimeoutError)


store_errors = StoreErrorTranslator((redis.exceptions.RedisError, OSError), is_timeout=_is_timeout)
"""``store_errors(store, operation)``: a reply or connect timeout becomes
:class:`~reelrank.StoreTimeoutError`, any other Redis or socket failure
:class:`~reelrank.StoreError`."""


class ReplicationError(StoreError):
    """Fewer replicas than ``min_replicas_acked`` acknowledged a write in time.

    The write was applied on the master and may still reach the replicas, or be lost
    with the master in a failover; the caller cannot tell which. Retry the call: the
    stores that wait for replicas (the event store) apply a retried write once.
    ``field`` names the setting (``"min_replicas_acked"``), ``required`` its value and
    ``acknowledged`` how many replicas answered within ``replication_timeout_seconds``.
    """

    def __init__(self, store: str, operation: str, required: int, acknowledged: int) -> None:
        self.field = "min_replicas_acked"
        self.operation = operation
        self.required = required
        self.acknowledged = acknowledged
        super().__init__(
            store,
            f"{operation}: {acknowledged} of the {required} replicas required by "
            f"{self.field} acknowledged the write in time; retry it (a retry counts it once)",
        )
