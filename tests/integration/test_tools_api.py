"""The tool command API against a real Postgres."""

from __future__ import annotations

from tests.conftest import tool_body


def test_register_then_read_back(client) -> None:
    body = tool_body()
    created = client.post("/api/v1/tools", json=body, headers={"X-Request-ID": "req-abc"})
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert created.headers["x-request-id"] == "req-abc"
    got = client.get(f"/api/v1/tools/{body['slug']}").json()
    assert got["id"] == created.json()["id"]
    assert got["tool"]["name"] == body["name"]
    events = client.get(f"/api/v1/tools/{body['slug']}/events").json()["items"]
    assert [e["type"] for e in events] == ["ToolRegistered"]
    assert events[0]["correlation_id"] == "req-abc"


def test_second_registration_of_a_slug_conflicts(client) -> None:
    body = tool_body()
    assert client.post("/api/v1/tools", json=body).status_code == 201
    again = client.post("/api/v1/tools", json=body)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "slug_taken"
