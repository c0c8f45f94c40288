"""reelrank.stores.adapter: its pinned names, its behaviour, and adapters that use only it.

The adapters in ``adapters/`` are built the way a third-party adapter would be: on
public names only. The last tests fail on any import of a private reelrank module or
name there, so an internal refactor of the core cannot silently break them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from reelrank import (
    ConfigError,
    EngagementEvent,
    EngagementKind,
    InvalidInputError,
    ReelrankError,
    StoreError,
    StoreTimeoutError,
)
from reelrank.stores import adapter
from reelrank.testing.factories import make_event

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ROOT / "adapters"

EXPECTED = {
    "MAX_ID",
    "AdapterSettings",
    "AtomicSeenStore",
    "BulkReadCatalog",
    "BoundedAgeEventStore",
    "BulkReadEventStore",
    "BulkReadSeenStore",
    "CoordinatedTrendingSnapshotStore",
    "Catalog",
    "ConfigError",
    "EngagementEventColumns",
    "EngagementLog",
    "EventStore",
    "FeedCache",
    "FeedKey",
    "FollowedCandidatesCatalog",
    "FollowedColumnsCatalog",
    "LabelColumnsCatalog",
    "InProcessStore",
    "InvalidInputError",
    "ModelRegistry",
    "NotFoundError",
    "PageOutcome",
    "PageRequest",
    "PageTakingSeenStore",
    "ProgressStore",
    "SearchConfig",
    "SearchIndex",
    "SeenStore",
    "SelfBoundingStore",
    "StoreError",
    "StoreErrorTranslation",
    "StoreErrorTranslator",
    "StoreTimeoutError",
    "TrendingSnapshotStore",
    "affinity",
    "affinity_credit",
    "bounds_own_calls",
    "bulk_affinities",
    "bulk_followed_videos",
    "bulk_recently_seen",
    "check_appendable_event",
    "check_aware",
    "check_feed_key",
    "check_id",
    "check_id_column",
    "check_ids",
    "check_ids_by_user",
    "check_lease_owner",
    "check_limit",
    "check_max_age",
    "check_tag",
    "check_trending_kind",
    "check_ttl",
    "check_user_ids",
    "check_variant",
    "chunked",
    "describe_error",
    "exception_chain",
    "finite_or_raise",
    "is_in_process",
    "page_record",
    "parse_query",
    "take_page_in_steps",
    "tokenize",
    "utc_now",
}


def test_exported_names_are_pinned() -> None:
    assert set(adapter.__all__) == EXPECTED


def test_every_exported_name_exists_under_a_public_module() -> None:
    for name in adapter.__all__:
        obj = getattr(adapter, name)
        module = getattr(obj, "__module__", None)
        if isinstance(obj, type) or callable(obj):
            assert isinstance(module, str), name
            assert not any(part.startswith("_") for part in module.split(".")), (name, module)


def test_every_exported_callable_is_documented() -> None:
    for name in adapter.__all__:
        obj = getattr(adapter, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__doc__, name


# -- AdapterSettings ----------------------------------------------------------------


class _Settings(adapter.AdapterSettings):
    """Settings of an imaginary adapter."""

    url: SecretStr = SecretStr("db://localhost")
    """Where the database is; may carry a password."""
    token: SecretStr | None = None
    """An optional access token."""
    read_timeout_seconds: float = 1.0
    """Seconds to wait for a reply."""


def test_settings_refuse_unknown_fields_and_name_the_bad_one() -> None:
    with pytest.raises(ConfigError) as info:
        _Settings(read_timeout=1.0)  # type: ignore[call-arg]
    assert info.value.field == "read_timeout"
    with pytest.raises(ConfigError) as info:
        _Settings(read_timeout_seconds="soon")  # type: ignore[arg-type]
    assert info.value.field == "read_timeout_seconds"
    assert info.value.value == "soon"


def test_settings_are_frozen() -> None:
    settings = _Settings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        settings.read_timeout_seconds = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("field", ["url", "token"])
def test_a_rejected_secret_is_masked_in_the_error(field: str) -> None:
    with pytest.raises(ConfigError) as info:
        _Settings.model_validate({field: 12345678})
    assert info.value.field == field
    assert info.value.value == "**********"
    assert "12345678" not in str(info.value)


def test_secrets_stay_out_of_reprs() -> None:
    settings = _Settings(url=SecretStr("db://user:hunter2@host"), token=SecretStr("t0ken"))
    assert "hunter2" not in repr(settings)
    assert "t0ken" not in repr(settings)
    assert settings.url.get_secret_value() == "db://user:hunter2@host"


# -- error translation --------------------------------------------------------------


class _DriverError(Exception):
    pass


class _DriverTimeout(_DriverError):
    pass


class _Wrapper(Exception):
    """Stands in for a DB-API wrapper that keeps the driver's error as ``orig``."""

    def __init__(self, orig: BaseException) -> None:
        super().__init__("wrapped")
        self.orig = orig


def _timed_out(exc: BaseException) -> bool:
    return any(isinstance(error, _DriverTimeout) for error in adapter.exception_chain(exc))


store_errors = adapter.StoreErrorTranslator((_DriverError, _Wrapper), is_timeout=_timed_out)


def test_a_driver_failure_becomes_a_store_error_naming_store_and_operation() -> None:
    cause = _DriverError("connection reset\nSELECT * FROM secrets")
    with pytest.raises(StoreError) as info, store_errors("catalog", "get_video"):
        raise cause
    assert type(info.value) is StoreError
    assert info.value.store == "catalog"
    assert str(info.value) == "catalog: get_video failed: _DriverError: connection reset"
    assert info.value.__cause__ is cause


def test_a_timeout_found_behind_a_wrapper_becomes_a_store_timeout() -> None:
    cause = _Wrapper(_DriverTimeout("read timed out"))
    with pytest.raises(StoreTimeoutError) as info, store_errors("events", "append"):
        raise cause
    assert str(info.value) == "events: append timed out: _Wrapper: wrapped"
    assert info.value.__cause__ is cause


def test_other_exceptions_pass_through_unchanged() -> None:
    with pytest.raises(KeyError), store_errors("cache", "get"):
        raise KeyError("not a driver error")
    with pytest.raises(ConfigError), store_errors("cache", "get"):
        raise ConfigError("x", 1, "a reelrank error raised in the block")


def test_the_translation_also_decorates() -> None:
    @store_errors("seen", "mark_seen")
    def mark() -> None:
        raise _DriverTimeout("")

    with pytest.raises(StoreTimeoutError) as info:
        mark()
    assert str(info.value) == "seen: mark_seen timed out: _DriverTimeout"
    assert isinstance(info.value, ReelrankError)


def test_a_clean_block_returns_normally() -> None:
    with store_errors("cache", "get"):
        value = 42
    assert value == 42


@pytest.mark.parametrize(
    ("event", "creator_id", "field"),
    [
        ("not an event", 1, "event"),
        (None, 1, "event"),
        (make_event(kind=EngagementKind.LIKE), 0, "creator_id"),
        (make_event(kind=EngagementKind.LIKE), True, "creator_id"),
        (make_event(kind=EngagementKind.WATCH, watched_seconds=10.0), 1, "completion"),
    ],
)
def test_an_event_that_cannot_be_appended_is_refused_naming_the_field(
    event: object, creator_id: object, field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        adapter.check_appendable_event(event, creator_id)
    assert info.value.field == field


@pytest.mark.parametrize(
    "event",
    [
        make_event(kind=EngagementKind.WATCH, completion=0.0),
        make_event(kind=EngagementKind.LIKE),
        make_event(kind=EngagementKind.SHARE),
    ],
)
def test_an_appendable_event_is_returned_unchanged(event: EngagementEvent) -> None:
    assert adapter.check_appendable_event(event, 7) is event


def test_exception_chain_follows_orig_then_cause_and_stops_on_a_cycle() -> None:
    root = TimeoutError("slow")
    middle = _Wrapper(root)
    top = _DriverError("top")
    top.__cause__ = middle
    assert list(adapter.exception_chain(top)) == [top, middle, root]
    loop = _DriverError("loop")
    loop.__cause__ = loop
    assert list(adapter.exception_chain(loop)) == [loop]


# -- adapters use public names only -------------------------------------------------

_PRIVATE_PATH = re.compile(r"\breelrank(?:\.[A-Za-z]\w*)*\._\w+")


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "reelrank":
                continue
            names = [alias.name for alias in node.names]
            private = [name for name in names if name.startswith("_") and name != "__version__"]
            if any(part.startswith("_") for part in parts) or private:
                found.append(f"{path}:{node.lineno}: from {node.module} import {names}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "reelrank" and any(part.startswith("_") for part in parts):
                    found.append(f"{path}:{node.lineno}: import {alias.name}")
    # Dotted paths in strings (subprocess code, importlib) count too.
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _PRIVATE_PATH.search(line):
            found.append(f"{path}:{number}: {line.strip()}")
    return found


def test_the_scan_catches_private_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from reelrank.models._base import StrictModel\n"
        "import reelrank._kernels\n"
        "from reelrank.stores import _text\n"
        "from reelrank.stores.adapter import tokenize\n"
        "from reelrank_redis._codec import encode_snapshot\n"
        'MODULE = "reelrank.stores._text"\n',
        encoding="utf-8",
    )
    flagged = {int(hit.split(":")[1]) for hit in _private_imports(sample)}
    assert flagged == {1, 2, 3, 6}


def test_adapters_import_no_private_reelrank_module() -> None:
    files = sorted(ADAPTERS.rglob("*.py"))
    assert len(files) > 30  # the three adapters' sources and tests
    offending = [hit for path in files for hit in _private_imports(path)]
    assert offending == []
