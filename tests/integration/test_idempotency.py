"""Idempotency-Key: a retry returns the first result and stores nothing; the same key with another
request is refused; concurrent uses store one result; keys live in Postgres and survive restarts."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, tool_body
from tests.ledger_sql import REGISTERED, connect, count_topic_with_slug, event_count, rows_of

pytestmark = pytest.mark.backends("server", "embedded")


@pytest.fixture(scope="module")
def db(database_url: str):  # type: ignore[no-untyped-def]
    with connect(database_url) as conn:
        yield conn


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"key-{uuid.uuid4()}"}


def created(client: Any, **overrides: Any) -> dict[str, Any]:
    answer = client.post("/api/v1/tools", json=tool_body(**overrides))
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_retried_registration_returns_the_first_result_and_stores_nothing(client, db) -> None:  # type: ignore[no-untyped-def]
    body, headers = tool_body(), key()
    first = client.post("/api/v1/tools", json=body, headers=headers)
    assert first.status_code == 201, first.text
    before = event_count(db)
    for _ in range(3):
        again = client.post("/api/v1/tools", json=body, headers=headers)
        assert again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["etag"] == first.headers["etag"]
    assert event_count(db) == before
    assert count_topic_with_slug(db, REGISTERED, body["slug"]) == 1
    # Without the key, the same body is a second registration of the slug: refused.
    assert client.post("/api/v1/tools", json=body).json()["error"]["code"] == "slug_taken"


def test_same_key_with_a_different_body_is_refused(client, db) -> None:  # type: ignore[no-untyped-def]
    headers = key()
    assert client.post("/api/v1/tools", json=tool_body(), headers=headers).status_code == 201
    before = event_count(db)
    other = tool_body()
    answer = client.post("/api/v1/tools", json=other, headers=headers)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "idempotency_key_reused"
    assert event_count(db) == before
    assert client.get(f"/api/v1/tools/{other['slug']}").status_code == 404


def test_same_key_on_another_route_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    a, b = created(client), created(client)
    headers = key()
    assert client.post(f"/api/v1/tools/{a['id']}/activate", headers=headers).status_code == 200
    answer = client.post(f"/api/v1/tools/{b['id']}/activate", headers=headers)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "idempotency_key_reused"
    assert client.get(f"/api/v1/tools/{b['id']}").json()["tool"]["status"] == "draft"


def test_retried_patch_returns_the_first_result_even_after_later_changes(client, db) -> None:  # type: ignore[no-untyped-def]
    tool = created(client)
    headers = key()
    patch = {"description": "first change"}
    first = client.patch(f"/api/v1/tools/{tool['id']}", json=patch, headers=headers)
    assert first.status_code == 200
    assert first.json()["version"] == 2
    # Someone else changes the tool; the retry must not re-apply the old change as version 4.
    assert client.patch(f"/api/v1/tools/{tool['id']}", json={"description": "other"}).is_success
    again = client.patch(f"/api/v1/tools/{tool['id']}", json=patch, headers=headers)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert [v for v, _, _ in rows_of(db, tool["id"])] == [1, 2, 3]
    assert client.get(f"/api/v1/tools/{tool['id']}").json()["tool"]["description"] == "other"


@pytest.mark.parametrize("command", ["activate", "deprecate", "delete", "restore"])
def test_retried_status_commands_return_the_first_result(client, db, command) -> None:  # type: ignore[no-untyped-def]
    tool = created(client, status="active")
    base = f"/api/v1/tools/{tool['id']}"
    if command == "activate":
        client.post(f"{base}/deprecate")
    if command == "restore":
        client.delete(base)
    headers = key()

    def send() -> httpx.Response:
        if command == "delete":
            return client.delete(base, headers=headers)  # type: ignore[no-any-return]
        return client.post(f"{base}/{command}", headers=headers)  # type: ignore[no-any-return]

    first = send()
    assert first.status_code == 200, first.text
    stored = rows_of(db, tool["id"])
    again = send()
    # Without the key the repeat would be an illegal transition (409); with it, the first answer.
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert rows_of(db, tool["id"]) == stored
    assert (
        client.request(
            "DELETE" if command == "delete" else "POST",
            base if command == "delete" else f"{base}/{command}",
        ).json()["error"]["code"]
        == "illegal_transition"
    )


def test_a_key_whose_command_changed_nothing_is_still_bound_to_its_request(client, db) -> None:  # type: ignore[no-untyped-def]
    tool = created(client, name="Same")
    headers = key()
    noop = client.patch(f"/api/v1/tools/{tool['id']}", json={"name": "Same"}, headers=headers)
    assert noop.status_code == 200
    assert noop.json()["version"] == 1
    # The retry of the no-op returns the no-op, even after the name changed meanwhile ...
    assert client.patch(f"/api/v1/tools/{tool['id']}", json={"name": "Changed"}).is_success
    again = client.patch(f"/api/v1/tools/{tool['id']}", json={"name": "Same"}, headers=headers)
    assert again.json() == noop.json()
    # ... and the key cannot be reused for a different change.
    reused = client.patch(f"/api/v1/tools/{tool['id']}", json={"name": "Other"}, headers=headers)
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert [v for v, _, _ in rows_of(db, tool["id"])] == [1, 2]


def test_retried_batch_returns_the_first_result(client, db) -> None:  # type: ignore[no-untyped-def]
    prefix = f"idem-batch-{uuid.uuid4().hex[:8]}"
    body = {"tools": [tool_body(f"{prefix}-{i}") for i in range(70)]}  # two batches of 50
    headers = key()
    first = client.post("/api/v1/tools:batch", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["committed"] == 70
    before = event_count(db)
    again = client.post("/api/v1/tools:batch", json=body, headers=headers)
    assert again.json() == first.json()
    assert event_count(db) == before


def race(url: str, n: int, send: Any) -> list[httpx.Response]:
    barrier = threading.Barrier(n)
    answers: list[Any] = [None] * n

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            http.get("/health/live")
            barrier.wait()
            try:
                answers[i] = send(http)
            except BaseException as exc:
                answers[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(a, httpx.Response) for a in answers), answers
    return answers


def test_concurrent_uses_of_one_key_store_one_result(live_server: LiveServer, db) -> None:  # type: ignore[no-untyped-def]
    body, headers = tool_body(), key()
    answers = race(
        live_server.url, 12, lambda http: http.post("/api/v1/tools", json=body, headers=headers)
    )
    ok = [a for a in answers if a.status_code == 201]
    assert ok
    assert len({str(a.json()) for a in ok}) == 1
    assert all(a.status_code in (201, 409) for a in answers)
    assert count_topic_with_slug(db, REGISTERED, body["slug"]) == 1
    # Once settled, every retry gets the stored result.
    retry = httpx.post(f"{live_server.url}/api/v1/tools", json=body, headers=headers)
    assert retry.json() == ok[0].json()

    tool_id = ok[0].json()["id"]
    patch_headers = key()
    answers = race(
        live_server.url,
        12,
        lambda http: http.patch(
            f"/api/v1/tools/{tool_id}", json={"description": "once"}, headers=patch_headers
        ),
    )
    ok = [a for a in answers if a.status_code == 200]
    assert ok
    assert len({str(a.json()) for a in ok}) == 1
    assert all(a.status_code in (200, 409) for a in answers)
    assert [v for v, _, _ in rows_of(db, tool_id)] == [1, 2]


def test_keys_survive_a_server_restart(live_server: LiveServer, db) -> None:  # type: ignore[no-untyped-def]
    body, headers = tool_body(), key()
    first = httpx.post(f"{live_server.url}/api/v1/tools", json=body, headers=headers)
    assert first.status_code == 201
    row = db.execute(
        "SELECT results FROM ledger_idempotency WHERE key = %s", (headers["Idempotency-Key"],)
    ).fetchone()
    assert row is not None
    assert row[0][0]["id"] == first.json()["id"]

    live_server.kill()
    live_server.start()
    before = event_count(db)
    again = httpx.post(f"{live_server.url}/api/v1/tools", json=body, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    reused = httpx.post(f"{live_server.url}/api/v1/tools", json=tool_body(), headers=headers)
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert event_count(db) == before


def test_too_long_key_is_refused_by_name(client) -> None:  # type: ignore[no-untyped-def]
    answer = client.post("/api/v1/tools", json=tool_body(), headers={"Idempotency-Key": "k" * 201})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "idempotency-key"
