"""The analytics agent of the Faust projector: consumes `<prefix>.usage.v1` in batches and
applies each with the same `UsageProjection` the embedded mode runs in-process. A batch is
acked only after its transaction (dedupe + counters) committed, and retried until it does, so
a crash or restart redelivers at most what is then skipped as already counted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import faust
import structlog
from psycopg import Connection

from projections.analytics import UsageLike, UsageProjection
from projections.faust_app import _raw_topic, uncancellable

log = structlog.get_logger("analytics.faust")

Headers = Iterable[tuple[str, bytes | None]]
DecodeUsage = Callable[[bytes | None, bytes | None, Headers], UsageLike]
Connect = Callable[[], AbstractContextManager[Connection[Any]]]
_RETRY_FIRST, _RETRY_MAX = 0.2, 10.0


class UsageAgent:
    def __init__(self, projection: UsageProjection, connect: Connect, decode: DecodeUsage) -> None:
        self.projection, self.connect, self.decode = projection, connect, decode
        self.undecodable = 0

    def decode_all(self, events: Sequence[Any]) -> list[UsageLike]:
        out = []
        for event in events:
            m = event.message
            try:
                out.append(self.decode(m.key, m.value, m.headers or ()))
            except (ValueError, KeyError, TypeError) as exc:  # not a usage event: skip it
                self.undecodable += 1
                log.error("usage_undecodable", topic=m.topic, partition=m.partition,
                          offset=m.offset, error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        return out

    def apply(self, records: Sequence[UsageLike]) -> None:
        with self.connect() as conn:
            outcome = self.projection.handle(conn, records)
        log.debug("usage_applied", applied=outcome.applied, duplicates=outcome.duplicates,
                  too_late=outcome.too_late)  # fmt: skip
        if outcome.duplicates:  # a redelivery (or a producer's retry): counted once already
            log.info("usage_duplicates_skipped", count=outcome.duplicates)

    async def handle(self, events: Sequence[Any]) -> None:
        records = self.decode_all(events)
        if not records:
            return
        delay = _RETRY_FIRST
        while True:
            try:
                await asyncio.to_thread(self.apply, records)
                return
            except Exception as exc:  # Postgres is the truth: wait for it, never skip a batch
                log.error("usage_apply_failed", retry_in=delay, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)


def add_usage_agent(
    app: faust.App,
    topic: str,
    projection: UsageProjection,
    connect: Connect,
    decode: DecodeUsage,
    *,
    batch_size: int = 500,
    within: float = 0.05,
) -> UsageAgent:
    """Registers the analytics agent on `topic` (which must exist: the app declares none)."""
    agent = UsageAgent(projection, connect, decode)

    async def analytics(stream: Any) -> None:
        async for events in stream.take_events(batch_size, within=within):
            await uncancellable(asyncio.ensure_future(agent.handle(events)))

    app.agent(_raw_topic(app, topic), name=f"analytics:{topic}")(analytics)
    return agent
