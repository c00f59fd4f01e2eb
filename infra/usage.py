"""Usage events: one per MCP call and per API search. Emission never blocks or fails the call:
events go into a bounded buffer that a background thread drains into a sink (Kafka, or the
in-process analytics projection); when the buffer is full the event is dropped and counted."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import orjson
import structlog

from domain.secrets import is_secret_key

log = structlog.get_logger("usage")


@dataclass(frozen=True)
class UsageEvent:
    tool: str  # the MCP tool name, or "api.search" for the REST search route
    surface: str  # "mcp" or "api"
    arguments_digest: str  # see digest_arguments: equal arguments give equal digests
    result_ids: list[dict[str, Any]]  # [{"kind", "id", "version"}] of what was returned
    latency_ms: float
    status: str  # "ok", "error", "not_found" or "invalid"
    client_id: str | None = None
    client_name: str | None = None
    request_id: str | None = None
    id: str = field(default_factory=lambda: str(uuid4()))
    occurred_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if is_secret_key(k) else _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


def digest_arguments(arguments: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the arguments, secret-named keys masked first: analytics
    can group identical calls without ever holding the arguments themselves."""
    canonical = orjson.dumps(_without_secrets(arguments), option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


UsageSink = Callable[[Sequence[UsageEvent]], None]


class UsageEmitter:
    """Buffers events for `sink`, drained by one daemon thread in batches."""

    def __init__(self, sink: UsageSink | None, capacity: int = 10_000, batch: int = 500) -> None:
        self.sink = sink
        self.batch = batch
        self.dropped = 0
        self.emitted = 0
        self._queue: queue.Queue[UsageEvent] = queue.Queue(maxsize=capacity)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def emit(self, event: UsageEvent) -> None:
        if self.sink is None:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            return
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="usage", daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            events = [first]
            while len(events) < self.batch:
                try:
                    events.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._deliver(events)

    def _deliver(self, events: list[UsageEvent]) -> None:
        assert self.sink is not None
        try:
            self.sink(events)
            self.emitted += len(events)
        except Exception as exc:  # analytics must never take the serving path down
            self.dropped += len(events)
            log.warning("usage_sink_failed", error=f"{type(exc).__name__}: {exc}", n=len(events))

    def close(self, timeout: float = 5.0) -> None:
        """Delivers what is buffered (up to `timeout`), then stops."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
