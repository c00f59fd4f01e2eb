"""Usage analytics against a real Postgres and a real Redis: counts, errors and percentiles from
known latencies; duplicates, late events and concurrent projectors counted once; Redis as a
cache that copes with being lost or down; the embedded emitter path; and the API route."""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis as redis_lib
from psycopg.rows import dict_row

from infra.redis_client import RedisHandle
from infra.usage.emitter import UsageEvent, digest_arguments
from infra.usage.sinks import usage_stats_for
from projections import analytics
from projections.analytics import (
    Cell,
    UsageCache,
    apply_usage,
    cache_namespace,
    usage_stats,
)
from projections.usage_histogram import GROWTH, Histogram
from tests.conftest import free_port
from tests.kafka_pipeline_support import fresh_database

BASE = datetime(2031, 3, 1, 12, 30, 15, tzinfo=UTC)
TOLERANCE = math.sqrt(GROWTH)  # a percentile is within half a bucket of the truth


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        pytest.exit("no Redis for the tests: run ./scripts/test or set REDIS_URL", returncode=2)
    return url


@pytest.fixture(scope="module")
def usage_db() -> Iterator[str]:
    with fresh_database("usage") as url:
        yield url


@pytest.fixture(scope="module")
def container(usage_db: str, redis_url: str, secret_key: str, tmp_path_factory):  # type: ignore[no-untyped-def]
    from infra.container import build_container
    from infra.settings import load_settings

    settings = load_settings(
        database_url=usage_db,
        secret_key=secret_key,
        data_dir=tmp_path_factory.mktemp("usage-data"),
        read_feed="log",
        redis_url=redis_url,
        usage_sink="local",
        vectors="off",
        auth="off",  # access control is tested in test_access_control.py
        rate_limit="off",
    )
    c = build_container(settings)
    yield c
    c.close()


@pytest.fixture
def conn(container) -> Iterator[psycopg.Connection[Any]]:  # type: ignore[no-untyped-def]
    with container.read_side.connection() as connection:
        yield connection


@pytest.fixture(scope="module")
def redis(redis_url: str) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


_slots = iter(range(1, 1000))


@pytest.fixture
def now() -> datetime:
    """A moment of this test's own: windows of different tests never overlap."""
    return BASE + timedelta(days=40 * next(_slots))


def usage(
    tool: str, latency: float, status: str = "ok", client: str = "agent-a", **kw: Any
) -> UsageEvent:
    return UsageEvent(
        tool=tool,
        surface="mcp",
        arguments_digest=digest_arguments({"q": "x"}),
        result_ids=[],
        latency_ms=latency,
        status=status,
        client_id=client,
        **kw,
    )


def at(moment: datetime, **kw: Any) -> dict[str, Any]:
    return {"occurred_at": moment.isoformat(), **kw}


def without_source(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k != "source"}


def close_to(estimate: float | None, truth: float) -> bool:
    return estimate is not None and truth / TOLERANCE <= estimate <= truth * TOLERANCE


def test_n_events_report_n_calls_errors_and_percentiles(
    conn: psycopg.Connection[Any], redis: redis_lib.Redis, now: datetime
) -> None:
    events = [
        usage("get_tool", float(ms), "error" if ms % 10 == 0 else "ok",
              client="agent-a" if ms % 2 else "agent-b", **at(now - timedelta(seconds=ms * 20)))
        for ms in range(1, 101)
    ] + [usage("search_tools", 5.0, **at(now)) for _ in range(30)]  # fmt: skip
    outcome = apply_usage(conn, events, now=now)
    assert (outcome.applied, outcome.duplicates, outcome.too_late) == (130, 0, 0)

    hot = usage_stats(conn, redis, window="1h", now=now)
    cold = usage_stats(conn, None, window="1h", now=now)
    assert hot["source"] == "redis"
    assert cold["source"] == "postgres"
    assert without_source(hot) == without_source(cold)
    assert (hot["calls"], hot["errors"]) == (130, 10)
    assert [t["tool"] for t in hot["top_tools"]] == ["get_tool", "search_tools"]

    one = usage_stats(conn, redis, tool="get_tool", window="1h", now=now)
    assert (one["calls"], one["errors"], one["error_rate"]) == (100, 10, 0.1)
    assert close_to(one["latency_ms"]["p50"], 50)
    assert close_to(one["latency_ms"]["p95"], 95)
    assert one["latency_ms"]["max"] == 100
    assert one["latency_ms"]["mean"] == 50.5

    b = usage_stats(conn, redis, tool="get_tool", client="agent-b", window="1h", now=now)
    assert (b["calls"], b["errors"]) == (50, 10)  # the even latencies, every 10th an error
    assert close_to(b["latency_ms"]["p50"], 50)

    for window in ("24h", "7d", "30d"):  # the same events summed from the hourly rows
        longer = usage_stats(conn, redis, tool="get_tool", window=window, now=now)
        assert (longer["calls"], longer["latency_ms"]) == (100, one["latency_ms"]), window
    assert usage_stats(conn, redis, window="7d", now=now)["source"] == "postgres"
    assert usage_stats(conn, redis, window="24h", now=now)["source"] == "redis"
    assert usage_stats(conn, redis, tool="nothing", window="1h", now=now)["calls"] == 0


def test_duplicates_count_once(conn: psycopg.Connection[Any], now: datetime) -> None:
    events = [usage("get_tool", 3.0, **at(now)) for _ in range(20)]
    first = apply_usage(conn, events + events[:5], now=now)  # repeats inside one batch
    again = apply_usage(conn, events, now=now)  # a redelivered batch
    assert (first.applied, first.duplicates) == (20, 5)
    assert (again.applied, again.duplicates, again.rows) == (0, 20, [])
    assert usage_stats(conn, None, window="1h", now=now)["calls"] == 20


def test_late_events_land_in_their_window_and_too_late_ones_are_refused(
    conn: psycopg.Connection[Any], redis: redis_lib.Redis, now: datetime
) -> None:
    writer = analytics.CacheWriter(redis)  # what the projection runs after each commit
    writer.after_commit(conn, apply_usage(conn, [usage("get_tool", 1.0, **at(now))], now=now).rows)
    assert usage_stats(conn, redis, window="1h", now=now)["calls"] == 1  # cache filled
    late = usage("get_tool", 2.0, **at(now - timedelta(minutes=30)))
    too_late = usage("get_tool", 2.0, **at(now - analytics.LATE_LIMIT - timedelta(minutes=1)))
    future = usage("get_tool", 2.0, **at(now + timedelta(days=1)))  # a skewed clock: counts now
    outcome = apply_usage(conn, [late, too_late, future], now=now)
    writer.after_commit(conn, outcome.rows)
    assert (outcome.applied, outcome.too_late) == (2, 1)
    # The late event reached the already cached window through its copy.
    hot = usage_stats(conn, redis, window="1h", now=now + analytics.FUTURE_SKEW)
    assert hot["source"] == "redis"
    assert hot["calls"] == 3
    assert without_source(hot) == without_source(
        usage_stats(conn, None, window="1h", now=now + analytics.FUTURE_SKEW)
    )
    rows = conn.execute(
        "SELECT window_start FROM usage_stats WHERE window_size = '1m' AND window_start = %s",
        (analytics.window_start(late_time := now - timedelta(minutes=30), "1m"),),
    ).fetchall()
    assert len(rows) == 1, late_time


def test_concurrent_projectors_with_overlapping_batches_count_each_event_once(  # type: ignore[no-untyped-def]
    container, now: datetime
) -> None:
    events = [usage(f"tool-{i % 7}", float(i % 50 + 1), **at(now)) for i in range(2000)]
    errors: list[BaseException] = []

    def project(batch: list[UsageEvent]) -> None:
        try:
            with container.read_side.connection() as c:
                for i in range(0, len(batch), 100):
                    apply_usage(c, batch[i : i + 100], now=now)
        except BaseException as exc:
            errors.append(exc)

    # Four "projectors": two get everything (a redelivery), two get halves, in other orders.
    threads = [threading.Thread(target=project, args=(b,)) for b in
               (events, events[::-1], events[::2], events[1::2])]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with container.read_side.connection() as c:
        stats = usage_stats(c, None, window="1h", now=now)
    assert stats["calls"] == 2000
    assert {t["tool"]: t["calls"] for t in stats["top_tools"]} == {
        f"tool-{k}": len(range(k, 2000, 7)) for k in range(7)
    }


def test_redis_lost_is_refilled_from_postgres(
    conn: psycopg.Connection[Any], redis: redis_lib.Redis, now: datetime
) -> None:
    apply_usage(conn, [usage("get_tool", 7.0, **at(now)) for _ in range(12)], now=now)
    before = usage_stats(conn, redis, window="1h", now=now)
    namespace = cache_namespace(conn)
    keys = list(redis.scan_iter(match=f"{namespace}:*", count=1000))
    assert keys
    redis.delete(*keys)  # an eviction, a flush, a restarted Redis
    after = usage_stats(conn, redis, window="1h", now=now)
    assert after == before
    assert after["source"] == "redis"
    assert list(redis.scan_iter(match=f"{namespace}:*", count=1000))


def test_redis_down_answers_from_postgres_and_counts_the_failure(
    conn: psycopg.Connection[Any], now: datetime
) -> None:
    apply_usage(conn, [usage("get_tool", 7.0, "error", **at(now)) for _ in range(4)], now=now)
    down = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    failures = analytics.metrics.redis_failures
    stats = usage_stats(conn, down, window="1h", now=now)
    assert stats["source"] == "postgres"
    assert (stats["calls"], stats["errors"]) == (4, 4)
    assert analytics.metrics.redis_failures == failures + 1
    # Through a handle, the failure starts a cool-down: the next reads skip Redis at once.
    handle = RedisHandle(f"redis://127.0.0.1:{free_port()}/0", cooldown=60)
    assert usage_stats(conn, handle, window="1h", now=now)["source"] == "postgres"
    assert handle.failures == 1
    assert handle.client() is None
    # The projection's copy fails too, without failing the batch.
    writer = analytics.CacheWriter(down)
    writer.after_commit(conn, [])
    assert analytics.metrics.redis_failures == failures + 3


def test_copies_never_go_backwards(conn: psycopg.Connection[Any], redis: redis_lib.Redis) -> None:
    cache = UsageCache(redis, f"test-{uuid.uuid4().hex}")
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    newer = Cell("1m", start, "t", "c", 5, 1, Histogram.of([1, 2, 3, 4, 5]))
    older = Cell("1m", start, "t", "c", 3, 0, Histogram.of([1, 2, 3]))
    cache.store([newer])
    cache.store([older])  # a slower projector's copy of an earlier state arrives last
    cache.fill("1m", {start: [older]})  # so does a reader's older snapshot
    [cells] = cache.read("1m", [start]).values()
    assert cells is not None
    assert [(c.calls, c.errors) for c in cells] == [(5, 1)]
    assert 0 < redis.ttl(f"{cache.namespace}:1m:{int(start.timestamp())}") <= 2 * 3600 + 300


def test_embedded_emitter_feeds_the_same_projection(container) -> None:  # type: ignore[no-untyped-def]
    tool = f"tool-{uuid.uuid4().hex[:8]}"
    for i in range(250):
        container.usage.emit(usage(tool, float(i % 25 + 1), "error" if i < 5 else "ok"))
    assert container.usage.flush(30)
    assert container.usage.dropped == 0
    stats = usage_stats_for(container, tool=tool)
    assert (stats["calls"], stats["errors"], stats["source"]) == (250, 5, "redis")
    again = usage_stats_for(container, tool=tool)  # a second read, all from the cache
    assert (again["calls"], again["latency_ms"]) == (250, stats["latency_ms"])


def test_the_api_route_serves_the_query_functions_numbers(container) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from api.app import create_app

    tool = f"tool-{uuid.uuid4().hex[:8]}"
    for i in range(40):
        container.usage.emit(usage(tool, float(i + 1), client="agent-x" if i % 4 else "agent-y"))
    assert container.usage.flush(30)
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        for params in ({"tool": tool}, {"tool": tool, "client": "agent-y", "window": "24h"},
                       {"tool": tool, "window": "7d"}, {}):  # fmt: skip
            response = client.get("/api/v1/analytics/usage", params=params)
            assert response.status_code == 200, response.text
            expected = usage_stats_for(container, params.get("tool"), params.get("window", "1h"),
                                       params.get("client"))  # fmt: skip
            body = response.json()
            moments = ("from", "to")  # two reads, two "now"s
            assert {k: v for k, v in body.items() if k not in moments} == {
                k: v for k, v in expected.items() if k not in moments
            }
        assert client.get("/api/v1/analytics/usage", params={"tool": tool}).json()["calls"] == 40
        bad = client.get("/api/v1/analytics/usage", params={"window": "2h"})
        assert bad.status_code == 422
        assert "window" in bad.text


def test_prune_forgets_old_ids_and_minute_rows(
    conn: psycopg.Connection[Any], now: datetime
) -> None:
    apply_usage(conn, [usage("get_tool", 1.0, **at(now))], now=now)
    later = now + analytics.LATE_LIMIT + analytics.MINUTE_ROWS_KEPT + timedelta(hours=2)
    ids, minute_rows = analytics.prune(conn, now=later)
    assert ids >= 1
    assert minute_rows >= 1
    with conn.cursor(row_factory=dict_row) as cur:
        left = cur.execute(
            "SELECT window_size FROM usage_stats WHERE window_start >= %s AND window_start < %s",
            (now - timedelta(hours=1), now + timedelta(hours=1)),
        ).fetchall()
    assert {r["window_size"] for r in left} == {"1h"}  # the hourly history is kept
