"""The Prometheus alert rules, their unit tests, their runbooks and the Grafana dashboard.

``promtool`` (Debian package ``prometheus``) checks and unit-tests the rules; the tests
that need it are skipped without it. Every metric name a rule or a panel uses must be
one the service exports: the families listed in the service's metrics module.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "flask_app"))

from reelrank_example._metrics import FAMILIES  # noqa: E402

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "reelrank.json"
RUNBOOKS = ROOT / "docs" / "operate" / "alerts.md"
RUNBOOK_BASE = "https://github.com/reelrank/reelrank/blob/main/docs/operate/alerts.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is needed (Debian package prometheus; scripts/test.sh installs it)",
)

# The metric families the service exports (name as exposed: counters end in _total),
# read from the service's own list so a renamed family breaks this test.
EXPORTED_FAMILIES: dict[str, str] = {family.name: family.type for family in FAMILIES}
# prometheus_client's process collector, and the series Prometheus adds to every scrape.
PROCESS_COLLECTOR = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
}
SCRAPE_SERIES = {"up"}

# One alert or more for each way the issue says the service can fail.
FAILURE_MODES = {
    "error rate": {"ReelrankHighErrorRate", "ReelrankRouteErrors"},
    "p95 latency over budget per route": {
        "ReelrankFeedLatencyOverBudget",
        "ReelrankCachedFeedLatencyOverBudget",
        "ReelrankSearchLatencyOverBudget",
        "ReelrankRouteLatencyHigh",
    },
    "cache hit ratio under target": {"ReelrankCacheHitRatioLow"},
    "degraded responses": {"ReelrankDegradedResponses"},
    "open breakers": {"ReelrankCircuitBreakerOpen", "ReelrankCircuitBreakerStuckOpen"},
    "event write failures": {"ReelrankEventWriteFailures"},
    "readiness flapping": {"ReelrankReadinessFlapping"},
    "an old candidate pool": {"ReelrankCandidatePoolStale"},
}


def exported_series_names() -> set[str]:
    """Every series name the service exposes: histograms as _bucket, _count and _sum."""
    names = set(PROCESS_COLLECTOR)
    for family, kind in EXPORTED_FAMILIES.items():
        if kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_count", f"{family}_sum"}
        else:
            names.add(family)
    return names


_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    A small lexer, not a parser (the syntax is promtool's to check): it drops strings,
    label matchers, range and offset durations, grouping label lists, Grafana variables,
    numbers, function names and keywords; what is left are metric names.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        following = text[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        if text[match.start() - 1 : match.start()].isdigit():
            continue  # the exponent or unit of a number: 1e3, 5m
        names.add(word)
    return names


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                queries.append((inner["title"], target["expr"]))
    return queries


def test_the_lexer_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (route, le) (rate(a_bucket{route!~"/x|y",le="+Inf"}'
        "[$__rate_interval] offset 5m))) > 1e-3 and on () b_total / ignoring (x) group_left"
        ' sum without (pod) (c) unless absent(up{job="j"} == 1)'
    )
    assert promql_metric_names(expr) == {"a_bucket", "b_total", "c", "up"}


def test_there_are_enough_alerts_and_each_is_complete() -> None:
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) >= 15
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{rule['alert'].lower()}"
    for mode, alerts in FAILURE_MODES.items():
        assert alerts <= set(names), mode


def test_alerts_use_only_exported_metrics() -> None:
    exported = exported_series_names() | SCRAPE_SERIES
    for rule in _alert_rules():
        used = promql_metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)


def test_every_alert_has_a_runbook_section() -> None:
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    assert sorted(headings) == sorted(rule["alert"] for rule in _alert_rules())
    sections = re.split(r"^## ", RUNBOOKS.read_text(), flags=re.MULTILINE)[1:]
    for section in sections:
        for part in ("**Means:**", "**Likely causes:**", "**Check:**", "**Do:**"):
            assert part in section, (section.split()[0], part)


def test_every_alert_fires_in_a_unit_test_and_some_stay_silent() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in _alert_rules()}
    assert len(silent) >= 10


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", ALERT_TESTS.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ALERT_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_use_only_exported_metrics_and_cover_them_all() -> None:
    exported = exported_series_names() | SCRAPE_SERIES
    used: set[str] = set()
    queries = _dashboard_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        names = promql_metric_names(expr)
        assert names, title
        assert names <= exported, (title, names - exported)
        used |= names
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert set(EXPORTED_FAMILIES) <= families, set(EXPORTED_FAMILIES) - families


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


@needs_promtool
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    # promtool parses PromQL when it checks rules: each query becomes a recording rule,
    # with Grafana's interval variable replaced by a duration.
    rules = [
        {"record": f"dashboard:query_{number}", "expr": expr.replace("$__rate_interval", "5m")}
        for number, (_, expr) in enumerate(_dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
