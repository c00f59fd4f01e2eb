"""The Redis copy of recent windows: written after each commit (a copy only replaces an older
one), read by the query; a lost or failing Redis only sends reads to Postgres."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from psycopg import Connection
from psycopg.rows import tuple_row

from projections.analytics.counting import Cell
from projections.analytics.windows import (
    FUTURE_SKEW,
    LOADED,
    SEP,
    SIZES,
    TTL,
    metrics,
    window_start,
)
from projections.usage_histogram import Histogram

log = structlog.get_logger("analytics")

# --- the Redis cache ------------------------------------------------------------------------------

# KEYS[1] = a window's hash; ARGV = ttl seconds, mark-loaded flag, then (field, calls, value)*.
# A field is only replaced by a value with more calls: copies never go backwards.
_STORE = """
local ttl = tonumber(ARGV[1])
for i = 3, #ARGV, 3 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  local keep = false
  if old then
    local calls = tonumber(string.match(old, '^(%d+)|'))
    if calls and calls >= tonumber(ARGV[i + 1]) then keep = true end
  end
  if not keep then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2]) end
end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], '_loaded', '1') end
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""


def cache_namespace(conn: Connection[Any]) -> str:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT value FROM usage_meta WHERE key = 'cache_namespace'").fetchone()
    return f"mcp-ledger:usage:{row[0] if row else 'default'}"


def _key(namespace: str, size: str, start: datetime) -> str:
    return f"{namespace}:{size}:{int(start.timestamp())}"


def _encode(cell: Cell) -> tuple[str, int, bytes]:
    h = cell.histogram
    value = orjson.dumps(
        [cell.calls, cell.errors, h.sum_ms, h.min_ms if h.total else 0.0, h.max_ms,
         {str(i): c for i, c in h.sparse().items()}]
    )  # fmt: skip
    return f"{cell.tool}{SEP}{cell.client}", cell.calls, str(cell.calls).encode() + b"|" + value


def _decode(size: str, start: datetime, name: bytes, value: bytes) -> Cell:
    tool, _, client = name.decode().partition(SEP)
    calls, errors, sum_ms, min_ms, max_ms, buckets = orjson.loads(value.partition(b"|")[2])
    h = Histogram.from_parts({int(i): c for i, c in buckets.items()}, sum_ms, min_ms, max_ms)
    return Cell(size, start, tool, client, calls, errors, h)


class UsageCache:
    """Recent windows in Redis. Every method may raise redis errors; callers decide."""

    def __init__(self, redis: Any, namespace: str) -> None:
        self.redis, self.namespace = redis, namespace
        self._store = redis.register_script(_STORE)

    def store(self, cells: Iterable[Cell], *, now: datetime | None = None) -> None:
        """Copies rows' absolute values into their windows (only windows Redis still keeps)."""
        now = now or datetime.now(UTC)
        by_window: dict[tuple[str, datetime], list[Cell]] = defaultdict(list)
        for cell in cells:
            if cell.start + SIZES[cell.size] + TTL[cell.size] > now:
                by_window[cell.size, cell.start].append(cell)
        if not by_window:
            return
        pipe = self.redis.pipeline(transaction=False)
        for (size, start), group in by_window.items():
            self._run(pipe, size, start, group, loaded=False)
        pipe.execute()

    def _run(
        self, pipe: Any, size: str, start: datetime, cells: list[Cell], *, loaded: bool
    ) -> None:
        args: list[Any] = [int(TTL[size].total_seconds()), "1" if loaded else "0"]
        for cell in cells:
            args.extend(_encode(cell))
        self._store(keys=[_key(self.namespace, size, start)], args=args, client=pipe)

    def read(self, size: str, starts: Sequence[datetime]) -> dict[datetime, list[Cell] | None]:
        """Per window start, its rows, or None when Redis does not hold the whole window."""
        pipe = self.redis.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(_key(self.namespace, size, start))
        out: dict[datetime, list[Cell] | None] = {}
        for start, fields in zip(starts, pipe.execute(), strict=True):
            if LOADED not in fields:
                out[start] = None
                continue
            out[start] = [
                _decode(size, start, name, value)
                for name, value in fields.items()
                if name != LOADED
            ]
        return out

    def fill(self, size: str, windows: dict[datetime, list[Cell]]) -> None:
        """Caches whole windows read from Postgres (marked loaded)."""
        pipe = self.redis.pipeline(transaction=False)
        for start, cells in windows.items():
            self._run(pipe, size, start, cells, loaded=True)
        pipe.execute()

    def invalidate_recent(self, *, now: datetime | None = None) -> None:
        """Drops every window Redis may hold, so the next reads refill them from Postgres: for
        a projector that starts, or whose earlier copies failed."""
        now = now or datetime.now(UTC)
        keys = []
        for size, length in SIZES.items():
            count = math.ceil((TTL[size] + length) / length) + 1
            latest = window_start(now + FUTURE_SKEW, size)
            keys += [_key(self.namespace, size, latest - i * length) for i in range(count)]
        for i in range(0, len(keys), 500):
            self.redis.delete(*keys[i : i + 500])


class CacheWriter:
    """The projection's side of the cache: copies committed rows, never fails the batch. After
    a failed copy the recent windows are dropped once Redis answers again."""

    def __init__(self, redis: Any | None) -> None:
        self.redis = redis
        self._cache: UsageCache | None = None
        self._dirty = True  # a starting projector may follow one that died with copies undone

    def after_commit(self, conn: Connection[Any], rows: Sequence[Cell]) -> None:
        if self.redis is None:
            return
        try:
            if self._cache is None:
                self._cache = UsageCache(self.redis, cache_namespace(conn))
            if self._dirty:
                self._cache.invalidate_recent()
                self._dirty = False
            self._cache.store(rows)
        except Exception as exc:  # the rows are committed; Redis is only a cache
            self._dirty = True
            metrics.add(redis_failures=1)
            log.warning("usage_cache_write_failed", error=f"{type(exc).__name__}: {exc}")
