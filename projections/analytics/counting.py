"""Counting usage events into per-window rows: `apply_usage` (ids and counters in one
transaction, so a redelivered event counts once), pruning, and the projection both drivers run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from psycopg import Connection
from psycopg.rows import dict_row

from projections.analytics.windows import (
    FUTURE_SKEW,
    LATE_LIMIT,
    MINUTE_ROWS_KEPT,
    SIZES,
    UsageLike,
    client_key,
    metrics,
    parse_time,
    window_start,
)
from projections.usage_histogram import Histogram

log = structlog.get_logger("analytics")

# --- the projection -------------------------------------------------------------------------------


@dataclass
class Cell:
    """One usage_stats row: absolute values after an update, or a batch's increments."""

    size: str
    start: datetime
    tool: str
    client: str
    calls: int = 0
    errors: int = 0
    histogram: Histogram = field(default_factory=Histogram)

    @property
    def key(self) -> tuple[str, datetime, str, str]:
        return self.size, self.start, self.tool, self.client


@dataclass
class Applied:
    applied: int = 0
    duplicates: int = 0
    too_late: int = 0
    rows: list[Cell] = field(default_factory=list)  # the rows' values after this batch


_UPSERT = """
INSERT INTO usage_stats AS s (window_size, window_start, tool, client, calls, errors,
    latency_sum_ms, latency_min_ms, latency_max_ms, buckets)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::bigint[])
ON CONFLICT (window_size, window_start, tool, client) DO UPDATE SET
    calls = s.calls + excluded.calls,
    errors = s.errors + excluded.errors,
    latency_sum_ms = s.latency_sum_ms + excluded.latency_sum_ms,
    latency_min_ms = least(s.latency_min_ms, excluded.latency_min_ms),
    latency_max_ms = greatest(s.latency_max_ms, excluded.latency_max_ms),
    buckets = (SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i)
               FROM unnest(s.buckets, excluded.buckets) WITH ORDINALITY AS t(a, b, i)),
    updated_at = now()
RETURNING window_size, window_start, tool, client, calls, errors, latency_sum_ms,
    latency_min_ms, latency_max_ms, buckets
"""


def apply_usage(
    conn: Connection[Any], events: Sequence[UsageLike], *, now: datetime | None = None
) -> Applied:
    """Counts the events not counted before, in one transaction (dedupe and counters commit
    together). Returns what happened and the touched rows' new values (for the cache)."""
    now = now or datetime.now(UTC)
    outcome = Applied()
    fresh: dict[str, tuple[UsageLike, datetime]] = {}
    for event in events:
        moment = min(parse_time(event.occurred_at), now + FUTURE_SKEW)
        if moment < now - LATE_LIMIT:
            outcome.too_late += 1
        elif event.id in fresh:
            outcome.duplicates += 1
        else:
            fresh[event.id] = (event, moment)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        new_ids: set[str] = set()
        if fresh:
            ids = list(fresh)
            cur.execute(
                "INSERT INTO usage_seen (id, occurred_at) "
                "SELECT * FROM unnest(%s::text[], %s::timestamptz[]) ON CONFLICT DO NOTHING "
                "RETURNING id",
                (ids, [fresh[i][1] for i in ids]),
            )
            new_ids = {row["id"] for row in cur.fetchall()}
        outcome.duplicates += len(fresh) - len(new_ids)
        cells: dict[tuple[str, datetime, str, str], Cell] = {}
        for event_id in new_ids:
            event, moment = fresh[event_id]
            for size in SIZES:
                cell = Cell(size, window_start(moment, size), event.tool, client_key(event))
                cell = cells.setdefault(cell.key, cell)
                cell.calls += 1
                cell.errors += event.status != "ok"
                cell.histogram.add(event.latency_ms)
        # A fixed order: two projectors updating the same rows never deadlock.
        params = [
            (*key, c.calls, c.errors, c.histogram.sum_ms, c.histogram.min_ms,
             c.histogram.max_ms, _array_literal(c.histogram.counts))
            for key, c in sorted(cells.items(), key=lambda item: item[0])
        ]  # fmt: skip
        if params:  # one pipelined round trip for all the rows
            cur.executemany(_UPSERT, params, returning=True)
            while True:
                outcome.rows.extend(cell_from_row(row) for row in cur.fetchall())
                if not cur.nextset():
                    break
    outcome.applied = len(new_ids)
    metrics.add(applied=outcome.applied, duplicates=outcome.duplicates, too_late=outcome.too_late)
    if outcome.too_late:
        log.warning("usage_too_late", count=outcome.too_late, limit=str(LATE_LIMIT))
    return outcome


def _array_literal(counts: list[int]) -> str:
    # psycopg's list adapter costs ~0.5 ms per 172 items; Postgres parses this text form
    return "{" + ",".join(map(str, counts)) + "}"


def cell_from_row(row: dict[str, Any]) -> Cell:
    h = Histogram.from_parts(
        row["buckets"], row["latency_sum_ms"], row["latency_min_ms"], row["latency_max_ms"]
    )
    start = row["window_start"].astimezone(UTC)
    return Cell(row["window_size"], start, row["tool"], row["client"], row["calls"],
                row["errors"], h)  # fmt: skip


def prune(conn: Connection[Any], *, now: datetime | None = None) -> tuple[int, int]:
    """Forgets event ids past the late limit (such events are rejected anyway) and '1m' rows
    past MINUTE_ROWS_KEPT. Returns (ids, rows) deleted."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        ids = conn.execute(
            "DELETE FROM usage_seen WHERE occurred_at < %s",
            (now - LATE_LIMIT - timedelta(hours=1),),
        ).rowcount
        rows = conn.execute(
            "DELETE FROM usage_stats WHERE window_size = '1m' AND window_start < %s",
            (now - MINUTE_ROWS_KEPT,),
        ).rowcount
    return ids, rows
