"""The current-state and history projections fed by the in-process driver (real Postgres)."""

from __future__ import annotations

import pytest

from infra.postgres.read_side import ReadSide
from tests.conftest import tool_body

pytestmark = pytest.mark.backends("server", "embedded")


@pytest.fixture(scope="module")
def read_side(container):  # type: ignore[no-untyped-def]
    side = ReadSide(container.store)
    yield side
    side.close()


def _row(read_side: ReadSide, sql: str, *args: object) -> dict | None:  # type: ignore[type-arg]
    with read_side.connection() as conn:
        return conn.execute(sql, args).fetchone()


def test_tool_lifecycle_reaches_current_state_and_history(client, read_side) -> None:
    body = tool_body(config={"api_token": "s3cr3t", "region": "eu"})
    tool_id = client.post("/api/v1/tools", json=body).json()["id"]
    client.patch(f"/api/v1/tools/{tool_id}", json={"version": "1.1.0", "tags": ["b", "a"]})
    client.post(f"/api/v1/tools/{tool_id}/activate")
    client.delete(f"/api/v1/tools/{tool_id}")
    read_side.follower.catch_up()

    row = _row(read_side, "SELECT * FROM rm_tools WHERE id = %s", tool_id)
    assert row is not None
    assert (row["aggregate_version"], row["semver"], row["status"]) == (4, "1.1.0", "active")
    assert row["tags"] == ["a", "b"]
    assert row["deleted_at"] is not None
    assert row["doc"]["config"] == {"api_token": "***", "region": "eu"}

    with read_side.connection() as conn:
        history = conn.execute(
            "SELECT version, event_type, patch FROM rm_history WHERE aggregate_id = %s "
            "ORDER BY version",
            (tool_id,),
        ).fetchall()
    assert [h["event_type"] for h in history] == [
        "ToolRegistered", "ToolUpdated", "ToolStatusChanged", "ToolDeleted",
    ]  # fmt: skip
    assert {"op": "replace", "path": "/version", "value": "1.1.0"} in history[1]["patch"]
    assert history[3]["patch"] == [{"op": "replace", "path": "/deleted", "value": True}]


def test_replaying_the_log_again_changes_nothing(client, read_side) -> None:
    tool_id = client.post("/api/v1/tools", json=tool_body()).json()["id"]
    read_side.follower.catch_up()
    records = read_side.records_after(0, 100_000)
    with read_side.connection() as conn:
        outcome = read_side.runner.apply(conn, records, ("log", records[-1].position))
    assert outcome.applied == 0
    assert outcome.skipped > 0
    row = _row(read_side, "SELECT aggregate_version FROM rm_tools WHERE id = %s", tool_id)
    assert row == {"aggregate_version": 1}


def test_read_models_keep_the_schema_exactly_as_registered(client, read_side) -> None:
    schema = {
        "type": "object",
        "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}, "mid": {}},
        "required": ["zeta"],
    }
    body = tool_body(input_schema=schema, examples=[{"n": 53414166357636897}])
    tool_id = client.post("/api/v1/tools", json=body).json()["id"]
    read_side.follower.catch_up()
    got = client.get(f"/api/v1/tools/{tool_id}").json()["tool"]
    assert list(got["input_schema"]["properties"]) == ["zeta", "alpha", "mid"]
    assert got["examples"] == [{"n": 53414166357636897}]
    versions = client.get(f"/api/v1/tools/{tool_id}/versions?include_snapshot=true").json()
    first = versions["items"][0]["snapshot"]
    assert list(first["input_schema"]["properties"]) == ["zeta", "alpha", "mid"]
