from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from reelrank import (
    ConfigError,
    Creator,
    EngagementRecorder,
    Experiment,
    FeedRankingService,
    InMemoryCatalog,
    InMemoryEngagementLog,
    InMemoryEventStore,
    InMemoryFeedCache,
    InMemorySeenStore,
    RankingConfig,
    Variant,
    Video,
    assignment_point,
)

SHARES = {"control": 0.5, "treatment": 0.3, "holdout": 0.2}
TREATMENT_CONFIG = RankingConfig(
    freshness=0.3, completion=0.3, engagement=0.2, affinity=0.15, deep_learning=0.05
)


def make_experiment(salt: str = "feed-2026", shares: dict[str, float] = SHARES) -> Experiment:
    return Experiment(
        name="feed-weights",
        salt=salt,
        variants=tuple(
            Variant(
                name=name,
                share=share,
                config=TREATMENT_CONFIG if name == "treatment" else RankingConfig(),
            )
            for name, share in shares.items()
        ),
    )


def variant_from_digest(digest: bytes, shares: dict[str, float]) -> str:
    """The documented rule in exact rational arithmetic: top 53 bits over 2**53 against
    the running sum of the shares."""
    point = Fraction(int.from_bytes(digest, "big") >> 11, 2**53)
    upper = Fraction(0)
    for name, share in shares.items():
        upper += Fraction(share)
        if point < upper:
            return name
    raise AssertionError("point beyond the last slice")


# BLAKE2b-64 digests of f"{salt}:{user_id}" from GNU coreutils, an implementation
# independent of Python's hashlib: `printf '%s' 'feed-2026:42' | b2sum -l 64`.
PINNED = [
    ("feed-2026", 1, "f62750d6b67b08c9", "holdout"),
    ("feed-2026", 42, "b6316e18bbc05346", "treatment"),
    ("feed-2026", "alice", "0fa593a97ebef3f5", "control"),
    ("feed-2026", "user-9001", "ae66856dc5b9955e", "treatment"),
    ("feed-2026", 7, "76c61569e07f0461", "control"),
    ("other-salt", 42, "4934b9b4802139c4", "control"),
]


@pytest.mark.parametrize(("salt", "user_id", "digest_hex", "expected"), PINNED)
def test_pinned_assignments_follow_the_documented_formula(
    salt: str, user_id: object, digest_hex: str, expected: str
) -> None:
    digest = bytes.fromhex(digest_hex)
    assert variant_from_digest(digest, SHARES) == expected
    assert assignment_point(salt, user_id) == (int(digest_hex, 16) >> 11) / 2**53
    assert make_experiment(salt).assign(user_id).name == expected


def test_integer_and_string_ids_share_a_point() -> None:
    assert assignment_point("s", 42) == assignment_point("s", "42")


@given(st.text(max_size=20), st.one_of(st.integers(), st.text(max_size=30)))
def test_point_is_in_the_unit_interval(salt: str, user_id: object) -> None:
    assert 0.0 <= assignment_point(salt, user_id) < 1.0


@given(st.integers(min_value=0, max_value=2**63))
def test_assignment_matches_exact_rational_rule(user_id: int) -> None:
    import hashlib

    digest = hashlib.blake2b(f"feed-2026:{user_id}".encode(), digest_size=8).digest()
    assert make_experiment().assign(user_id).name == variant_from_digest(digest, SHARES)


def test_assignment_is_the_same_in_another_process() -> None:
    users = list(range(300)) + [f"user-{i}" for i in range(300)]
    script = (
        "import json, sys\n"
        "from reelrank import Experiment\n"
        "experiment = Experiment.model_validate_json(sys.argv[1])\n"
        "users = json.loads(sys.argv[2])\n"
        "print(json.dumps([experiment.assign(u).name for u in users]))\n"
    )
    experiment = make_experiment()
    # A different hash seed in the child would change any assignment built on hash().
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script, experiment.model_dump_json(), json.dumps(users)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert json.loads(result.stdout) == [experiment.assign(u).name for u in users]


def test_assignment_follows_the_shares_chi_square() -> None:
    experiment = make_experiment()
    users = 200_000
    counts = Counter(experiment.assign(user_id).name for user_id in range(users))
    observed = [counts[name] for name in SHARES]
    expected = [share * users for share in SHARES.values()]
    statistic, p_value = stats.chisquare(observed, expected)
    # Critical value of chi-square with 2 degrees of freedom at alpha = 0.001 is 13.816.
    assert statistic < 13.816, (statistic, p_value, observed)


def test_points_are_uniform_chi_square_over_twenty_bins() -> None:
    users = 100_000
    bins = Counter(int(assignment_point("uniformity", f"u{i}") * 20) for i in range(users))
    statistic, p_value = stats.chisquare([bins[b] for b in range(20)])
    # Critical value of chi-square with 19 degrees of freedom at alpha = 0.001 is 43.820.
    assert statistic < 43.820, (statistic, p_value)


def test_a_new_salt_reassigns_independently() -> None:
    first, second = make_experiment("salt-a"), make_experiment("salt-b")
    users = 60_000
    table = Counter((first.assign(u).name, second.assign(u).name) for u in range(users))
    names = list(SHARES)
    contingency = [[table[(a, b)] for b in names] for a in names]
    result = stats.chi2_contingency(contingency)
    # Independence with 4 degrees of freedom at alpha = 0.001: critical value 18.467.
    assert result.statistic < 18.467, result


def test_zero_share_variant_is_never_assigned() -> None:
    experiment = make_experiment(shares={"a": 0.0, "b": 1.0, "c": 0.0})
    assert {experiment.assign(u).name for u in range(2_000)} == {"b"}


@settings(max_examples=50)
@given(st.floats(min_value=0.0, max_value=0.9), st.floats(min_value=0.0, max_value=0.1))
def test_growing_a_share_only_moves_users_into_it(share: float, growth: float) -> None:
    before = make_experiment(shares={"a": share, "b": 1.0 - share})
    grown = share + growth
    # 0.9 + 0.1 - 1.0 rounds to a tiny negative share; a share is never below zero.
    after = make_experiment(shares={"a": grown, "b": max(1.0 - grown, 0.0)})
    for user_id in range(300):
        if before.assign(user_id).name == "a":
            assert after.assign(user_id).name == "a"


def test_config_for_returns_the_variant_config() -> None:
    experiment = make_experiment()
    for user_id in range(50):
        variant = experiment.assign(user_id)
        assert experiment.config_for(user_id) is variant.config
    assert experiment.variant("treatment").config == TREATMENT_CONFIG
    assert experiment.variant_names == ("control", "treatment", "holdout")


def test_shares_must_sum_to_one() -> None:
    with pytest.raises(ConfigError) as info:
        make_experiment(shares={"a": 0.5, "b": 0.4})
    assert info.value.field == "variants.share"
    assert info.value.value == pytest.approx(0.9)


@given(
    st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=6).filter(
        lambda shares: abs(sum(shares) - 1.0) > 1e-6
    )
)
def test_any_share_sum_other_than_one_is_rejected(shares: list[float]) -> None:
    with pytest.raises(ConfigError) as info:
        make_experiment(shares={f"v{i}": s for i, s in enumerate(shares)})
    assert info.value.field == "variants.share"


def test_variant_names_must_be_unique() -> None:
    with pytest.raises(ConfigError) as info:
        Experiment(
            name="e",
            salt="s",
            variants=(Variant(name="a", share=0.5), Variant(name="a", share=0.5)),
        )
    assert info.value.field == "variants.name"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "e", "salt": "s", "variants": []}, "variants"),
        ({"name": "e", "salt": "", "variants": [{"name": "a", "share": 1.0}]}, "salt"),
        ({"name": "e", "salt": "s", "variants": [{"name": "a", "share": 1.5}]}, "variants.0.share"),
        (
            {"name": "e", "salt": "s", "variants": [{"name": "a b", "share": 1.0}]},
            "variants.0.name",
        ),
        ({"name": "e", "salt": "s", "varients": []}, "variants"),
        (
            {"name": "e", "salt": "s", "variants": [{"name": "a", "share": 1.0, "weight": 1}]},
            "variants.0.weight",
        ),
    ],
)
def test_bad_experiment_names_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Experiment(**data)  # type: ignore[arg-type]
    assert info.value.field == field


def test_bad_nested_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Experiment(
            name="e",
            salt="s",
            variants=[{"name": "a", "share": 1.0, "config": {"freshness": 0.9}}],  # type: ignore[list-item]
        )
    assert info.value.field == "variants.0.config.weights"


EXPERIMENT_TOML = """
[tool.reelrank.experiment]
name = "feed-weights"
salt = "feed-2026"

[[tool.reelrank.experiment.variants]]
name = "control"
share = 0.5

[[tool.reelrank.experiment.variants]]
name = "treatment"
share = 0.3
[tool.reelrank.experiment.variants.config]
freshness = 0.3
completion = 0.3
engagement = 0.2
affinity = 0.15
deep_learning = 0.05

[[tool.reelrank.experiment.variants]]
name = "holdout"
share = 0.2
"""


def test_experiment_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(EXPERIMENT_TOML, encoding="utf-8")
    loaded = Experiment.from_toml(path, table="tool.reelrank.experiment")
    assert loaded == make_experiment()
    assert Experiment.from_toml(EXPERIMENT_TOML, table="tool.reelrank.experiment") == loaded


def test_experiment_from_toml_names_the_bad_field() -> None:
    bad = EXPERIMENT_TOML.replace("share = 0.2", "share = 0.25")
    with pytest.raises(ConfigError) as info:
        Experiment.from_toml(bad, table="tool.reelrank.experiment")
    assert info.value.field == "variants.share"
    bad = EXPERIMENT_TOML.replace("freshness = 0.3", "freshness = 0.4")
    with pytest.raises(ConfigError) as info:
        Experiment.from_toml(bad, table="tool.reelrank.experiment")
    assert info.value.field == "variants.1.config.weights"
    with pytest.raises(ConfigError) as info:
        Experiment.from_toml(EXPERIMENT_TOML, table="tool.other")
    assert info.value.field == "tool.other"
    with pytest.raises(ConfigError) as info:
        Experiment.from_toml("name = ")
    assert info.value.field == "<toml>"


def test_model_validate_json_raises_config_error_with_the_path() -> None:
    data = make_experiment().model_dump(mode="json")
    data["variants"][0]["share"] = -0.5
    with pytest.raises(ConfigError) as info:
        Experiment.model_validate_json(json.dumps(data))
    assert info.value.field == "variants.0.share"
    assert Experiment.model_validate_json(make_experiment().model_dump_json()) == make_experiment()


def test_unknown_variant_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        make_experiment().variant("nope")
    assert info.value.field == "variant"


# -- integration with the feed service and the engagement recorder -----------------------

FRESHNESS_ONLY = RankingConfig(
    freshness=1.0, completion=0.0, engagement=0.0, affinity=0.0, deep_learning=0.0
)


def feed_experiment(salt: str = "feed-2026") -> Experiment:
    return Experiment(
        name="freshness-only",
        salt=salt,
        variants=(
            Variant(name="control", share=0.5),
            Variant(name="fresh", share=0.5, config=FRESHNESS_ONLY),
        ),
    )


def populated_catalog() -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    catalog.put_creator(Creator(creator_id=1, handle="maker"))
    now = datetime.now(UTC)
    for video_id in range(1, 31):
        catalog.put_video(
            Video(
                video_id=video_id,
                creator_id=1,
                duration_seconds=15.0,
                published_at=now - timedelta(hours=video_id),
            )
        )
    return catalog


def make_service(
    experiment: Experiment, cache: InMemoryFeedCache, catalog: InMemoryCatalog | None = None
) -> FeedRankingService:
    return FeedRankingService(
        catalog=catalog or populated_catalog(),
        events=InMemoryEventStore(),
        seen=InMemorySeenStore(),
        cache=cache,
        assign_variant=experiment.resolve,
    )


def test_every_page_reports_the_users_variant_and_uses_its_config() -> None:
    experiment = feed_experiment()
    with make_service(experiment, InMemoryFeedCache()) as service:
        served = Counter()
        for user_id in range(1, 41):
            page = service.feed(user_id, 5)
            assert page.variant == experiment.variant_name(user_id)
            served[page.variant] += 1
            for item in page.items:
                if page.variant == "fresh":
                    assert item.breakdown["completion"] == 0.0
                    assert item.breakdown["freshness"] == pytest.approx(item.score)
                else:
                    assert item.breakdown["completion"] > 0.0
            next_page = service.feed(user_id, 5, page.next_cursor)
            assert next_page.variant == page.variant
    assert set(served) == {"control", "fresh"}


def test_cached_snapshot_is_keyed_by_variant() -> None:
    cache = InMemoryFeedCache()
    experiment = feed_experiment()
    user_id = 7
    variant = experiment.variant_name(user_id)
    with make_service(experiment, cache) as service:
        first = service.feed(user_id, 5)
        assert cache.get(user_id, variant) is not None
        assert cache.get(user_id, None) is None
        assert service.feed(user_id, 5, first.next_cursor).from_cache

    # A new salt moves some users to the other variant: their next page is ranked
    # under the new key, and the snapshot of the old variant is not served.
    moved = next(
        uid
        for uid in range(1, 1_000)
        if feed_experiment("salt-2").variant_name(uid) != experiment.variant_name(uid)
    )
    old, new = experiment.variant_name(moved), feed_experiment("salt-2").variant_name(moved)
    catalog = populated_catalog()
    with make_service(experiment, cache, catalog) as service:
        service.feed(moved, 5)
    with make_service(feed_experiment("salt-2"), cache, catalog) as service:
        page = service.feed(moved, 5)
    assert page.variant == new
    assert not page.from_cache
    assert cache.get(moved, old) is not None and cache.get(moved, new) is not None


def test_every_recorded_event_carries_the_users_variant() -> None:
    experiment = feed_experiment()
    catalog = populated_catalog()
    log = InMemoryEngagementLog()
    recorder = EngagementRecorder(
        catalog, InMemoryEventStore(), log=log, variant_for=experiment.variant_name
    )
    since = datetime.now(UTC) - timedelta(minutes=1)
    for user_id in range(1, 21):
        recorder.watch(user_id, 3, event_id=f"w-{user_id}", completion=0.8)
        recorder.like(user_id, 4, event_id=f"l-{user_id}")
    for user_id in range(1, 21):
        events = log.user_events(user_id, since=since, limit=10)
        assert len(events) == 2
        assert {event.variant for event in events} == {experiment.variant_name(user_id)}
    # A variant sent by the client (the one on the page it saw) is kept as sent.
    recorder.like(1, 5, event_id="explicit", variant="fresh")
    explicit = [e for e in log.user_events(1, since=since, limit=10) if e.event_id == "explicit"]
    assert explicit[0].variant == "fresh"
