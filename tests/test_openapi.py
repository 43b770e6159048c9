"""/openapi.json documents the API as it is (bodies, responses, the real error codes, bearer
auth) and matches the committed copy; /docs and /redoc work offline from packaged assets.

After a deliberate API change, regenerate the copy: ``UPDATE_OPENAPI=1 pytest
tests/test_openapi.py`` and review its diff."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agentyard.api.app import create_app
from agentyard.settings import Settings

COPY = Path(__file__).parent / "openapi.json"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    data = tmp_path_factory.mktemp("openapi")
    wrapped = create_app(Settings(data_dir=data), run_workers=False)
    inner = wrapped
    while not isinstance(inner, FastAPI):  # through the header and body limits
        inner = inner.app  # type: ignore[attr-defined]
    yield inner


@pytest.fixture(scope="module")
def spec(app: FastAPI) -> dict[str, Any]:
    # Built by the app itself, and served as is: the lifespan is not needed for either.
    served: dict[str, Any] = TestClient(app).get("/openapi.json").json()
    assert served == app.openapi()
    return served


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_the_document_matches_the_committed_copy(spec: dict[str, Any]) -> None:
    text = json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_OPENAPI"):
        COPY.write_text(text)
    assert COPY.exists(), "no committed copy: run with UPDATE_OPENAPI=1"
    assert COPY.read_text() == text, "the API changed: UPDATE_OPENAPI=1, review the diff"


def test_422_only_for_idempotency_keys_and_every_error_is_the_error_shape(
    spec: dict[str, Any],
) -> None:
    """FastAPI's validation 422 is never declared: a 422 is only an Idempotency-Key reused
    with another request, on the two routes that take the key."""
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    idempotent = {("post", "/api/v1/tasks"), ("post", "/api/v1/tasks/{run_id}/continue")}
    for path, method, op in operations(spec):
        codes = set(op["responses"])
        takes_key = any(p["name"] == "Idempotency-Key" for p in op.get("parameters", []))
        assert takes_key == ((method, path) in idempotent), (method, path)
        assert ("422" in codes) == takes_key, (method, path)
        for code in codes - {"200", "201", "204"}:
            if (path, code) == ("/readyz", "503"):
                continue  # a probe's answer (the readiness body, with its problems)
            assert code in {"400", "401", "403", "404", "409", "413", "422", "429"}, (
                method,
                path,
                code,
            )
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    error = spec["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"] and error["properties"]["error"]["type"] == "string"


def test_bodies_and_responses_are_documented_with_bearer_auth(spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An Agentyard API key.",
    }
    for path, method, op in operations(spec):
        if path.startswith("/api/v1/"):
            assert op["security"] == [{"bearerAuth": []}] and "401" in op["responses"]
            assert op.get("summary"), (method, path)
            ok = op["responses"].get("200") or op["responses"]["201"]
            assert ok["content"], (method, path)
        if method in ("post", "put", "patch") and not path.endswith(("/upload", "/redeliver")):
            body = op["requestBody"]["content"]["application/json"]
            assert body["schema"]["$ref"].startswith("#/components/schemas/")
            assert body["example"], (method, path)
    create = spec["components"]["schemas"]["CreateTask"]
    assert {"prompt", "repoUrl", "selectedAgents", "environmentVariables"} <= set(
        create["properties"]
    )
    assert create["properties"]["repoUrl"]["description"]
    assert spec["paths"]["/api/v1/tasks/{run_id}/continue"]["post"]["responses"]["409"]


def test_docs_and_redoc_load_only_packaged_assets(app: FastAPI) -> None:
    client = TestClient(app)
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert not re.search(r"(src|href)=\"https?://", html), html
        assets = re.findall(r"(?:src|href)=['\"](/docs-assets/[^'\"]+)", html)
        assert assets, html
        for asset in assets:
            r = client.get(asset)
            assert r.status_code == 200 and len(r.content) > 1000, asset
    assert "persistAuthorization" in client.get("/docs").text
