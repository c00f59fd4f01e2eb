"""Usage analytics: the windows events are counted in, the shared constants, and the
process-wide counters (exported by infra/observability/collectors.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

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


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
