"""Schema-driven fuzzing (schemathesis) of every operation in the app's own OpenAPI schema, through
the ASGI app on the real database: no input may produce a 5xx."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.conftest import tool_body

pytestmark = pytest.mark.slow

KNOWN_SLUG = "fuzz-target-tool"


@pytest.fixture(scope="module")
def api_schema(container, client):  # type: ignore[no-untyped-def]
    from api.app import create_app

    # A real tool, so that fuzzed commands also run against an existing aggregate.
    answer = client.post("/api/v1/tools", json=tool_body(KNOWN_SLUG, status="active"))
    assert answer.status_code in (201, 409), answer.text
    container.read_side.follower.catch_up()
    # Fuzzed min_position values are mostly far ahead: answer those 503s quickly.
    settings = container.settings.model_copy(update={"read_wait_seconds": 0.05})
    app = create_app(dataclasses.replace(container, settings=settings))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


TOOLS, BATCH = "/api/v1/tools", "/api/v1/tools:batch"


def _fix(tool: Any) -> None:
    if isinstance(tool, dict):
        tool["slug"] = f"fuzz-{uuid.uuid4().hex[:16]}"
        tool["version"] = "1.0.0"


def registrable(case: schemathesis.Case) -> schemathesis.Case:
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("tools"), list):
        for tool in body["tools"]:
            _fix(tool)
    else:
        _fix(body)
    return case


MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
FUZZ = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


BEHIND = {"projection_behind", "position_not_reached"}


def no_server_error(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """No 5xx, except the 503 a read answers when `min_position` is not reached in time."""
    if response.status_code == 503 and response.json()["error"]["code"] in BEHIND:
        return None
    return not_a_server_error(ctx, response, case)


def fuzz(strategy: st.SearchStrategy[schemathesis.Case]) -> None:
    @FUZZ
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=[no_server_error])

    run()


def test_no_input_produces_a_server_error(api_schema) -> None:  # type: ignore[no-untyped-def]
    # (schemathesis' lazy pytest fixture loader does not work with this pytest version, so the
    # operations are driven here, each with its own bounded hypothesis run.)
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:
        has_input = any(
            (operation.path_parameters, operation.query, operation.headers, operation.body)
        )
        # Negative cases need something to break; an operation without input has none.
        modes = MODES if has_input else MODES[:1]
        runs = [(mode.value, operation.as_strategy(generation_mode=mode)) for mode in modes]
        if any(p.name == "ref" for p in operation.path_parameters):
            # The same fuzzing against a tool that exists (most generated refs are unknown).
            runs.append(("existing", operation.as_strategy(path_parameters={"ref": KNOWN_SLUG})))
        if operation.method.upper() == "POST" and operation.path in (TOOLS, BATCH):
            # Generated slugs and versions rarely pass the domain's rules; fixing just those lets
            # the rest of each generated tool (schemas, config, ...) reach the domain and store.
            runs.append(("registrable", operation.as_strategy().map(registrable)))
        for label, strategy in runs:
            try:
                fuzz(strategy)
            except Exception as exc:
                failures.append(f"{operation.label} [{label}]: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


def test_the_schema_documents_every_tool_route(api_schema) -> None:  # type: ignore[no-untyped-def]
    raw = api_schema.raw_schema
    paths = raw["paths"]
    assert set(paths["/api/v1/tools"]) == {"get", "post"}
    assert set(paths["/api/v1/tools/{ref}"]) == {"get", "patch", "delete"}
    for read in ("versions", "diff", "events"):
        assert set(paths[f"/api/v1/tools/{{ref}}/{read}"]) == {"get"}
    for action in ("activate", "deprecate", "restore"):
        assert set(paths[f"/api/v1/tools/{{ref}}/{action}"]) == {"post"}
    assert "get" in paths["/api/v1/tools/{ref}/events"]
    assert "post" in paths["/api/v1/tools:batch"]
    batch_body = paths["/api/v1/tools:batch"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/yaml"} <= set(batch_body)
    for status in ("409", "422"):
        assert status in paths["/api/v1/tools"]["post"]["responses"]
