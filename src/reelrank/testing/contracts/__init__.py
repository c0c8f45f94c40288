"""The reusable contract suite: pytest classes that check a store against its protocol.

Subclass a contract in a test module named ``test_*.py`` with a class named
``Test*``, and provide the fixture it names, returning a fresh, empty store::

    import pytest
    from reelrank.testing import CatalogContract

    class TestMyCatalog(CatalogContract):
        @pytest.fixture
        def catalog(self):
            return MyCatalog(dsn=...)

Each contract needs one fixture:

* :class:`CatalogContract`: ``catalog``
* :class:`FollowedCandidatesCatalogContract`: ``catalog`` (one with
  ``followed_candidates``) and ``event_store`` (whose statistics it reads)
* :class:`FollowedColumnsCatalogContract`: ``catalog`` (one with ``followed_columns``)
* :class:`LabelColumnsCatalogContract`: ``catalog`` (one with ``recent_label_columns``
  and ``label_columns``)
* :class:`EventStoreContract`: ``event_store``
* :class:`EngagementLogContract`: ``engagement_log``
* :class:`SeenStoreContract`: ``seen_store``
* :class:`AtomicSeenStoreContract`: ``seen_store`` (one with ``take_unseen``)
* :class:`FeedCacheContract`: ``feed_cache``
* :class:`PageTakingSeenStoreContract`: ``seen_store`` and ``feed_cache`` (a seen store
  that takes pages with that cache)
* :class:`ModelRegistryContract`: ``model_registry``
* :class:`ProgressStoreContract`: ``progress_store``
* :class:`TrendingSnapshotStoreContract`: ``trending_snapshot_store``
* :class:`CoordinatedTrendingSnapshotStoreContract`: ``trending_snapshot_store`` (one
  with leases)
* :class:`SearchIndexContract`: ``search_index``

The tests use only the protocol methods, so they suit any backend. The one test that
waits for time to pass (:meth:`FeedCacheContract.test_entry_expires_after_its_ttl`) lets
it pass through :meth:`FeedCacheContract.advance`, which sleeps real time unless a
subclass moves the clock its cache was built on.
"""

from __future__ import annotations

from ..._public import _public_module
from ._catalog import (
    CatalogContract,
    FollowedCandidatesCatalogContract,
    FollowedColumnsCatalogContract,
    LabelColumnsCatalogContract,
)
from ._engagement_log import EngagementLogContract
from ._event_store import EventStoreContract
from ._feed_cache import FeedCacheContract
from ._model_registry import ModelRegistryContract
from ._page_taking import PageTakingSeenStoreContract
from ._progress_store import ProgressStoreContract
from ._search_index import SearchIndexContract
from ._seen_store import AtomicSeenStoreContract, SeenStoreContract
from ._trending import CoordinatedTrendingSnapshotStoreContract, TrendingSnapshotStoreContract

__all__ = [
    "AtomicSeenStoreContract",
    "CatalogContract",
    "CoordinatedTrendingSnapshotStoreContract",
    "EngagementLogContract",
    "EventStoreContract",
    "FeedCacheContract",
    "FollowedCandidatesCatalogContract",
    "FollowedColumnsCatalogContract",
    "LabelColumnsCatalogContract",
    "ModelRegistryContract",
    "PageTakingSeenStoreContract",
    "ProgressStoreContract",
    "SearchIndexContract",
    "SeenStoreContract",
    "TrendingSnapshotStoreContract",
]

_public_module(__name__, __all__, globals())
