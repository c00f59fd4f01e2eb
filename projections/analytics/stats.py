"""The query: calls, errors, latency percentiles and top tools over a window, from Redis when it
has the windows, else from Postgres."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from psycopg import Connection
from psycopg.rows import dict_row

from projections.analytics.cache import UsageCache, cache_namespace
from projections.analytics.counting import Cell, cell_from_row
from projections.analytics.windows import SIZES, TOP_TOOLS, WINDOWS, metrics, window_start
from projections.usage_histogram import Histogram

log = structlog.get_logger("analytics")

# --- the query ------------------------------------------------------------------------------------


class UnknownWindow(ValueError):
    def __init__(self, window: str) -> None:
        super().__init__(f"window {window!r} is not one of {', '.join(WINDOWS)}")


def _load(
    conn: Connection[Any], size: str, starts: Sequence[datetime]
) -> dict[datetime, list[Cell]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT window_size, window_start, tool, client, calls, errors, latency_sum_ms, "
            "latency_min_ms, latency_max_ms, buckets FROM usage_stats "
            "WHERE window_size = %s AND window_start = ANY(%s)",
            (size, list(starts)),
        ).fetchall()
    out: dict[datetime, list[Cell]] = {start: [] for start in starts}
    for row in rows:
        cell = cell_from_row(row)
        out.setdefault(cell.start, []).append(cell)
    return out


def _from_redis(conn: Connection[Any], redis: Any, size: str, starts: list[datetime]) -> list[Cell]:
    cache = UsageCache(redis, cache_namespace(conn))
    held = cache.read(size, starts)
    missing = [start for start, cells in held.items() if cells is None]
    loaded = _load(conn, size, missing) if missing else {}
    if loaded:
        cache.fill(size, loaded)
    cells = [c for found in held.values() if found is not None for c in found]
    return cells + [c for found in loaded.values() for c in found]


def _percentiles(h: Histogram) -> dict[str, float | None]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "p50": rounded(h.percentile(0.5)),
        "p95": rounded(h.percentile(0.95)),
        "mean": rounded(h.mean),
        "max": rounded(h.max_ms) if h.total else None,
    }


def usage_stats(
    conn: Connection[Any],
    redis: Any | None,
    tool: str | None = None,
    window: str = "1h",
    client: str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Calls, errors, p50/p95 latency and the top tools over the last `window` (1h: the last 60
    one-minute windows; 24h, 7d, 30d: the last 24/168/720 one-hour windows, the current one
    included), optionally for one tool and/or one client. 1h and 24h are answered from Redis
    when it is given and answers (missing windows are filled from Postgres), else Postgres.

    `redis` is a redis client, or a handle with `client()` and `failed()` (the container's
    infra.redis_client.RedisHandle: a failure then starts its cool-down)."""
    if window not in WINDOWS:
        raise UnknownWindow(window)
    handle = redis if callable(getattr(redis, "failed", None)) else None
    if handle is not None:
        redis = handle.client()
    size, count, hot = WINDOWS[window]
    now = now or datetime.now(UTC)
    last = window_start(now, size)
    starts = [last - (count - 1 - i) * SIZES[size] for i in range(count)]
    cells: list[Cell] | None = None
    source = "postgres"
    if hot and redis is not None:
        try:
            cells = _from_redis(conn, redis, size, starts)
            source = "redis"
            metrics.add(redis_reads=1)
        except Exception as exc:  # a cache failure never fails the answer
            metrics.add(redis_failures=1)
            log.warning("usage_cache_read_failed", error=f"{type(exc).__name__}: {exc}")
            if handle is not None:
                handle.failed()
    if cells is None:
        metrics.add(postgres_reads=1)
        cells = [c for found in _load(conn, size, starts).values() for c in found]
    return summarize(cells, tool=tool, client=client, window=window, starts=starts, size=size,
                     now=now, source=source)  # fmt: skip


def summarize(
    cells: Iterable[Cell],
    *,
    tool: str | None,
    client: str | None,
    window: str,
    starts: Sequence[datetime],
    size: str,
    now: datetime,
    source: str,
) -> dict[str, Any]:
    total = Histogram()
    calls = errors = 0
    per_tool: dict[str, list[Any]] = {}
    for cell in cells:
        if (tool is not None and cell.tool != tool) or (
            client is not None and cell.client != client
        ):
            continue
        calls += cell.calls
        errors += cell.errors
        total.merge_in(cell.histogram)
        entry = per_tool.setdefault(cell.tool, [0, 0, Histogram()])
        entry[0] += cell.calls
        entry[1] += cell.errors
        entry[2].merge_in(cell.histogram)
    ranked = sorted(per_tool.items(), key=lambda item: (-item[1][0], item[0]))[:TOP_TOOLS]
    return {
        "window": window,
        "tool": tool,
        "client": client,
        "from": starts[0].isoformat(),
        "to": now.isoformat(),
        "granularity": size,
        "calls": calls,
        "errors": errors,
        "error_rate": round(errors / calls, 4) if calls else 0.0,
        "latency_ms": _percentiles(total),
        "top_tools": [
            {"tool": name, "calls": c, "errors": e, "latency_ms": _percentiles(h)}
            for name, (c, e, h) in ranked
        ],
        "source": source,
    }
