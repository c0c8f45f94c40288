"""The reels service against its own OpenAPI document, with schemathesis.

Schemathesis generates requests from ``/openapi.json`` (valid and invalid ones) and
checks every answer: never a 5xx, and status, content type, headers and body as
documented; invalid requests must be refused.
Every request carries a valid token, so the authenticated paths are explored too.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

EXAMPLE_ROOT = Path(__file__).resolve().parents[1] / "examples" / "flask_app"
# The example is an application, not an installed distribution: import it from its folder.
sys.path.insert(0, str(EXAMPLE_ROOT))

from reelrank_example import (  # noqa: E402
    FIRST_USER_ID,
    Settings,
    build_services,
    create_app,
    issue_token,
    memory_stores,
    openapi_document,
    seed_synthetic_catalog,
)

SECRET = "t" * 40


def _schema() -> Any:
    service_settings = Settings(
        auth_secret=SECRET, videos=30, pending_videos=4, users=6, events=200, creators=8,
        events_per_minute=100_000,
    )  # fmt: skip
    stores = memory_stores()
    embeddings = seed_synthetic_catalog(stores, service_settings, now=datetime.now(UTC))
    services = build_services(dataclasses.replace(stores, embeddings=embeddings), service_settings)
    return schemathesis.openapi.from_wsgi("/openapi.json", create_app(services, service_settings))


@pytest.fixture(scope="module")
def api() -> Any:
    return _schema()


# schemathesis's own pytest plugin does not load under this pytest, so each operation's
# strategy is drawn from with hypothesis directly.
# Negative cases need something to get wrong: a parameter or a body.
CASES = sorted(
    (f"{method.upper()} {path}", mode)
    for path, methods in openapi_document()["paths"].items()
    for method, operation in methods.items()
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or operation["parameters"] or "requestBody" in operation
)


# A request the schema allows may still be refused for reasons no schema states: an
# unknown video (404), a cursor not signed by the service, an ``occurred_at`` outside
# the accepted window, a watch with neither measure. Only those acceptance checks are
# left out; no 5xx, documented statuses, content types and bodies are all checked.
ACCEPTANCE_CHECKS = [positive_data_acceptance]


@pytest.mark.parametrize(
    ("label", "mode"), CASES, ids=[f"{name} {mode.value}" for name, mode in CASES]
)
def test_every_answer_matches_the_document(api: Any, label: str, mode: GenerationMode) -> None:
    operation = api.find_operation_by_label(label)
    token = issue_token(SECRET, FIRST_USER_ID)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"}, excluded_checks=ACCEPTANCE_CHECKS
        )

    check()
