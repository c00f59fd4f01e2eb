"""The Kafka driver: a Faust app whose agents feed the same Runner as the in-process log follower.

One agent per topic takes batches of events, groups them by partition and applies each group in
a worker thread (psycopg is synchronous), with the checkpoint source '<topic>:<partition>' and
the group's highest store position. Faust acks (and later commits) a batch only after it is
applied, so delivery is at least once; a redelivered event is skipped by the runner's version
guard. A batch is never abandoned: a database failure is retried until it applies, because an
abandoned batch would be acked and its offsets committed without its effects."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import structlog
from psycopg import Connection

from projections.records import EventRecord, record_to_json
from projections.runner import DeadLetterHook, Outcome, Runner

log = structlog.get_logger("projections.faust")

Headers = Iterable[tuple[str, bytes | None]]
Decode = Callable[[bytes | None, bytes | None, Headers], EventRecord]
Connect = Callable[[], AbstractContextManager[Connection[Any]]]
MakeRunner = Callable[[DeadLetterHook], Runner]
_RETRY_FIRST, _RETRY_MAX = 0.2, 10.0  # seconds between attempts to apply a failing batch


@dataclass(frozen=True)
class FaustConfig:
    app_id: str  # also the consumer group
    bootstrap_servers: str
    topics: Sequence[str]
    dead_letter_topic: str
    datadir: Path
    batch_size: int = 500
    batch_within: float = 0.02  # seconds a partial batch waits for more events
    buffer_maxsize: int = 1000
    # How long Kafka waits before handing a dead projector's partitions to another: Faust's
    # default of 60 s means a minute of read-model lag after every crash.
    session_timeout: float = 10.0


@dataclass(frozen=True)
class Letter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class DeadLetters:
    """The runner's dead-letter hook. It runs in the worker thread inside the batch transaction,
    so it only queues; the agent publishes the queue once the batch has been applied."""

    def __init__(self) -> None:
        self.queue: deque[Letter] = deque()

    def __call__(self, projection: str, record: EventRecord, error: str) -> None:
        value = json.dumps(record_to_json(record), default=str).encode()
        headers = [("projection", projection.encode()), ("error", error[:2000].encode())]
        self.queue.append(Letter(str(record.aggregate_id).encode(), value, headers))

    def undecodable(self, message: Any, error: str) -> None:
        headers = [(k, v or b"") for k, v in message.headers or ()]
        headers += [("projection", b"-"), ("error", error[:2000].encode())]
        self.queue.append(Letter(message.key, message.value, headers))

    async def publish(self, topic: Any) -> None:
        while self.queue:
            letter = self.queue.popleft()
            try:  # force: send now, not attached to the event being processed
                await topic.send(
                    key=letter.key, value=letter.value, headers=letter.headers, force=True
                )
            except Exception as exc:  # projection_dead_letters holds it anyway; retry later
                self.queue.appendleft(letter)
                log.error("dead_letter_publish_failed", error=repr(exc), queued=len(self.queue))
                return


class Projector:
    """Applies Faust event batches with the runner."""

    def __init__(
        self, runner: Runner, connect: Connect, decode: Decode, letters: DeadLetters
    ) -> None:
        self.runner, self.connect, self.decode, self.letters = runner, connect, decode, letters

    def group(self, events: Sequence[Any]) -> dict[str, list[EventRecord]]:
        """Decoded records per '<topic>:<partition>', in offset order."""
        groups: dict[str, list[EventRecord]] = defaultdict(list)
        for event in events:
            m = event.message
            try:
                record = self.decode(m.key, m.value, m.headers or ())
            except (ValueError, KeyError, TypeError) as exc:  # not our message: skip it
                error = f"{type(exc).__name__}: {exc}"
                log.error("undecodable", topic=m.topic, partition=m.partition, offset=m.offset)
                self.letters.undecodable(m, error)
                continue
            groups[f"{m.topic}:{m.partition}"].append(record)
        return groups

    def apply_group(self, source: str, records: list[EventRecord]) -> Outcome:
        position = max(r.position for r in records)
        with self.connect() as conn:
            return self.runner.apply(conn, records, (source, position))

    async def apply_until_done(self, source: str, records: list[EventRecord]) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                outcome = await asyncio.to_thread(self.apply_group, source, records)
            except Exception as exc:  # the database is the truth: wait for it, never skip
                log.error("apply_failed", source=source, retry_in=delay, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
            if outcome.dead_lettered:
                log.warning("dead_letters", source=source, count=outcome.dead_lettered)
            return

    async def handle(self, events: Sequence[Any], dead_letter_topic: Any) -> None:
        started = time.monotonic()
        groups = self.group(events)
        # Partitions hold different aggregates, so their groups apply side by side.
        await asyncio.gather(*(self.apply_until_done(s, rs) for s, rs in groups.items()))
        await self.letters.publish(dead_letter_topic)
        ms = round((time.monotonic() - started) * 1000, 1)
        log.debug("projected", events=len(events), partitions=len(groups), ms=ms)


async def uncancellable(work: asyncio.Future[None]) -> None:
    """Waits for `work` even if we are cancelled meanwhile (Faust cancels agents on stop), then
    re-raises the cancellation: the batch in hand is finished before its events are acked."""
    cancelled = False
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            if not cancelled:
                log.info("stopping_after_batch")
            cancelled = True
    work.result()
    if cancelled:
        raise asyncio.CancelledError


def build_app(
    config: FaustConfig, make_runner: MakeRunner, connect: Connect, decode: Decode
) -> faust.App:
    app = faust.App(
        config.app_id,
        broker=[f"kafka://{s.strip()}" for s in config.bootstrap_servers.split(",")],
        store="memory://",
        datadir=str(config.datadir),
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,  # the topics are the relay's: created with its settings
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=config.buffer_maxsize,
        producer_acks=-1,
        worker_redirect_stdouts=False,
        broker_session_timeout=config.session_timeout,
        broker_heartbeat_interval=config.session_timeout / 4,
    )
    dead_letter_topic = _raw_topic(app, config.dead_letter_topic)
    letters = DeadLetters()
    projector = Projector(make_runner(letters), connect, decode, letters)

    def new_agent() -> Callable[[Any], Any]:
        async def project(stream: Any) -> None:
            async for events in stream.take_events(config.batch_size, within=config.batch_within):
                work = asyncio.ensure_future(projector.handle(events, dead_letter_topic))
                await uncancellable(work)

        return project

    for name in config.topics:
        app.agent(_raw_topic(app, name), name=f"project:{name}")(new_agent())
    return app


def _raw_topic(app: faust.App, name: str) -> Any:
    # bytes in, bytes out: decoding is the injected `decode`'s job (CloudEvents headers)
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
