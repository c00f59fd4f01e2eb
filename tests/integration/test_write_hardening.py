"""Write-side edge cases: NUL characters, nested credentials, one Idempotency-Key raced."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from tests.conftest import tool_body

pytestmark = pytest.mark.backends("server", "embedded")


def test_nul_character_is_refused_with_the_field_named(client) -> None:
    body = tool_body(description="bad\u0000text")
    response = client.post("/api/v1/tools", json=body)
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["description"]
    nested = client.post("/api/v1/tools", json=tool_body(config={"a": {"b": ["x\u0000"]}}))
    assert nested.status_code == 422
    assert nested.json()["error"]["details"][0]["field"] == "config"


def test_nested_credentials_are_sealed_and_redacted(client, database_url) -> None:
    token, password = f"tok-{uuid.uuid4().hex}", f"pw-{uuid.uuid4().hex}"
    config = {"auth": {"token": token, "user": "svc"}, "servers": [{"password": password}]}
    created = client.post("/api/v1/tools", json=tool_body(config=config))
    assert created.status_code == 201, created.text
    tool_id = created.json()["id"]
    with psycopg.connect(database_url) as conn:
        raw = b"".join(
            bytes(r[0])
            for r in conn.execute(
                "SELECT state FROM ledger_events WHERE originator_id = %s", (tool_id,)
            )
        )
    assert token.encode() not in raw
    assert password.encode() not in raw
    events = client.get(f"/api/v1/tools/{tool_id}/events").json()["items"]
    stored = events[0]["data"]["config"]
    assert stored == {"auth": {"token": "***", "user": "svc"}, "servers": [{"password": "***"}]}

    # Sending the placeholder back keeps the sealed value; a real change re-seals.
    same = client.patch(f"/api/v1/tools/{tool_id}", json={"config": stored})
    assert same.json()["version"] == 1
    changed = {**stored, "auth": {"token": "new-token", "user": "svc"}}
    assert client.patch(f"/api/v1/tools/{tool_id}", json={"config": changed}).json()["version"] == 2


def test_concurrent_registrations_with_one_key_all_get_the_first_result(client) -> None:
    body = tool_body()
    key = f"key-{uuid.uuid4().hex}"
    answers: list[tuple[int, dict]] = []  # type: ignore[type-arg]
    barrier = threading.Barrier(8)

    def register() -> None:
        barrier.wait()
        r = client.post("/api/v1/tools", json=body, headers={"Idempotency-Key": key})
        answers.append((r.status_code, r.json()))

    threads = [threading.Thread(target=register) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {status for status, _ in answers} == {201}
    assert len({a["id"] for _, a in answers}) == 1
