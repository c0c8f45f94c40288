"""The request and response examples of docs/service.md agree with the OpenAPI document.

Each example is a pair of ``http`` blocks: a request (method, path, headers, body) and
its response (status, content type, JSON body). The request must name a documented
operation and satisfy its parameter and body schemas; the response's status must be
documented for that operation and its body must match the documented schema.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "flask_app"))

from reelrank_example import openapi_document  # noqa: E402

DOCUMENT = openapi_document()
_BLOCK = re.compile(r"```http\n(.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    blocks = _BLOCK.findall((ROOT / "docs" / "service.md").read_text(encoding="utf-8"))
    assert len(blocks) % 2 == 0, "every request block is followed by its response block"
    return list(zip(blocks[::2], blocks[1::2], strict=True))


def _split(message: str) -> tuple[str, dict[str, str], str]:
    head, _, body = message.partition("\n\n")
    start, *lines = head.strip().splitlines()
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return start, headers, body.strip()


def _operation(method: str, path: str) -> tuple[dict[str, Any], dict[str, str]]:
    for template, operations in DOCUMENT["paths"].items():
        pattern = "^" + re.escape(template).replace(r"\{id\}", "(?P<id>[0-9]+)") + "$"
        matched = re.match(pattern, path)
        if matched and method.lower() in operations:
            return operations[method.lower()], matched.groupdict()
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def _errors(schema: dict[str, Any], instance: Any) -> list[str]:
    # The components travel with the schema, so its "#/components/..." references resolve.
    validator = Draft202012Validator({**schema, "components": DOCUMENT["components"]})
    return [error.message for error in validator.iter_errors(instance)]


def _validate(schema: dict[str, Any], instance: Any) -> None:
    assert _errors(schema, instance) == []


EXAMPLES = _examples()


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize(("request_text", "response_text"), EXAMPLES)
def test_an_example_matches_the_document(request_text: str, response_text: str) -> None:
    start, headers, body = _split(request_text)
    method, target, _ = start.split()
    url = urlsplit(target)
    operation, path_params = _operation(method, url.path)
    parameters = {(p["in"], p["name"]): p for p in operation["parameters"]}
    problems: list[str] = []
    for name, value in path_params.items():
        problems += _errors(parameters[("path", name)]["schema"], int(value))
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    for name, value in query.items():
        schema = parameters[("query", name)]["schema"]
        problems += _errors(schema, int(value) if schema.get("type") == "integer" else value)
    for (place, name), parameter in parameters.items():
        if parameter["required"] and place == "query" and name not in query:
            problems.append(f"{name} is required")
    if "security" in operation and {} not in operation["security"]:
        assert headers["authorization"].startswith("Bearer ")
    if body:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        problems += _errors(schema, json.loads(body))

    status_line, response_headers, response_body = _split(response_text)
    status = status_line.split()[1]
    # A success answers a valid request; a 400 example shows an invalid one.
    if status == "400":
        assert problems
    else:
        assert problems == []
    documented = operation["responses"][status]["content"]
    content_type = response_headers["content-type"]
    assert content_type in documented
    _validate(documented[content_type]["schema"], json.loads(response_body))
