"""kill -9 of the API in the middle of a burst of writes: what was acknowledged is stored, nothing
is stored twice, and retries with the same Idempotency-Key complete the rest exactly once."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, tool_body
from tests.ledger_sql import REGISTERED, connect, registrations_by_slug, rows_of

UPDATED = "domain.tool:ToolUpdated"
WORKERS = 8
ACKS_BEFORE_KILL = 48

pytestmark = pytest.mark.slow


@dataclass
class Command:
    """One planned write, with the key a client would reuse when it retries."""

    kind: str  # "register" or "update"
    key: str
    slug: str = ""
    tool_id: str = ""
    marker: str = ""
    status: int | None = None  # None: no answer (the server died under it)
    answer: dict[str, Any] = field(default_factory=dict)

    def send(self, http: httpx.Client) -> httpx.Response:
        headers = {"Idempotency-Key": self.key}
        if self.kind == "register":
            return http.post("/api/v1/tools", json=tool_body(self.slug), headers=headers)
        return http.patch(
            f"/api/v1/tools/{self.tool_id}",
            json={"long_description": self.marker},
            headers=headers,
        )


def plan(prefix: str, tool_ids: list[str], per_worker: int) -> list[list[Command]]:
    """Each worker registers new tools and updates its own tool (so updates never race)."""
    work: list[list[Command]] = []
    for w in range(WORKERS):
        mine: list[Command] = []
        for i in range(per_worker):
            key = f"{prefix}-{w}-{i}"
            if i % 2:
                mine.append(
                    Command("update", key, tool_id=tool_ids[w], marker=f"{prefix}-m-{w}-{i}")
                )
            else:
                mine.append(Command("register", key, slug=f"{prefix}-{w}-{i}"))
        work.append(mine)
    return work


def burst(server: LiveServer, work: list[list[Command]]) -> None:
    """Runs the workers; kills the server once enough writes were acknowledged."""
    acked = threading.Semaphore(0)
    finished = threading.Event()

    def worker(commands: list[Command]) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for command in commands:
                try:
                    response = command.send(http)
                except httpx.TransportError:
                    return  # the server is gone; the rest stays unanswered
                command.status = response.status_code
                command.answer = response.json()
                if response.is_success:
                    acked.release()

    threads = [threading.Thread(target=worker, args=(c,)) for c in work]
    for t in threads:
        t.start()

    def killer() -> None:
        for _ in range(ACKS_BEFORE_KILL):
            if not acked.acquire(timeout=60):
                break
        server.kill()
        finished.set()

    k = threading.Thread(target=killer)
    k.start()
    for t in threads:
        t.join(120)
    k.join(120)
    assert finished.is_set()


def test_kill_9_mid_burst_loses_no_acknowledged_write_and_duplicates_nothing(
    live_server: LiveServer, database_url: str
) -> None:
    prefix = f"crash-{uuid.uuid4().hex[:8]}"
    tool_ids = []
    for w in range(WORKERS):
        created = httpx.post(
            f"{live_server.url}/api/v1/tools", json=tool_body(f"{prefix}-base-{w}")
        )
        assert created.status_code == 201, created.text
        tool_ids.append(created.json()["id"])
    work = plan(prefix, tool_ids, per_worker=16)
    commands = [c for mine in work for c in mine]

    burst(live_server, work)
    assert live_server.proc is not None
    assert live_server.proc.returncode == -9

    acknowledged = [c for c in commands if c.status is not None and 200 <= c.status < 300]
    unanswered = [c for c in commands if c.status is None]
    assert len(acknowledged) >= ACKS_BEFORE_KILL
    assert unanswered, "the kill came after the burst; nothing was in flight"
    assert all(c.status in (200, 201) for c in commands if c.status is not None)

    live_server.start()
    with connect(database_url) as db:
        # Every acknowledged write is in the store, at the version and position it was told.
        for c in acknowledged:
            topic = REGISTERED if c.kind == "register" else UPDATED
            stored = rows_of(db, c.answer["id"])
            assert (c.answer["version"], topic, c.answer["position"]) in stored, c
        # No registration is stored twice, and none that was acknowledged is missing.
        registered = registrations_by_slug(db, f"{prefix}-")
        assert all(len(ids) == 1 for ids in registered.values()), registered
        for c in acknowledged:
            if c.kind == "register":
                assert registered[c.slug] == [uuid.UUID(c.answer["id"])]
        # Each update's marker is stored at most once.
        assert all(n <= 1 for n in markers(db, prefix).values())

    # Clients retry what got no answer, with the same keys: afterwards everything is stored
    # exactly once, and retries of writes that did commit return the original result.
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        for c in unanswered:
            retry = c.send(http)
            assert retry.status_code in (200, 201), retry.text
            c.answer = retry.json()
        for c in acknowledged[:10]:
            again = c.send(http)
            assert again.json() == c.answer

    with connect(database_url) as db:
        registered = registrations_by_slug(db, f"{prefix}-")
        planned = {c.slug for c in commands if c.kind == "register"}
        assert planned <= set(registered)
        assert all(len(ids) == 1 for ids in registered.values())
        counts = markers(db, prefix)
        assert {c.marker for c in commands if c.kind == "update"} == set(counts)
        assert set(counts.values()) == {1}
        for tool_id in tool_ids:
            versions = [v for v, _, _ in rows_of(db, tool_id)]
            assert versions == list(range(1, len(versions) + 1))
            assert len(versions) == 1 + sum(
                1 for c in commands if c.kind == "update" and c.tool_id == tool_id
            )


def markers(db: Any, prefix: str) -> dict[str, int]:
    rows = db.execute(
        "SELECT convert_from(state, 'UTF8')::jsonb #>> '{changes,long_description}' AS marker, "
        "count(*) FROM ledger_events WHERE topic = %s "
        "AND convert_from(state, 'UTF8')::jsonb #>> '{changes,long_description}' LIKE %s "
        "GROUP BY marker",
        (UPDATED, f"{prefix}-m-%"),
    ).fetchall()
    return {m: int(n) for m, n in rows}
