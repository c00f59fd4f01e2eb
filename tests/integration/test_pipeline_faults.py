"""Faults in the scale-out read side, end to end: a burst of commands from several threads
through the API, `mcp-ledger relay` and `mcp-ledger projector --source kafka` as real
subprocesses, a real Kafka broker and a real Postgres. kill -9 the projector, the relay, or both
in the middle of the burst and restart them; run two relays at once and kill the active one.
Afterwards the read models equal the replayed store, every event applied exactly once (one
history row per aggregate version, carrying that event's position), no dead letters; and the
topics, deduplicated by ce_id, hold every store event, with duplicates only from the batch the
killed relay had in flight.

Each test has its own database and topic prefix. The services run with a 6 s Kafka session
timeout (MCP_LEDGER_PROJECTOR_SESSION_TIMEOUT; 6 s is the broker's minimum), so a restarted
projector gets the killed one's partitions in seconds.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from infra.kafka.cloudevents import decode_headers, event_id, from_message
from projections.positions import READ_MODELS, applied_position
from projections.rebuild import stream_log
from projections.records import EventRecord
from projections.verify import differences
from tests.kafka_pipeline_support import (
    Pipeline,
    Service,
    committed_positions,
    consume,
    dataset_lifecycle,
    document_lifecycle,
    fresh_database,
    pipeline_env,
    query,
    tool_lifecycle,
    wait_for,
)

pytestmark = pytest.mark.timeout(150)

RELAY_BATCH = 25  # events per relay batch: a burst spans many batches, so a kill lands mid-stream
FAULT_ENV = {
    "MCP_LEDGER_RELAY_BATCH_SIZE": str(RELAY_BATCH),
    "MCP_LEDGER_RELAY_POLL_INTERVAL": "0.2",  # how soon a standby retries the lock
    "MCP_LEDGER_PROJECTOR_SESSION_TIMEOUT": "6",
}
KINDS = ("tool", "dataset", "document")


# --- the rig: a database, topics, the API and the services --------------------------------------


@dataclass
class Rig:
    database_url: str
    bootstrap: str
    container: Any
    client: httpx.Client
    pipeline: Pipeline
    bursts: list[Burst] = field(default_factory=list)

    def burst(self) -> Burst:
        """Starts a burst of commands; the fixture stops it if the test fails midway."""
        burst = Burst(self.client).start()
        self.bursts.append(burst)
        return burst

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row)

    def head(self) -> int:
        return int(self.container.store.head())

    def relay_checkpoint(self) -> int:
        rows = query(
            self.database_url,
            "SELECT position FROM relay_checkpoints WHERE name = %s",
            self.pipeline.prefix,
        )
        return int(rows[0]["position"]) if rows else 0

    def applied(self) -> int:
        with self.connect() as conn:
            return applied_position(conn, self.pipeline.prefix)

    def records(self) -> list[EventRecord]:
        """Every tool, dataset and document event in the store, in store order."""
        side = self.container.read_side
        return [r for r in stream_log(side.records_after) if r.kind in KINDS]

    def first_after(self, position: int, count: int) -> set[int]:
        """The store positions of the `count` notifications after `position`: the most a relay
        that had checkpointed `position` can have had in flight."""
        batch = self.container.app.recorder.select_notifications(
            position, count, inclusive_of_start=False
        )
        return {n.id for n in batch}


@pytest.fixture
def rig(kafka_bootstrap: str, secret_key: str, tmp_path: Path) -> Iterator[Rig]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from infra.container import build_container
    from infra.settings import load_settings

    prefix = f"t-pf-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with fresh_database("pf") as database_url:
        settings = load_settings(
            database_url=database_url,
            secret_key=secret_key,
            data_dir=tmp_path / "api-data",
            read_feed="kafka",
            kafka_topic_prefix=prefix,
            auth="off",  # access control is tested in test_access_control.py
            rate_limit="off",
            vectors="off",  # the session app keeps the vector index
        )
        container = build_container(settings)  # the schema exists before the services start
        env = pipeline_env(database_url, secret_key, kafka_bootstrap, prefix, tmp_path, **FAULT_ENV)
        pipeline = Pipeline(database_url, prefix, env, tmp_path)
        try:
            with TestClient(create_app(container), raise_server_exceptions=False) as client:
                rig = Rig(database_url, kafka_bootstrap, container, client, pipeline)
                try:
                    yield rig
                finally:  # no command may still be running when the client closes
                    for burst in rig.bursts:
                        burst.cancel()
        finally:
            pipeline.stop(timeout=10)
            container.close()


# --- the burst ----------------------------------------------------------------------------------

LIFECYCLES = (tool_lifecycle, dataset_lifecycle, document_lifecycle)
COMMANDS_PER_ROUND = 6 + 8 + 5  # the three lifecycles' commands


class Cancelled(Exception):
    pass


@dataclass
class Burst:
    """Commands from several threads through the in-process API: each thread runs rounds of a
    tool's, a dataset's and a document's whole lifecycle (every event type). Each command is
    one event, so the store ends with exactly `total` of them."""

    client: httpx.Client
    threads: int = 6
    rounds: int = 5
    pause: float = 0.015  # seconds between a thread's commands: the burst lasts a few seconds
    done: int = 0
    errors: list[BaseException] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.threads * self.rounds * COMMANDS_PER_ROUND

    def _count(self, call: Callable[..., httpx.Response], *args: Any, **kwargs: Any) -> Any:
        if self._cancelled.is_set():
            raise Cancelled
        response = call(*args, **kwargs)
        with self._lock:
            self.done += 1
        time.sleep(self.pause)
        return response

    # The lifecycles take anything with the client's write methods.
    def post(self, *args: Any, **kwargs: Any) -> httpx.Response:
        return self._count(self.client.post, *args, **kwargs)  # type: ignore[no-any-return]

    def patch(self, *args: Any, **kwargs: Any) -> httpx.Response:
        return self._count(self.client.patch, *args, **kwargs)  # type: ignore[no-any-return]

    def put(self, *args: Any, **kwargs: Any) -> httpx.Response:
        return self._count(self.client.put, *args, **kwargs)  # type: ignore[no-any-return]

    def delete(self, *args: Any, **kwargs: Any) -> httpx.Response:
        return self._count(self.client.delete, *args, **kwargs)  # type: ignore[no-any-return]

    def _run(self) -> None:
        try:
            for _ in range(self.rounds):
                for lifecycle in LIFECYCLES:
                    lifecycle(self)
        except Cancelled:
            pass
        except BaseException as exc:  # reported by join()
            self.errors.append(exc)

    def start(self) -> Burst:
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        return self

    def reach(self, fraction: float) -> int:
        """Waits until `fraction` of the commands are done; returns how many are. Fails if the
        burst is over by then: a fault must land while commands are still being written."""
        wait_for(
            lambda: self.done >= fraction * self.total or self.errors,
            f"{fraction:.0%} of the burst",
            timeout=60,
        )
        assert not self.errors, self.errors
        done = self.done
        assert done < self.total, "the burst ended before the fault: make it longer"
        return done

    def cancel(self) -> None:
        """Stops the threads after their current command."""
        self._cancelled.set()
        for worker in self._workers:
            worker.join(30)

    def join(self) -> None:
        for worker in self._workers:
            worker.join(90)
        assert not any(w.is_alive() for w in self._workers), "the burst did not finish"
        assert not self.errors, self.errors
        assert self.done == self.total


def kill_together(*services: Service) -> None:
    """kill -9 all of them, then reap them: none gets to notice the other's death first."""
    for service in services:
        assert service.proc is not None
        assert service.alive(), service.log_tail()
        os.kill(service.proc.pid, signal.SIGKILL)
    for service in services:
        assert service.proc is not None
        assert service.proc.wait(10) == -signal.SIGKILL


WARM_UP = COMMANDS_PER_ROUND  # one round of lifecycles before the burst


def warm_up(rig: Rig) -> None:
    """One round of lifecycles, through the pipeline: the relay publishes and the projector has
    joined its group and applied them before the burst starts."""
    for lifecycle in LIFECYCLES:
        lifecycle(rig.client)
    head = rig.head()
    wait_for(lambda: rig.applied() >= head, "the warm-up to be projected", timeout=60)


def start_pipeline(rig: Rig) -> None:
    relay = rig.pipeline.start_relay()
    rig.pipeline.start_projector()
    wait_for(lambda: relay.said("relay.active"), "the relay to become active", timeout=30)
    warm_up(rig)


def wait_until_committed(rig: Rig) -> None:
    """The projector's group has committed offsets (Faust commits every few seconds): a restart
    resumes from the middle of the topics, not from their start."""

    def committed() -> bool:
        return any(
            committed_positions(rig.bootstrap, rig.pipeline.group, topic)
            for topic in rig.pipeline.event_topics
        )

    wait_for(committed, "the projector to commit offsets", timeout=30)


# --- what must hold after every fault -----------------------------------------------------------


def assert_converged(rig: Rig, burst: Burst) -> None:
    """The read models reach the store head and equal it: nothing lost, nothing applied twice.
    The store holds the warm-up's events and one per command of the burst."""
    db = rig.database_url
    head = rig.head()
    wait_for(lambda: rig.applied() >= head, "the applied position to reach the head", timeout=90)
    for service in rig.pipeline.started:  # every service not killed is still running
        assert service.proc is not None
        assert service.alive() or service.proc.returncode == -signal.SIGKILL, service.log_tail()
    records = rig.records()
    assert len(records) == WARM_UP + burst.total, "one event per command"
    last = {r.aggregate_id: r.version for r in records}
    assert len(last) == (1 + burst.threads * burst.rounds) * len(LIFECYCLES)

    with rig.connect() as conn:
        assert differences(conn, records, limit=10) == []
    versions = query(db, "SELECT projection, aggregate_id, version FROM projection_versions")
    assert {(r["projection"], r["aggregate_id"]): r["version"] for r in versions} == {
        (projection, aggregate): version
        for aggregate, version in last.items()
        for projection in READ_MODELS
    }
    # One history row per event, made from that event (its position and type): duplicates
    # would show as extra rows or as dead letters (the primary key refuses them).
    history = query(
        db,
        "SELECT aggregate_id, version, position, event_type FROM rm_history "
        "ORDER BY aggregate_id, version",
    )
    assert sorted((h["aggregate_id"], h["version"], h["position"], h["event_type"])
                  for h in history) == sorted(
        (r.aggregate_id, r.version, r.position, r.type) for r in records
    )  # fmt: skip
    per_aggregate: dict[Any, list[int]] = defaultdict(list)
    for h in history:
        per_aggregate[h["aggregate_id"]].append(h["version"])
    assert all(vs == list(range(1, last[a] + 1)) for a, vs in per_aggregate.items())
    letters = query(
        db, "SELECT projection, aggregate_id, version, status, error FROM projection_dead_letters"
    )
    assert letters == []
    assert consume(rig.bootstrap, [rig.pipeline.topic("deadletter.v1")]) == []


def ce_id(message: Any) -> str:
    return decode_headers(message.headers)["ce_id"]


def assert_published(rig: Rig, records: list[EventRecord], resent_from: list[int]) -> Counter[str]:
    """The topics, deduplicated by ce_id, hold exactly the store's events, each on its
    aggregate's key and with its version order; a duplicate is a byte-identical re-send of an
    event the killed relay had in flight: among the first batch after the checkpoint it had
    written when killed (`resent_from`, one checkpoint per kill). Returns the ce_id counts."""
    messages = consume(rig.bootstrap, rig.pipeline.event_topics)
    by_id: dict[str, list[Any]] = defaultdict(list)
    for message in messages:
        by_id[ce_id(message)].append(message)
    want = {str(event_id(r.aggregate_id, r.version)): r for r in records}
    assert set(by_id) == set(want), "deduplicated by ce_id, the topics hold exactly the store"
    in_flight: set[int] = set()
    for checkpoint in resent_from:
        in_flight |= rig.first_after(checkpoint, RELAY_BATCH)
    for ident, copies in by_id.items():
        first = copies[0]
        assert from_message(first.key, first.value, first.headers) == want[ident]
        assert first.key == str(want[ident].aggregate_id).encode()
        for again in copies[1:]:
            assert (again.key, again.value, again.headers) == (
                first.key, first.value, first.headers
            )  # fmt: skip
        if len(copies) > 1:
            assert want[ident].position in in_flight, (
                f"event at position {want[ident].position} published {len(copies)} times, "
                f"not in a batch in flight at a kill (checkpoints {resent_from})"
            )
    assert_aggregate_order(messages)
    return Counter({i: len(c) for i, c in by_id.items()})


def assert_aggregate_order(messages: list[Any]) -> None:
    """Per aggregate, in offset order, versions first appear as 1, 2, 3, ...: a re-send may only
    repeat versions already seen."""
    seen: dict[bytes, list[int]] = defaultdict(list)
    for m in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
        seen[m.key].append(int(decode_headers(m.headers)["ce_sequence"]))
    for versions in seen.values():
        first_seen = list(dict.fromkeys(versions))
        assert first_seen == list(range(1, len(first_seen) + 1)), versions


def applied_beyond_committed(rig: Rig) -> dict[str, tuple[int, int]]:
    """Per '<topic>:<partition>', (committed, applied) where the projector applied events past the
    offsets its group committed: a restarted projector gets those events again."""
    applied = {
        r["source"]: int(r["position"])
        for r in query(
            rig.database_url,
            "SELECT source, min(position) AS position FROM projection_checkpoints "
            "WHERE source LIKE %s GROUP BY source",
            rig.pipeline.prefix + ".%",
        )
    }
    committed: dict[str, int] = {}
    for topic in rig.pipeline.event_topics:
        positions = committed_positions(rig.bootstrap, rig.pipeline.group, topic)
        committed |= {f"{topic}:{p}": position for p, position in positions.items()}
    return {
        source: (committed.get(source, 0), position)
        for source, position in applied.items()
        if position > committed.get(source, 0)
    }


# --- the faults ---------------------------------------------------------------------------------


def test_kill_9_the_projector_mid_burst_then_restart(rig: Rig) -> None:
    start_pipeline(rig)
    wait_until_committed(rig)
    burst = rig.burst()
    killed_at = burst.reach(0.3)
    assert rig.pipeline.projector is not None
    # Faust commits every few seconds and a fast projector may be idle at a commit: kill it
    # while it holds applied but uncommitted events, the case this test is about.
    wait_for(lambda: applied_beyond_committed(rig), "applied events not committed", timeout=30)
    rig.pipeline.projector.kill()
    # Applied but not committed to Kafka: the restarted projector is handed these again.
    redelivered = applied_beyond_committed(rig)
    assert redelivered, "the kill left nothing to redeliver: it did not test duplicates"

    burst.reach(0.6)  # the store moves on while no projector runs
    assert burst.done > killed_at
    rig.pipeline.start_projector("projector-restarted")
    burst.join()
    assert_converged(rig, burst)
    assert_published(rig, rig.records(), resent_from=[])  # the relay was never killed


def test_kill_9_the_relay_mid_burst_then_restart(rig: Rig) -> None:
    start_pipeline(rig)
    burst = rig.burst()
    burst.reach(0.3)
    assert rig.pipeline.relay is not None
    first = rig.pipeline.relay
    assert first.batches(), "the relay published nothing before the kill"
    first.kill()
    checkpoint = rig.relay_checkpoint()
    assert checkpoint > 0

    burst.reach(0.6)
    assert rig.head() > checkpoint  # written while no relay ran
    restarted = rig.pipeline.start_relay("relay-restarted")
    burst.join()
    assert_converged(rig, burst)
    # It resumed after the killed relay's checkpoint, not from the start.
    assert restarted.batches()[0]["first"] > checkpoint
    counts = assert_published(rig, rig.records(), resent_from=[checkpoint])
    assert sum(counts.values()) - len(counts) <= RELAY_BATCH


def test_kill_9_relay_and_projector_together_mid_burst_then_restart_both(rig: Rig) -> None:
    start_pipeline(rig)
    wait_until_committed(rig)
    burst = rig.burst()
    burst.reach(0.3)
    relay, projector = rig.pipeline.relay, rig.pipeline.projector
    assert relay is not None
    assert projector is not None
    wait_for(lambda: applied_beyond_committed(rig), "applied events not committed", timeout=30)
    kill_together(relay, projector)
    checkpoint = rig.relay_checkpoint()
    assert checkpoint > 0
    assert applied_beyond_committed(rig), "the kill left the projector nothing to redeliver"

    burst.reach(0.6)
    assert rig.head() > checkpoint  # written while nothing ran
    restarted = rig.pipeline.start_relay("relay-restarted")
    rig.pipeline.start_projector("projector-restarted")
    burst.join()
    assert_converged(rig, burst)
    assert restarted.batches()[0]["first"] > checkpoint
    counts = assert_published(rig, rig.records(), resent_from=[checkpoint])
    assert sum(counts.values()) - len(counts) <= RELAY_BATCH


def test_two_relays_never_both_publish_and_the_standby_takes_over_a_kill_9(rig: Rig) -> None:
    pipeline = rig.pipeline
    relays = [pipeline.start_relay("relay-a"), pipeline.start_relay("relay-b")]  # a race
    pipeline.start_projector()
    wait_for(
        lambda: all(r.said("relay.active") or r.said("relay.standby") for r in relays),
        "both relays to start", timeout=30,
    )  # fmt: skip
    active = [r for r in relays if r.said("relay.active")]
    assert len(active) == 1, [r.log_tail() for r in relays]
    leader = active[0]
    standby = next(r for r in relays if r is not leader)
    assert standby.said("relay.standby")

    warm_up(rig)
    burst = rig.burst()
    burst.reach(0.4)
    wait_for(lambda: len(leader.batches()) >= 3, "the leader to publish batches", timeout=30)
    # In steady state only the leader publishes: the standby has not, and no event is twice
    # in the topics.
    before = consume(rig.bootstrap, pipeline.event_topics)
    assert not standby.batches()
    assert not standby.said("relay.active")
    assert before
    assert len(before) == len({ce_id(m) for m in before}), "a duplicate with both relays alive"

    leader.kill()
    checkpoint = rig.relay_checkpoint()
    assert checkpoint > 0
    wait_for(lambda: standby.said("relay.active"), "the standby to take over", timeout=30)
    # The killed leader comes back: now it is the one standing by.
    again = pipeline.start_relay("relay-restarted")
    wait_for(lambda: again.said("relay.standby"), "the old leader to stand by", timeout=30)
    burst.join()
    assert_converged(rig, burst)
    assert standby.batches()[0]["first"] > checkpoint  # it resumed after the leader's checkpoint
    assert not again.batches()
    assert not again.said("relay.active")
    counts = assert_published(rig, rig.records(), resent_from=[checkpoint])
    assert sum(counts.values()) - len(counts) <= RELAY_BATCH
