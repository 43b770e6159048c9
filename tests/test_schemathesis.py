"""The API against its own OpenAPI document: generated requests (schemathesis) to every
operation of a real server never get a 5xx, an undocumented status, nor a response that
breaks the document."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from agentyard.testing.harness import API_KEY, ServerProcess, server_env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("yard")
    commands = {"echo": {"argv": ["sh", "-c", "echo hi"]}}
    env = server_env(data, {"AGENTYARD_COMMANDS": json.dumps(commands)})
    proc = ServerProcess(data, env).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api_schema(server: ServerProcess) -> Any:
    # Streams would follow a live run for as long as it lasts; they have their own tests.
    loaded = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    return loaded.exclude(path_regex="stream")


schema = schemathesis.pytest.from_fixture("api_schema")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TRANSPORT = {
    "content-length", "transfer-encoding", "connection", "host", "te", "trailer", "upgrade"
}  # fmt: skip


def _http_headers(headers: dict[str, Any] | None) -> dict[str, Any] | None:
    """The generated headers that can stand in an HTTP request: a name that is no token
    (``n;``) or a transport header (``Transfer-Encoding: Scunthorpe``) makes the request
    malformed, and the server's HTTP parser answers it with its own plain-text 400 before
    the API (and its document) is reached."""
    if headers is None:
        return None
    return {
        name: value
        for name, value in headers.items()
        if _TOKEN.fullmatch(name)
        and name.lower() not in _TRANSPORT
        and not any(c in str(value) for c in "\r\n\x00")
    }


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_document(case: Any) -> None:
    case.headers = _http_headers(case.headers)
    response = case.call(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    # What the document promises about answers. Not checked: that every request the
    # document allows is accepted (the server's rules are stricter than a JSON schema says,
    # e.g. a status filter must name a status) and 405 answers to methods it does not
    # declare.
    case.validate_response(
        response,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
        ],
    )
