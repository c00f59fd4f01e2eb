"""The event store: the `eventsourcing` library's Postgres recorder (psycopg 3), with our own
transcoder and the Idempotency-Key row written in the same transaction as the events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, StoredEvent, Transcoder
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from commands.errors import AppendConflict, IdempotencyRace
from commands.ports import Appended, IdempotencyRequest
from commands.ports import StoredEvent as PositionedEvent
from domain.events import DomainEvent
from infra.metrics import count_appended

EVENTS_TABLE = "ledger_events"
IDEMPOTENCY_TABLE = "ledger_idempotency"
IDEMPOTENCY_PKEY = f"{IDEMPOTENCY_TABLE}_pkey"


class LedgerTranscoder(Transcoder):
    """Plain JSON. Only our own top-level fields carry non-JSON types (times, ids); they are
    listed under `__types__`, so user JSON (schemas, config) is stored exactly as given."""

    def encode(self, obj: Any) -> bytes:
        state = dict(obj)
        types: dict[str, str] = {}
        for key, value in state.items():
            if isinstance(value, datetime):
                state[key], types[key] = value.isoformat(), "datetime"
            elif isinstance(value, UUID):
                state[key], types[key] = str(value), "uuid"
        if types:
            state["__types__"] = types
        try:
            return orjson.dumps(state)
        except TypeError:  # integers beyond 64 bits, which orjson refuses and JSON allows
            return json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        state = json.loads(data)
        for key, kind in state.pop("__types__", {}).items():
            state[key] = (
                datetime.fromisoformat(state[key]) if kind == "datetime" else UUID(state[key])
            )
        return state


class LedgerRecorder(PostgresApplicationRecorder):
    """Adds the idempotency record to the events' transaction, so a retried command either
    finds the first result or appends; never both, never twice."""

    def _fetch_ids_after_insert_events(
        self,
        curs: psycopg.Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        request: IdempotencyRequest | None = kwargs.get("idempotency")
        if request is not None and ids is not None:
            results = [
                {"id": str(e.originator_id), "version": e.originator_version, "position": i}
                for e, i in zip(stored_events, ids, strict=True)
            ]
            curs.execute(
                f"INSERT INTO {IDEMPOTENCY_TABLE} (key, request_hash, results) "  # noqa: S608
                "VALUES (%s, %s, %s) RETURNING key",
                (request.key, request.request_hash, Jsonb(results)),
            )
            curs.fetchone()  # forces the pipeline to sync, so a duplicate key raises here
        return ids


class LedgerApplication(Application[UUID]):
    name = "Ledger"  # tables are named ledger_*

    def construct_transcoder(self) -> Transcoder:
        return LedgerTranscoder()


def _constraint(exc: BaseException) -> str | None:
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    return getattr(diag, "constraint_name", None)


class PostgresEventStore:
    """The `commands.ports.EventStore` port over a LedgerApplication."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app
        self.datastore = app.recorder.datastore  # type: ignore[attr-defined]

    def load(self, aggregate_id: UUID) -> list[DomainEvent]:
        return list(self.app.events.get(aggregate_id))  # type: ignore[arg-type]

    def load_page(
        self, aggregate_id: UUID, after_version: int, limit: int
    ) -> list[PositionedEvent]:
        sql = (
            f"SELECT originator_version, topic, state, notification_id FROM {EVENTS_TABLE} "  # noqa: S608
            "WHERE originator_id = %s AND originator_version > %s "
            "ORDER BY originator_version LIMIT %s"
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, (aggregate_id, after_version, limit))
            rows = curs.fetchall()
        return [
            PositionedEvent(
                self._to_event(aggregate_id, r["originator_version"], r["topic"], r["state"]),
                r["notification_id"],
            )
            for r in rows
        ]

    def _to_event(self, aggregate_id: UUID, version: int, topic: str, state: bytes) -> DomainEvent:
        stored = StoredEvent(
            originator_id=aggregate_id, originator_version=version, topic=topic, state=bytes(state)
        )
        return self.app.mapper.to_domain_event(stored)  # type: ignore[return-value]

    def append(
        self, events: Sequence[DomainEvent], idempotency: IdempotencyRequest | None = None
    ) -> list[Appended]:
        try:
            # The event store's put, not app.save: save() only adds runtime-Protocol isinstance
            # checks per event (slow) and snapshot/notify hooks this application does not use.
            recordings = self.app.events.put(events, idempotency=idempotency)
        except IntegrityError as exc:
            if _constraint(exc) == IDEMPOTENCY_PKEY:
                raise IdempotencyRace(str(exc)) from exc
            raise AppendConflict(str(exc)) from exc
        count_appended(events)
        return [
            Appended(
                r.domain_event.originator_id,
                r.domain_event.originator_version,
                r.notification.id,
            )
            for r in recordings
        ]

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        sql = (
            f"SELECT notification_id FROM {EVENTS_TABLE} "  # noqa: S608
            "WHERE originator_id = %s AND originator_version = %s"
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, (aggregate_id, version))
            row = curs.fetchone()
        return int(row["notification_id"]) if row else None

    def existing(self, aggregate_ids: Sequence[UUID]) -> set[UUID]:
        sql = (
            f"SELECT DISTINCT originator_id FROM {EVENTS_TABLE} "  # noqa: S608
            "WHERE originator_id = ANY(%s) AND originator_version = 1"
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, (list(aggregate_ids),))
            return {row["originator_id"] for row in curs.fetchall()}

    def head(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)


class PostgresIdempotencyStore:
    def __init__(self, app: LedgerApplication) -> None:
        self.datastore = app.recorder.datastore  # type: ignore[attr-defined]

    def lookup(self, key: str) -> tuple[str, list[Appended]] | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT request_hash, results FROM {IDEMPOTENCY_TABLE} WHERE key = %s",  # noqa: S608
                (key,),
            )
            row = curs.fetchone()
        if row is None:
            return None
        results = [Appended(UUID(r["id"]), r["version"], r["position"]) for r in row["results"]]
        return row["request_hash"], results

    def remember(self, request: IdempotencyRequest, results: Sequence[Appended]) -> None:
        rows = [{"id": str(r.id), "version": r.version, "position": r.position} for r in results]
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                f"INSERT INTO {IDEMPOTENCY_TABLE} (key, request_hash, results) "  # noqa: S608
                "VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING RETURNING key",
                (request.key, request.request_hash, Jsonb(rows)),
            )
            inserted = curs.fetchone()
        if inserted is None:
            raise IdempotencyRace(request.key)
