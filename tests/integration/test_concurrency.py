"""Optimistic concurrency and slug uniqueness under real concurrent requests to a live server."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, tool_body
from tests.ledger_sql import REGISTERED, SLUG_CLAIMED, connect, count_topic_with_slug, rows_of

pytestmark = pytest.mark.backends("server", "embedded")

THREADS = 16


@pytest.fixture(scope="module")
def server(database_url: str, secret_key: str, tmp_path_factory, container) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    live = LiveServer(database_url, secret_key, tmp_path_factory.mktemp("api") / "api.log")
    yield live.start()
    live.stop()


@pytest.fixture(scope="module")
def db(database_url: str):  # type: ignore[no-untyped-def]
    with connect(database_url) as conn:
        yield conn


def in_parallel(
    base_url: str, request: Callable[[httpx.Client, int], httpx.Response], n: int = THREADS
) -> list[httpx.Response]:
    """Runs `request` on n threads, each with its own warmed-up connection, released together."""
    barrier = threading.Barrier(n)
    answers: list[httpx.Response | BaseException | None] = [None] * n

    def worker(i: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            http.get("/health/live")  # open the connection before the race starts
            barrier.wait()
            try:
                answers[i] = request(http, i)
            except BaseException as exc:  # reported below, not swallowed
                answers[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    failures = [a for a in answers if not isinstance(a, httpx.Response)]
    assert not failures, failures
    return [a for a in answers if isinstance(a, httpx.Response)]


def register(server: LiveServer, **overrides: Any) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/api/v1/tools", json=tool_body(**overrides), timeout=10)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def read_back(server: LiveServer, container: Any, ref: str, position: int) -> dict[str, Any]:
    """The live server runs no projections (no --follow-log): catch them up here, then read
    with the write's position."""
    container.read_side.follower.catch_up()
    answer = httpx.get(f"{server.url}/api/v1/tools/{ref}", params={"min_position": position})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_expected_version_lets_exactly_one_writer_win(server, db, container) -> None:  # type: ignore[no-untyped-def]
    tool = register(server)
    answers = in_parallel(
        server.url,
        lambda http, i: http.patch(
            f"/api/v1/tools/{tool['id']}",
            params={"expected_version": 1},
            json={"name": f"writer {i}"},
        ),
    )
    assert Counter(a.status_code for a in answers) == {200: 1, 409: THREADS - 1}
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {
        "version_conflict"
    }
    (winner,) = [a for a in answers if a.status_code == 200]
    assert winner.json()["version"] == 2
    assert [v for v, _, _ in rows_of(db, tool["id"])] == [1, 2]
    stored = read_back(server, container, tool["id"], winner.json()["position"])
    winner_index = answers.index(winner)
    assert stored["tool"]["name"] == f"writer {winner_index}"
    assert stored["position"] == winner.json()["position"]


def test_if_match_lets_exactly_one_writer_win_and_the_rest_get_412(server, db) -> None:  # type: ignore[no-untyped-def]
    tool = register(server)
    answers = in_parallel(
        server.url,
        lambda http, i: http.patch(
            f"/api/v1/tools/{tool['id']}",
            headers={"If-Match": '"1"'},
            json={"description": f"writer {i}"},
        ),
    )
    assert Counter(a.status_code for a in answers) == {200: 1, 412: THREADS - 1}
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 412} == {
        "precondition_failed"
    }
    assert [v for v, _, _ in rows_of(db, tool["id"])] == [1, 2]


def test_status_commands_race_with_one_winner(server, db) -> None:  # type: ignore[no-untyped-def]
    tool = register(server)
    answers = in_parallel(
        server.url, lambda http, i: http.post(f"/api/v1/tools/{tool['id']}/activate")
    )
    # Losers either saw the tool already active (illegal transition) or lost the append race.
    assert Counter(a.status_code for a in answers)[200] == 1
    assert {a.json()["error"]["code"] for a in answers if a.status_code != 200} <= {
        "illegal_transition",
        "version_conflict",
    }
    assert [v for v, _, _ in rows_of(db, tool["id"])] == [1, 2]


def test_blind_concurrent_updates_lose_nothing(server, db) -> None:  # type: ignore[no-untyped-def]
    # Without an expected version, every writer that gets 200 must have its event stored; the
    # others are told they lost (409), never silently overwritten.
    tool = register(server)
    answers = in_parallel(
        server.url,
        lambda http, i: http.patch(
            f"/api/v1/tools/{tool['id']}", json={"long_description": f"writer {i}"}
        ),
    )
    ok = [a for a in answers if a.status_code == 200]
    assert {a.status_code for a in answers} <= {200, 409}
    assert ok
    rows = rows_of(db, tool["id"])
    assert [v for v, _, _ in rows] == list(range(1, len(ok) + 2))
    assert sorted((a.json()["version"], a.json()["position"]) for a in ok) == [
        (v, p) for v, _, p in rows[1:]
    ]


def test_one_slug_is_registered_exactly_once(server, db, container) -> None:  # type: ignore[no-untyped-def]
    slug = f"race-{uuid.uuid4().hex[:12]}"
    answers = in_parallel(
        server.url,
        lambda http, i: http.post("/api/v1/tools", json=tool_body(slug, name=f"creator {i}")),
    )
    assert Counter(a.status_code for a in answers) == {201: 1, 409: THREADS - 1}
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"slug_taken"}
    assert count_topic_with_slug(db, REGISTERED, slug) == 1
    assert count_topic_with_slug(db, SLUG_CLAIMED, slug) == 1
    (winner,) = [a for a in answers if a.status_code == 201]
    stored = read_back(server, container, slug, winner.json()["position"])
    assert stored["id"] == winner.json()["id"]
    assert stored["tool"]["name"] == f"creator {answers.index(winner)}"


def test_distinct_registrations_all_succeed_in_parallel(server, db) -> None:  # type: ignore[no-untyped-def]
    prefix = f"par-{uuid.uuid4().hex[:8]}"
    answers = in_parallel(
        server.url, lambda http, i: http.post("/api/v1/tools", json=tool_body(f"{prefix}-{i}"))
    )
    assert [a.status_code for a in answers] == [201] * THREADS
    positions = [a.json()["position"] for a in answers]
    assert len(set(positions)) == THREADS
    for i in range(THREADS):
        assert count_topic_with_slug(db, REGISTERED, f"{prefix}-{i}") == 1


def test_server_log_has_no_errors(server) -> None:  # type: ignore[no-untyped-def]
    # Conflicts are answers, not failures: the races above must not log unhandled errors.
    log = Path(server.log_path).read_text()
    assert "unhandled_error" not in log
    assert "Traceback" not in log
