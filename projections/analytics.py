"""Usage analytics: the projection of usage events into per-window counters, and the query that
reads them (`usage_stats`, served by the MCP tool and `GET /api/v1/analytics/usage`).

Counting. Each event lands in two tumbling windows ('1m' and '1h', by its `occurred_at`) under
its tool and client: calls, errors (status other than "ok") and a mergeable latency histogram.
Postgres (`usage_stats`) is the truth: `apply_usage` records the new event ids in `usage_seen`
and adds the counters in ONE transaction, so an event redelivered after a crash (Kafka at least
once) or sent twice is counted once. Late events count in the window they happened in, up to
LATE_LIMIT old; older ones are rejected (their ids may already be pruned from `usage_seen`).

Hot reads. After the commit the rows' new absolute values are copied to Redis (a hash per
window); a copy only replaces an older one (calls only grow), so copies arriving out of order
never go backwards. A window hash carries `_loaded` once it mirrors all of the window's rows: a
reader fills missing windows from Postgres. Redis is only a cache: lost, flushed or down, the
answer comes from Postgres (and the failure is logged and counted)."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
import structlog
from psycopg import Connection
from psycopg.rows import dict_row, tuple_row

from projections.usage_histogram import Histogram

log = structlog.get_logger("analytics")

SIZES = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1)}
# Query window -> (tumbling window size it sums, how many of them, served from Redis?)
WINDOWS: dict[str, tuple[str, int, bool]] = {
    "1h": ("1m", 60, True),
    "24h": ("1h", 24, True),
    "7d": ("1h", 24 * 7, False),
    "30d": ("1h", 24 * 30, False),
}
# Redis keeps a window for this long after it is first written (it must outlive the longest
# query span that reads it from Redis: 60 minutes, 24 hours).
TTL = {"1m": timedelta(hours=2, minutes=5), "1h": timedelta(hours=26)}
LATE_LIMIT = timedelta(days=2)  # older events are rejected (counted in metrics.too_late)
FUTURE_SKEW = timedelta(minutes=5)  # events stamped later than now + this count as now
MINUTE_ROWS_KEPT = timedelta(days=3)  # '1m' rows are pruned after this; '1h' rows are kept
TOP_TOOLS = 10
ANONYMOUS = "-"
LOADED = b"_loaded"
SEP = "\x1f"


class UsageLike(Protocol):
    """What the projection reads of a usage event (infra.usage.emitter.UsageEvent)."""

    @property
    def id(self) -> str: ...
    @property
    def tool(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def client_name(self) -> str | None: ...
    @property
    def occurred_at(self) -> str: ...


@dataclass
class Metrics:
    """Process-wide counters, for logs now and a metrics endpoint later."""

    applied: int = 0
    duplicates: int = 0
    too_late: int = 0
    redis_failures: int = 0
    redis_reads: int = 0
    postgres_reads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


metrics = Metrics()


def client_key(event: UsageLike) -> str:
    return event.client_id or event.client_name or ANONYMOUS


def window_start(moment: datetime, size: str) -> datetime:
    if size == "1m":
        return moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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
        moment = min(_parse_time(event.occurred_at), now + FUTURE_SKEW)
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
                outcome.rows.extend(_cell(row) for row in cur.fetchall())
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


def _cell(row: dict[str, Any]) -> Cell:
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


class UsageProjection:
    """apply_usage + the cache copy + occasional pruning: what both drivers (Kafka and the
    in-process sink) run per batch."""

    PRUNE_EVERY = 600.0  # seconds

    def __init__(self, redis: Any | None) -> None:
        self.cache = CacheWriter(redis)
        self._pruned_at = 0.0

    def handle(self, conn: Connection[Any], events: Sequence[UsageLike]) -> Applied:
        outcome = apply_usage(conn, events)
        self.cache.after_commit(conn, outcome.rows)
        if time.monotonic() - self._pruned_at > self.PRUNE_EVERY:
            self._pruned_at = time.monotonic()
            ids, rows = prune(conn)
            if ids or rows:
                log.info("usage_pruned", ids=ids, minute_rows=rows)
        return outcome


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
        cell = _cell(row)
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
