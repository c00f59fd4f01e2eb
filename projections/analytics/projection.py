"""The usage projection both drivers run per batch (Kafka's analytics agent, the in-process
sink): count, copy to the cache, and now and then prune."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import structlog
from psycopg import Connection

from projections.analytics.cache import CacheWriter
from projections.analytics.counting import Applied, apply_usage, prune
from projections.analytics.windows import UsageLike

log = structlog.get_logger("analytics")


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
