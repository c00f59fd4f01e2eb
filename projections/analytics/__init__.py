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

from projections.analytics.cache import CacheWriter, UsageCache, cache_namespace
from projections.analytics.counting import Applied, Cell, apply_usage, prune
from projections.analytics.projection import UsageProjection
from projections.analytics.stats import UnknownWindow, summarize, usage_stats
from projections.analytics.windows import (
    ANONYMOUS,
    FUTURE_SKEW,
    LATE_LIMIT,
    LOADED,
    MINUTE_ROWS_KEPT,
    SEP,
    SIZES,
    TOP_TOOLS,
    TTL,
    WINDOWS,
    Metrics,
    UsageLike,
    client_key,
    metrics,
    window_start,
)

__all__ = [
    "ANONYMOUS",
    "FUTURE_SKEW",
    "LATE_LIMIT",
    "LOADED",
    "MINUTE_ROWS_KEPT",
    "SEP",
    "SIZES",
    "TOP_TOOLS",
    "TTL",
    "WINDOWS",
    "Applied",
    "CacheWriter",
    "Cell",
    "Metrics",
    "UnknownWindow",
    "UsageCache",
    "UsageLike",
    "UsageProjection",
    "apply_usage",
    "cache_namespace",
    "client_key",
    "metrics",
    "prune",
    "summarize",
    "usage_stats",
    "window_start",
]
