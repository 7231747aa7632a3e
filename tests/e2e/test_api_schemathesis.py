"""The live hub against its own OpenAPI: schemathesis generates requests for every operation (schema-valid
and not), authenticated as an admin, and every answer must be no 5xx, with a documented status, content
type, headers and body. Business rules may refuse schema-valid data (400/404/409): that is allowed, as
long as the refusal is documented. Plus the unauthenticated face: 401 with our body, open health and
schema endpoints."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from tests.e2e.hub_server import LiveHub, live_hub

pytestmark = pytest.mark.e2e

API = "/api/v1"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# The coverage phase (boundary and just-outside-the-schema values, deterministic) stays on; requests with
# methods an operation does not have are left out (they only meet Starlette's 405 and cost half the run).
CONFIG = SchemathesisConfig.from_str("[phases.coverage]\nunexpected-methods = []\n")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    with live_hub(tmp_path_factory.mktemp("live-hub")) as running:
        with httpx.Client(base_url=running.url, headers=running.headers, timeout=30) as client:
            _deploy(client, {"name": "seed", "profile": "claude_code", "project": "alpha"})
        yield running


def _deploy(client: httpx.Client, request: dict[str, Any]) -> None:
    """Deploy through the API and follow the job's events to its end, so reads find a real machine."""
    accepted = client.post(f"{API}/machines", json=request)
    assert accepted.status_code == 202, accepted.text
    with client.stream("GET", accepted.json()["links"]["events"]) as events:
        kind = ""
        for line in events.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind == "end":
                job = json.loads(line[5:])
                assert job["status"] == "succeeded", job
                return
    raise AssertionError("the job's event stream ended without an 'end' event")


@pytest.fixture(scope="module")
def api_schema(hub: LiveHub) -> Any:
    return schemathesis.openapi.from_url(f"{hub.url}/openapi.json", config=CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: Case[Any], hub: LiveHub) -> None:
    seen = len(hub.output)
    try:
        case.call_and_validate(base_url=hub.url, headers=hub.headers, checks=CHECKS, timeout=15)
    except Exception:
        print("the hub's log meanwhile:\n" + "".join(hub.output[seen:]))  # the traceback of a 500
        raise


def test_without_a_valid_token_every_api_operation_is_401_with_our_body(hub: LiveHub) -> None:
    spec = httpx.get(f"{hub.url}/openapi.json", timeout=10).json()
    operations = [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, item in spec["paths"].items()
        if path.startswith(API) or path == "/metrics"
        for method in item
    ]
    assert len(operations) > 5
    with httpx.Client(base_url=hub.url, timeout=10) as client:
        for headers in ({}, {"Authorization": "Bearer avt_nope_notasecret"}, {"Authorization": "Basic x"}):
            for method, path in operations:
                response = client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                body = response.json()
                assert body["error"] == "unauthorized" and body["message"], body
                assert set(body) == {"error", "message", "hint", "details"}
                assert response.headers["www-authenticate"] == "Bearer"


def test_health_and_schema_need_no_token(hub: LiveHub) -> None:
    with httpx.Client(base_url=hub.url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        spec = client.get("/openapi.json")
        assert spec.status_code == 200 and spec.json()["info"]["title"] == "autovibe hub"


def test_the_schema_documents_our_error_body_not_fastapis(hub: LiveHub) -> None:
    spec = httpx.get(f"{hub.url}/openapi.json", timeout=10).json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (method, path)
            if path.startswith(API):
                bad = operation["responses"]["400"]["content"]["application/json"]["schema"]
                assert bad == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_refusals_outside_the_services_answer_our_body(hub: LiveHub) -> None:
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=10) as client:
        answers = {
            "unicode digit ref": client.get(f"{API}/machines/\u00b3"),
            "vmid beyond the store": client.get(f"{API}/machines/{'9' * 30}"),
            "not json": client.post(
                f"{API}/machines", content=b"{nope", headers={"Content-Type": "application/json"}
            ),
            "unknown route": client.get(f"{API}/nowhere"),
            "unknown method": client.patch(f"{API}/machines"),
            "existing machine": client.get(f"{API}/machines/seed"),
        }
    statuses = {what: response.status_code for what, response in answers.items()}
    assert statuses == {
        "unicode digit ref": 400,
        "vmid beyond the store": 400,
        "not json": 400,
        "unknown route": 404,
        "unknown method": 405,
        "existing machine": 200,
    }
    assert answers["unicode digit ref"].json()["details"]["fields"].keys() == {"ref"}
    for what, response in answers.items():
        if what != "existing machine":
            assert set(response.json()) == {"error", "message", "hint", "details"}, what
    assert "GET" in answers["unknown method"].headers["allow"]
