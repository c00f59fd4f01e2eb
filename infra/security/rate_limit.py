"""Rate limits per caller and route class: a token bucket per (class, caller) in Redis, taken and
refilled atomically by one Lua script (Redis's own clock, so every API replica shares the
bucket). Redis down → the request is served (fail open), counted and logged."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter

from infra.redis_client import RedisHandle
from infra.settings import Settings

ROUTE_CLASSES = ("read", "write", "search", "admin", "mcp", "auth_failure")
KEY_PREFIX = "mcp-ledger:ratelimit"
# A caller that drains its bucket waits for one token: (1 - tokens) / rate seconds. Cost 0 only
# looks (is a token there?), cost 1 takes one.
BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - cost
  allowed = 1
elseif rate > 0 then
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
else
  wait_ms = 3600000
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
local ttl = 86400000
if rate > 0 then
  ttl = math.ceil(burst / rate * 1000) + 1000
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, wait_ms, math.floor(tokens)}
"""

FAILURES = Counter(
    "mcp_ledger_rate_limit_failures",
    "Requests served without a rate-limit decision because Redis failed (fail open)",
)
log = structlog.get_logger("rate_limit")
LOG_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int  # whole seconds, at least 1 when refused
    remaining: int
    limit: int


class RateLimiter:
    def __init__(self, settings: Settings, redis: RedisHandle) -> None:
        self.redis = redis
        self.rates = {c: settings.rate_of(c) for c in ROUTE_CLASSES}
        self._script: Any = None
        self._script_client: Any = None
        self._logged_at = -math.inf

    def check(
        self, identity: str, route_class: str, cost: int = 1, *, fail_open: bool = True
    ) -> Decision | None:
        """Takes `cost` tokens (0: only looks) from the caller's bucket of `route_class`: the
        decision, or None when Redis could not decide. `fail_open`: the request is then served
        without a limit (counted and logged); otherwise the caller decides another way."""
        rate, burst = self.rates[route_class]
        client = self.redis.client()
        if client is None:  # cooling down after a failure
            if fail_open:
                self._failed(None)
            return None
        try:
            if self._script is None or self._script_client is not client:
                self._script = client.register_script(BUCKET_SCRIPT)
                self._script_client = client
            key = f"{KEY_PREFIX}:{route_class}:{identity}"
            allowed, wait_ms, remaining = self._script(keys=[key], args=[rate, burst, cost])
        except Exception as exc:  # any Redis failure: serve, count, log
            self.redis.failed()
            if fail_open:
                self._failed(exc)
            return None
        return Decision(
            allowed=bool(allowed),
            retry_after=max(1, math.ceil(int(wait_ms) / 1000)),
            remaining=int(remaining),
            limit=burst,
        )

    def _failed(self, exc: Exception | None) -> None:
        FAILURES.inc()
        now = time.monotonic()
        if exc is not None or now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            log.warning(
                "rate_limit_unavailable",
                error=type(exc).__name__ if exc else "redis cooling down after a failure",
                action="serving without rate limits until Redis answers",
            )


class LocalBuckets:
    """The same buckets in this process's memory, for limits that must hold without Redis (the
    failed-authentication limit). Bounded: the least recently touched callers are forgotten."""

    def __init__(self, settings: Settings, max_callers: int = 10_000) -> None:
        self.rates = {c: settings.rate_of(c) for c in ROUTE_CLASSES}
        self.max_callers = max_callers
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, identity: str, route_class: str, cost: int = 1) -> Decision:
        rate, burst = self.rates[route_class]
        now = time.monotonic()
        key = (route_class, identity)
        with self._lock:
            tokens, ts = self._buckets.pop(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - ts) * rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= cost
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        wait = 0.0 if allowed else ((1 - tokens) / rate if rate > 0 else 3600.0)
        return Decision(allowed, max(1, math.ceil(wait)), int(max(tokens, 0)), burst)
