"""Usage events: one per MCP call and per API search. Emission never fails the call: events go
into a bounded buffer that a background thread drains, in batches, into a sink (the usage
outbox the relay publishes to Kafka, or the in-process analytics projection). A sink that fails
is retried with backoff, so an outage delays usage but loses none of what is buffered; only an
event that finds the buffer full is dropped (and counted).

`emit` returns a future that completes once the sink has stored the event: a caller that waits
for it before answering (MCP_LEDGER_USAGE_DURABLE, the default) makes its usage count exact
even if the process is killed right after the answer."""

from __future__ import annotations

import hashlib
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, fields
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

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UsageEvent:
        """The event again from `to_json`'s form (e.g. a Kafka message's value); raises
        ValueError on anything else. Unknown keys are ignored."""
        if not isinstance(data, Mapping):
            raise ValueError("a usage event is a JSON object")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("tool", "surface", "arguments_digest", "status", "id", "occurred_at"):
            if not isinstance(values.get(name), str) or not values[name]:
                raise ValueError(f"usage event: {name} must be a non-empty string")
        latency = values.get("latency_ms")
        if isinstance(latency, bool) or not isinstance(latency, int | float):
            raise ValueError("usage event: latency_ms must be a number")
        if not math.isfinite(latency) or latency < 0:
            raise ValueError("usage event: latency_ms must be a finite number >= 0")
        if not isinstance(values.get("result_ids", []), list):
            raise ValueError("usage event: result_ids must be a list")
        for name in ("client_id", "client_name", "request_id"):
            if values.get(name) is not None and not isinstance(values[name], str):
                raise ValueError(f"usage event: {name} must be a string or null")
        try:
            datetime.fromisoformat(values["occurred_at"].replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("usage event: occurred_at is not an RFC 3339 time") from None
        values.setdefault("result_ids", [])
        return cls(**values)


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


class UsageDropped(Exception):
    """The event was not stored: the buffer was full, or the emitter stopped while its sink
    was failing."""


RETRY_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0)  # seconds between attempts; the last one repeats


class UsageEmitter:
    """Buffers events for `sink`, drained by one daemon thread in batches."""

    def __init__(
        self,
        sink: UsageSink | None,
        capacity: int = 10_000,
        batch: int = 500,
        linger: float = 0.25,
    ) -> None:
        self.sink = sink
        self.batch = batch
        # How long a batch waits for more events: one sink call (one transaction) per burst
        # instead of per event. 0 when callers wait for their event: batches then form while
        # the previous one is being stored, without delaying anyone.
        self.linger = linger
        self.capacity = capacity
        self.dropped = 0  # events lost: buffer full, or stopped while the sink failed
        self.emitted = 0  # events the sink took
        self.retries = 0  # sink calls that failed and were tried again
        self._queue: queue.Queue[tuple[UsageEvent, Future[None]]] = queue.Queue(maxsize=capacity)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def emit(self, event: UsageEvent) -> Future[None] | None:
        """Queues the event; the future completes when it is stored (None: no sink)."""
        if self.sink is None:
            return None
        done: Future[None] = Future()
        try:
            self._queue.put_nowait((event, done))
        except queue.Full:
            with self._lock:
                self.dropped += 1
            done.set_exception(UsageDropped("usage buffer full"))
            return done
        self._ensure_thread()
        return done

    def stats(self) -> dict[str, int]:
        """The counters, for a metrics endpoint: emitted, dropped, queued, capacity."""
        return {
            "emitted": self.emitted,
            "dropped": self.dropped,
            "queued": self._queue.qsize(),
            "capacity": self.capacity,
        }

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until every event emitted so far has been handed to the sink (or dropped);
        False if that took longer than `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._drain, name="usage", daemon=True)
                    thread.start()
                    self._thread = thread

    def _drain(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            items = [first]
            deadline = time.monotonic() + self.linger
            while len(items) < self.batch:
                wait = 0.0 if self._stop.is_set() else deadline - time.monotonic()
                try:
                    items.append(
                        self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
            try:
                self._deliver(items)
            finally:
                for _ in items:
                    self._queue.task_done()

    def _deliver(self, items: list[tuple[UsageEvent, Future[None]]]) -> None:
        assert self.sink is not None
        events = [event for event, _ in items]
        for attempt in range(1_000_000_000):
            try:
                self.sink(events)
                break
            except Exception as exc:  # analytics must never take the serving path down
                log.warning(
                    "usage_sink_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    n=len(events),
                    attempt=attempt + 1,
                )
                if self._stop.is_set():
                    with self._lock:
                        self.dropped += len(events)
                    for _, done in items:
                        done.set_exception(UsageDropped(f"sink failed at stop: {exc}"))
                    return
                self.retries += 1
                self._stop.wait(RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)])
        self.emitted += len(events)
        for _, done in items:
            done.set_result(None)

    def close(self, timeout: float = 5.0) -> None:
        """Delivers what is buffered (up to `timeout`), then stops."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        close = getattr(self.sink, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:
                log.warning("usage_sink_close_failed", error=f"{type(exc).__name__}: {exc}")


def wait_stored(done: Future[None] | None, timeout: float) -> bool:
    """Waits (bounded) for an emitted event to be stored; never raises. True if it was."""
    if done is None:
        return True
    try:
        done.result(timeout)
    except Exception as exc:
        log.warning("usage_not_stored", error=f"{type(exc).__name__}: {exc}", timeout=timeout)
        return False
    return True
