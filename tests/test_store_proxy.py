"""Store proxies have the public methods of the store they wrap as real class attributes.

Python 3.12 and later check a runtime-checkable Protocol with
:func:`inspect.getattr_static`, never through ``__getattr__`` (see ``protocol_rules.py``):
a proxy passes exactly when its store does only if the store's methods are found on the
proxy's class. Each proxy here (the core's, and the example service's) is checked by that
rule against the store it wraps, for every runtime-checkable Protocol reelrank exports.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import pickle
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from protocol_rules import (
    has_member_statically,
    is_runtime_protocol,
    isinstance_as_of_312,
    protocol_members,
    satisfies_as_of_312,
)
from reelrank_postgres import SqlCatalog, SqlEventStore

import reelrank.feed._ranking
from reelrank import (
    CircuitBreaker,
    DependencyGuard,
    EngagementEvent,
    FeedObserver,
    FeedRankingService,
    FeedServiceConfig,
    FollowedColumnsCatalog,
    GroupCommitEngagementLog,
    GroupCommitEventStore,
    GuardedStore,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemoryModelRegistry,
    InMemorySearchIndex,
    InMemorySeenStore,
    InMemoryTrendingSnapshotStore,
    LRUFeedCache,
    StoreDeadlines,
    StoreProxy,
    TieredFeedCache,
    WorkerPool,
)
from reelrank.stores import InMemoryProgressStore, bounds_own_calls, is_in_process
from reelrank.testing import (
    EPOCH,
    FaultInjector,
    ManualClock,
    make_creator,
    make_event,
    make_video,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "flask_app"))

from reelrank_example._cards import CatalogSharingVideos, EventsSharingCounts
from reelrank_example._tracing import _ClickHouseStore

_MODULES = [
    "reelrank",
    "reelrank.protocols",
    "reelrank.stores",
    "reelrank.stores.adapter",
    "reelrank.feed",
    "reelrank.discovery",
]
RUNTIME_PROTOCOLS = sorted(
    {
        obj
        for module in _MODULES
        for obj in vars(importlib.import_module(module)).values()
        if is_runtime_protocol(obj)
    },
    key=lambda protocol: protocol.__name__,
)


def _declares_data(protocol: type) -> bool:
    """Whether ``protocol`` has a member that is not a method (a declaration such as
    ``in_process``): looked up on the class, never the proxy's (see StoreProxy)."""
    return any(
        not inspect.isfunction(getattr(protocol, name, None)) for name in protocol_members(protocol)
    )


METHOD_PROTOCOLS = [protocol for protocol in RUNTIME_PROTOCOLS if not _declares_data(protocol)]
DATA_PROTOCOLS = [protocol for protocol in RUNTIME_PROTOCOLS if _declares_data(protocol)]


def test_the_protocols_checked_include_the_optional_capabilities() -> None:
    names = {protocol.__name__ for protocol in METHOD_PROTOCOLS}
    assert {
        "AtomicSeenStore",
        "BoundedAgeEventStore",
        "BulkReadCatalog",
        "BulkReadEventStore",
        "BulkReadSeenStore",
        "Catalog",
        "CoordinatedTrendingSnapshotStore",
        "FeedCache",
        "FollowedCandidatesCatalog",
        "FollowedColumnsCatalog",
        "LabelColumnsCatalog",
        "PageTakingSeenStore",
    } <= names
    assert {protocol.__name__ for protocol in DATA_PROTOCOLS} == {
        "InProcessStore",
        "SelfBoundingStore",
    }


class EventsAppendedEach(InMemoryEventStore):
    """An in-memory event store with ``append_each`` (its own ``append``, item by item)."""

    def append_each(self, items: Sequence[tuple[EngagementEvent, int]]) -> list[bool]:
        return [self.append(event, creator_id=creator_id) for event, creator_id in items]


class EventsRecordedEach(InMemoryEngagementLog):
    """An in-memory log with ``record_each`` (its own ``record``, event by event)."""

    def record_each(self, events: Sequence[EngagementEvent]) -> list[bool]:
        return [self.record(event) for event in events]


class VideosOnlyCatalog(InMemoryCatalog):
    """A catalog that opts out of the columnar followed read."""

    followed_columns = None  # type: ignore[assignment]


def _sqlite() -> sa.Engine:
    return sa.create_engine("sqlite://")


CATALOGS: dict[str, Callable[[], object]] = {
    "InMemoryCatalog": InMemoryCatalog,
    "VideosOnlyCatalog": VideosOnlyCatalog,
    "SqlCatalog": lambda: SqlCatalog(_sqlite(), verify_schema=False),
}
EVENT_STORES: dict[str, Callable[[], object]] = {
    "InMemoryEventStore": InMemoryEventStore,
    "EventsAppendedEach": EventsAppendedEach,
    "SqlEventStore": lambda: SqlEventStore(_sqlite(), verify_schema=False),
}
OTHER_STORES: dict[str, Callable[[], object]] = {
    "InMemoryEngagementLog": InMemoryEngagementLog,
    "EventsRecordedEach": EventsRecordedEach,
    "InMemorySeenStore": InMemorySeenStore,
    "InMemoryFeedCache": InMemoryFeedCache,
    "LRUFeedCache": lambda: LRUFeedCache(max_entries=10),
    "TieredFeedCache": lambda: TieredFeedCache(LRUFeedCache(max_entries=10), InMemoryFeedCache()),
    "InMemoryModelRegistry": InMemoryModelRegistry,
    "InMemoryProgressStore": InMemoryProgressStore,
    "InMemorySearchIndex": InMemorySearchIndex,
    "InMemoryTrendingSnapshotStore": InMemoryTrendingSnapshotStore,
}
ALL_STORES = {**CATALOGS, **EVENT_STORES, **OTHER_STORES}


def _guard() -> DependencyGuard:
    return DependencyGuard(
        "store",
        pool=WorkerPool(1),
        breaker=CircuitBreaker("store"),
        deadline_seconds=5.0,
        max_stalled=1,
    )


# Each kind of proxy, with the stores it is made to wrap.
PROXIES: dict[str, tuple[Callable[[Any], object], dict[str, Callable[[], object]]]] = {
    "GuardedStore": (lambda store: GuardedStore(store, _guard()), ALL_STORES),
    "FaultInjector": (FaultInjector, ALL_STORES),
    "GuardedStore of a FaultInjector": (
        lambda store: GuardedStore(FaultInjector(store), _guard()),
        ALL_STORES,
    ),
    "GroupCommitEventStore": (
        GroupCommitEventStore,
        {"EventsAppendedEach": EventsAppendedEach},
    ),
    "GroupCommitEngagementLog": (
        GroupCommitEngagementLog,
        {"EventsRecordedEach": EventsRecordedEach},
    ),
    "EventsSharingCounts": (EventsSharingCounts, EVENT_STORES),
    "CatalogSharingVideos": (CatalogSharingVideos, CATALOGS),
    "traced ClickHouse store": (lambda store: _ClickHouseStore(store, "events"), ALL_STORES),
}
CASES = [(kind, store) for kind, (_, stores) in PROXIES.items() for store in stores]


def _proxy_of(kind: str, store_name: str) -> tuple[object, object]:
    make_proxy, stores = PROXIES[kind]
    store = stores[store_name]()
    return make_proxy(store), store


@pytest.mark.parametrize(("kind", "store_name"), CASES)
def test_a_proxy_has_the_protocol_methods_its_store_has_by_the_312_rule(
    kind: str, store_name: str
) -> None:
    proxy, store = _proxy_of(kind, store_name)
    for protocol in METHOD_PROTOCOLS:
        for member in protocol_members(protocol):
            assert has_member_statically(proxy, member) == has_member_statically(store, member), (
                protocol.__name__,
                member,
            )
        assert satisfies_as_of_312(proxy, protocol) == satisfies_as_of_312(store, protocol)
        # The rule of Python 3.11 (hasattr) agrees.
        assert isinstance(proxy, protocol) == isinstance(store, protocol), protocol.__name__


@pytest.mark.parametrize(("kind", "store_name"), CASES)
def test_a_proxy_never_declares_what_its_store_declares_as_data(kind: str, store_name: str) -> None:
    proxy, _ = _proxy_of(kind, store_name)
    for protocol in DATA_PROTOCOLS:
        assert not satisfies_as_of_312(proxy, protocol), protocol.__name__
    assert bounds_own_calls(proxy) is False
    assert is_in_process(proxy) is False


def test_the_stores_checked_have_the_capabilities_in_question() -> None:
    # Otherwise the comparisons above would compare absences.
    assert satisfies_as_of_312(InMemoryCatalog(), FollowedColumnsCatalog)
    assert not satisfies_as_of_312(VideosOnlyCatalog(), FollowedColumnsCatalog)
    assert bounds_own_calls(InMemoryCatalog()) and is_in_process(InMemoryFeedCache())


def test_a_proxy_keeps_its_own_methods_and_its_class_name() -> None:
    batched = GroupCommitEventStore(EventsAppendedEach())
    assert inspect.getattr_static(batched, "append") is vars(GroupCommitEventStore)["append"]
    shared = EventsSharingCounts(InMemoryEventStore())
    assert (
        inspect.getattr_static(shared, "stats_columns")
        is vars(EventsSharingCounts)["stats_columns"]
    )
    guarded = GuardedStore(InMemoryCatalog(), _guard())
    assert isinstance(guarded, GuardedStore) and type(guarded).__name__ == "GuardedStore"
    assert type(guarded) is type(GuardedStore(InMemoryCatalog(), _guard()))
    assert guarded.get_videos.__name__ == "get_videos"


def test_a_guarded_store_reports_forwarded_calls_under_the_method_name() -> None:
    calls: list[str] = []
    guard = DependencyGuard(
        "catalog",
        pool=WorkerPool(1),
        breaker=CircuitBreaker("catalog"),
        deadline_seconds=5.0,
        max_stalled=1,
        on_call=lambda operation, _outcome, _seconds: calls.append(operation),
    )
    catalog: Any = GuardedStore(InMemoryCatalog(), guard)
    catalog.put_creator(make_creator(2))
    catalog.put_video(make_video(1, 2))
    assert len(catalog.followed_columns(1, limit=5)) == 0
    assert list(catalog.get_videos([1])) == [1]
    assert calls == ["put_creator", "put_video", "followed_columns", "get_videos"]


def test_proxies_copy_and_pickle_with_their_store() -> None:
    guarded = GuardedStore(InMemoryCatalog(), _guard())
    clone = copy.copy(guarded)
    assert type(clone) is type(guarded) and clone.guard is guarded.guard
    plain = StoreProxy(_PicklableStore(3))
    again = pickle.loads(pickle.dumps(plain))
    assert type(again) is type(plain)
    assert again.plus(4) == 7 and again.base == 3


class _PicklableStore:
    def __init__(self, base: int) -> None:
        self.base = base

    def plus(self, value: int) -> int:
        return self.base + value


def test_the_feed_service_reads_a_guarded_catalogs_followed_columns_by_the_312_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The service decides with isinstance at construction; here it decides as 3.12 does.
    monkeypatch.setattr(reelrank.feed._ranking, "isinstance", isinstance_as_of_312, raising=False)
    start = EPOCH + timedelta(days=2)
    catalog = InMemoryCatalog()
    for creator in (1, 2):
        catalog.put_creator(make_creator(creator))
    for video in range(1, 21):
        catalog.put_video(
            make_video(video, 1 + video % 2, published_at=start - timedelta(hours=video))
        )
    catalog.follow(1, 2)
    events = InMemoryEventStore()
    events.append(make_event("like", user_id=2, video_id=3, occurred_at=start), creator_id=2)
    observer = _Operations()
    clock = ManualClock(start)
    with FeedRankingService(
        catalog=GuardedStore(catalog, _guard()),
        events=events,
        seen=InMemorySeenStore(),
        cache=None,
        config=FeedServiceConfig(
            refresh_pool_in_background=False,
            cursor_secret="a-test-secret-of-some-length",
            deadlines=StoreDeadlines(catalog=30, events=30, seen=30, models=30, cache=30),
            recent_limit=5,
            popular_limit=0,
        ),
        clock=clock.now,
        monotonic=clock.monotonic,
        observer=observer,
    ) as service:
        assert service.feed(1, 10).items
    assert observer.calls.count("catalog.followed_columns") == 1
    assert "catalog.followed_videos" not in observer.calls


class _Operations(FeedObserver):
    """The store calls a service made, as ``store.operation``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def store_call(self, store: str, operation: str, seconds: float, outcome: str) -> None:
        self.calls.append(f"{store}.{operation}")


# -- any wrapped type ---------------------------------------------------------------------

_KINDS = ["method", "staticmethod", "classmethod", "property", "data", "class", "instance"]
_FORWARDED_METHODS = {"method", "staticmethod", "classmethod"}


def _answer_with(name: str) -> Callable[[Any, int], tuple[str, int]]:
    return lambda _owner, value: (name, value)


def _name_of(name: str, _owner: object) -> str:
    return name


def _store_type(members: dict[str, str]) -> type:
    """A store class with a member of each given kind, each answering with its name."""
    namespace: dict[str, Any] = {}
    for name, kind in members.items():
        if kind == "method":
            namespace[name] = _answer_with(name)
        elif kind == "staticmethod":
            namespace[name] = staticmethod(lambda value, _name=name: (_name, value))
        elif kind == "classmethod":
            namespace[name] = classmethod(_answer_with(name))
        elif kind == "property":
            namespace[name] = property(functools.partial(_name_of, name))
        elif kind == "data":
            namespace[name] = name
        elif kind == "class":
            namespace[name] = type(name, (), {})
    return type("GeneratedStore", (), namespace)


class _Counting(StoreProxy):
    """A proxy recording each forwarded call's method."""

    def __init__(self, store: object) -> None:
        super().__init__(store)
        self.forwarded: list[str] = []

    def _forward(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        self.forwarded.append(method)
        return super()._forward(method, *args, **kwargs)


@given(
    st.dictionaries(
        st.sampled_from(["alpha", "beta", "gamma", "delta", "epsilon", "_private"]),
        st.sampled_from(_KINDS),
        max_size=6,
    )
)
def test_a_proxy_of_any_type_has_its_public_methods_and_forwards_the_rest(
    members: dict[str, str],
) -> None:
    store = _store_type(members)()
    for name, kind in members.items():
        if kind == "instance":
            setattr(store, name, lambda value, _name=name: (_name, value))
    proxy: Any = _Counting(store)
    for name, kind in members.items():
        public_method = kind in _FORWARDED_METHODS and not name.startswith("_")
        assert has_member_statically(proxy, name) == public_method, (name, kind)
        if kind in _FORWARDED_METHODS or kind == "instance":
            assert getattr(proxy, name)(1) == getattr(store, name)(1) == (name, 1)
        else:
            assert getattr(proxy, name) is getattr(store, name)
    called = [name for name, kind in members.items() if kind in _FORWARDED_METHODS | {"instance"}]
    assert proxy.forwarded == [name for name in called if not name.startswith("_")]
    for name in {"alpha", "beta", "gamma", "delta", "epsilon"} - set(members):
        assert not has_member_statically(proxy, name)
        with pytest.raises(AttributeError):
            getattr(proxy, name)
