"""The tool command API against a real Postgres."""

from __future__ import annotations

import pytest

from tests.conftest import tool_body

pytestmark = pytest.mark.backends("server", "embedded")


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


def test_writes_and_reads_carry_the_version_as_etag(client) -> None:
    created = client.post("/api/v1/tools", json=tool_body())
    assert created.headers["etag"] == '"1"'
    tool_id = created.json()["id"]
    patched = client.patch(f"/api/v1/tools/{tool_id}", json={"name": "Renamed"})
    assert patched.headers["etag"] == '"2"'
    assert client.get(f"/api/v1/tools/{tool_id}").headers["etag"] == '"2"'
    assert client.get(f"/api/v1/tools/{tool_id}", params={"at_version": 1}).headers["etag"] == '"1"'


@pytest.mark.parametrize("if_match", ['"1"', "1", 'W/"1"'])
def test_if_match_forms_are_accepted(client, if_match) -> None:
    tool_id = client.post("/api/v1/tools", json=tool_body()).json()["id"]
    answer = client.patch(
        f"/api/v1/tools/{tool_id}", json={"name": "B"}, headers={"If-Match": if_match}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 2


def test_stale_versions_are_refused_and_store_nothing(client) -> None:
    tool_id = client.post("/api/v1/tools", json=tool_body()).json()["id"]
    assert client.patch(f"/api/v1/tools/{tool_id}", json={"name": "B"}).status_code == 200
    stale_header = client.patch(
        f"/api/v1/tools/{tool_id}", json={"name": "C"}, headers={"If-Match": '"1"'}
    )
    assert stale_header.status_code == 412
    assert stale_header.json()["error"]["code"] == "precondition_failed"
    stale_query = client.post(f"/api/v1/tools/{tool_id}/activate", params={"expected_version": 1})
    assert stale_query.status_code == 409
    assert stale_query.json()["error"]["code"] == "version_conflict"
    assert "current version is 2" in stale_query.json()["error"]["message"]
    events = client.get(f"/api/v1/tools/{tool_id}/events").json()["items"]
    assert [e["version"] for e in events] == [1, 2]


def test_a_malformed_if_match_is_a_400_naming_the_header(client) -> None:
    tool_id = client.post("/api/v1/tools", json=tool_body()).json()["id"]
    answer = client.patch(
        f"/api/v1/tools/{tool_id}", json={"name": "B"}, headers={"If-Match": "abc"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["details"] == [
        {"field": "If-Match", "message": "not a version number"}
    ]


def test_actor_and_reason_are_recorded(client) -> None:
    headers = {"X-Actor": "alice@example.org", "X-Reason": "ticket OPS-42"}
    tool_id = client.post("/api/v1/tools", json=tool_body(), headers=headers).json()["id"]
    client.delete(f"/api/v1/tools/{tool_id}", headers={"X-Actor": "bob"})
    first, second = client.get(f"/api/v1/tools/{tool_id}/events").json()["items"]
    assert (first["actor"], first["reason"]) == ("alice@example.org", "ticket OPS-42")
    assert (second["actor"], second["reason"], second["type"]) == ("bob", None, "ToolDeleted")


def test_soft_delete_keeps_the_tool_and_its_history(client) -> None:
    body = tool_body(status="active")
    tool_id = client.post("/api/v1/tools", json=body).json()["id"]
    assert client.delete(f"/api/v1/tools/{tool_id}").json()["version"] == 2
    got = client.get(f"/api/v1/tools/{body['slug']}").json()
    assert (got["tool"]["deleted"], got["tool"]["status"]) == (True, "active")
    refused = client.patch(f"/api/v1/tools/{tool_id}", json={"name": "x"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "illegal_transition"
    # The slug stays taken while deleted; restore brings the tool back as it was.
    assert client.post("/api/v1/tools", json=body).json()["error"]["code"] == "slug_taken"
    assert client.post(f"/api/v1/tools/{tool_id}/restore").json()["version"] == 3
    assert client.get(f"/api/v1/tools/{tool_id}").json()["tool"]["deleted"] is False
    types = [e["type"] for e in client.get(f"/api/v1/tools/{tool_id}/events").json()["items"]]
    assert types == ["ToolRegistered", "ToolDeleted", "ToolRestored"]


def test_lifecycle_draft_active_deprecated_active(client) -> None:
    tool_id = client.post("/api/v1/tools", json=tool_body()).json()["id"]
    base = f"/api/v1/tools/{tool_id}"
    assert client.post(f"{base}/deprecate").json()["error"]["code"] == "illegal_transition"
    for action, status in [
        ("activate", "active"),
        ("deprecate", "deprecated"),
        ("activate", "active"),
    ]:
        assert client.post(f"{base}/{action}").status_code == 200
        assert client.get(base).json()["tool"]["status"] == status
    changes = [
        (e["data"]["old_status"], e["data"]["new_status"])
        for e in client.get(f"{base}/events").json()["items"][1:]
    ]
    assert changes == [("draft", "active"), ("active", "deprecated"), ("deprecated", "active")]
