"""A lazily built Redis client for caches (REDIS_URL). Nothing connects until first use; after
a failure the handle hands out no client for a short cool-down, so a Redis that is down costs
one timeout per cool-down rather than one per request."""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

log = structlog.get_logger("redis")


class RedisHandle:
    def __init__(
        self,
        url: str | None,
        *,
        cooldown: float = 5.0,
        connect_timeout: float = 0.5,
        timeout: float = 1.0,
    ) -> None:
        self.url = url
        self.cooldown = cooldown
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.failures = 0
        self._client: Any = None
        self._down_until = 0.0
        self._lock = threading.Lock()

    def client(self) -> Any | None:
        """The redis.Redis client, or None without REDIS_URL or during the cool-down."""
        if self.url is None or time.monotonic() < self._down_until:
            return None
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import redis

                    self._client = redis.Redis.from_url(
                        self.url,
                        socket_connect_timeout=self.connect_timeout,
                        socket_timeout=self.timeout,
                        health_check_interval=30,
                    )
        return self._client

    def failed(self) -> None:
        """Reports that a command failed: no client for the next `cooldown` seconds."""
        self.failures += 1
        self._down_until = time.monotonic() + self.cooldown
        log.warning("redis_unavailable", cooldown=self.cooldown, failures=self.failures)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
