"""The event store: the `eventsourcing` library's Postgres recorder (psycopg 3), with our own
transcoder and the Idempotency-Key row written in the same transaction as the events."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import orjson
import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from commands.errors import (
    AppendConflict,
    AppendTimedOut,
    IdempotencyRace,
    StoreBusy,
    StoreUnavailable,
)
from commands.ports import Appended, IdempotencyRequest
from commands.ports import StoredEvent as PositionedEvent
from domain.events import DomainEvent
from infra.observability.metrics import count_appended
from infra.postgres.append_watchdog import AppendWatchdog

EVENTS_TABLE = "ledger_events"
IDEMPOTENCY_TABLE = "ledger_idempotency"
IDEMPOTENCY_PKEY = f"{IDEMPOTENCY_TABLE}_pkey"
# How long one append may hold the events table before its session is ended.
DEFAULT_APPEND_TIMEOUT = 30.0
CONNECT_ATTEMPTS = 3


def eventsourcing_env(
    database_url: str, pool_size: int, append_timeout: float = DEFAULT_APPEND_TIMEOUT
) -> dict[str, str]:
    """Translates a postgresql:// URL into the eventsourcing library's settings."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    return {
        "PERSISTENCE_MODULE": "infra.postgres.event_store:LedgerFactory",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "CREATE_TABLE": "n",
        "APPEND_TIMEOUT": str(append_timeout),
    }


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
    """Appends without psycopg's pipeline mode, within a bounded time, and with the
    idempotency record in the events' transaction (a retried command either finds the first
    result or appends; never both, never twice).

    Why not the library's pipelined insert: psycopg 3.3's `Pipeline.sync()` stops sending once
    its command queue is empty even when libpq still holds unsent bytes, then waits to read.
    A batch larger than the socket's send buffer (~208 KB on a unix socket, which is how the
    embedded Postgres is reached; TCP buffers grow to MBs, hiding it) leaves the client waiting
    for results and the server waiting for the rest of the query (`ClientRead`), for ever,
    inside the transaction that holds the events table. Outside pipeline mode psycopg flushes
    every query completely before it reads."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        append_timeout: float = DEFAULT_APPEND_TIMEOUT,
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.append_timeout = append_timeout
        self.watchdog = AppendWatchdog(self._terminate_backend)
        self._limits_sql: dict[bool, str] = {}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                return self._append_once(stored_events, kwargs.get("idempotency"))
            except _StaleConnection as exc:
                # Nothing was sent but BEGIN (e.g. a pooled connection the server closed
                # after a restart): safe to try again on another connection.
                if attempt == CONNECT_ATTEMPTS:
                    raise StoreUnavailable(
                        f"the event store is unreachable ({exc.__cause__}); nothing was stored"
                    ) from exc
        return None  # not reached

    def _append_once(
        self, stored_events: Sequence[StoredEvent], idempotency: IdempotencyRequest | None
    ) -> list[int]:
        with self.datastore.get_connection() as conn:
            ticket = None
            try:
                with self.watchdog.guard(conn.info.backend_pid, self.append_timeout) as ticket:
                    return self._insert(conn, stored_events, idempotency)
            except psycopg.Error as exc:
                raise self._translate(exc, ticket is not None and ticket.fired) from exc
            finally:
                if ticket is not None and ticket.fired:
                    conn.close()  # its session is being ended: never back into the pool

    def _insert(
        self,
        conn: psycopg.Connection[DictRow],
        stored_events: Sequence[StoredEvent],
        idempotency: IdempotencyRequest | None,
    ) -> list[int]:
        if self.stored_event_type_name not in self.datastore.psycopg_python_types:
            self.datastore.register_type_adapters()  # the type is created by the migrations
        rows = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        with conn.cursor() as curs:
            try:
                # One round trip: begin, the limits, the table lock, the wake-up for tailers.
                curs.execute(self._begin_sql(conn))
            except psycopg.OperationalError as exc:
                if not conn.broken:
                    raise
                # The first round trip never commits, so trying again can never store twice.
                raise _StaleConnection() from exc
            try:
                curs.execute(self.insert_events_statement, (rows,))
                ids = [row["notification_id"] for row in curs.fetchall()]
                if idempotency is not None:
                    _record_idempotency(curs, idempotency, stored_events, ids)
                curs.execute("COMMIT")
            except BaseException:
                if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                    with contextlib.suppress(psycopg.Error):
                        conn.rollback()
                raise
        return ids

    def _begin_sql(self, conn: psycopg.Connection[DictRow]) -> str:
        # transaction_timeout (PostgreSQL 17+) lets the server itself end a stalled writer,
        # even one stuck mid-message; older servers rely on the watchdog alone.
        has_tx_timeout = conn.info.server_version >= 170000
        if has_tx_timeout not in self._limits_sql:
            ms = int(self.append_timeout * 1000)
            limits = [
                f"SET LOCAL lock_timeout = '{int(self.datastore.lock_timeout) * 1000 or ms}ms'",
                f"SET LOCAL statement_timeout = '{ms}ms'",
                f"SET LOCAL idle_in_transaction_session_timeout = '{ms}ms'",
            ]
            if has_tx_timeout:
                limits.append(f"SET LOCAL transaction_timeout = '{ms}ms'")
            table = f'"{self.datastore.schema}"."{self.events_table_name}"'
            self._limits_sql[has_tx_timeout] = "; ".join(
                [
                    "BEGIN",
                    *limits,
                    f"LOCK TABLE {table} IN EXCLUSIVE MODE",
                    f'NOTIFY "{self.channel_name}"',
                ]
            )
        return self._limits_sql[has_tx_timeout]

    def _translate(self, exc: psycopg.Error, fired: bool) -> Exception:
        if isinstance(exc, psycopg.IntegrityError):
            return IntegrityError(str(exc))  # the store maps it to a conflict by constraint
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return StoreBusy(
                "another append held the event store longer than the lock wait "
                f"({self.datastore.lock_timeout} s); nothing was stored, retry shortly"
            )
        timed_out = (
            psycopg.errors.QueryCanceled,
            psycopg.errors.TransactionTimeout,
            psycopg.errors.IdleInTransactionSessionTimeout,
        )
        if fired or isinstance(exc, timed_out):
            return AppendTimedOut(
                f"the append did not finish within {self.append_timeout:g} s and was rolled "
                "back; nothing was stored"
            )
        return StoreUnavailable(f"the event store connection failed during an append ({exc})")

    def _terminate_backend(self, backend_pid: int) -> None:
        pool = self.datastore.pool
        kwargs = {**cast(dict[str, Any], pool.kwargs), "connect_timeout": 5, "autocommit": True}
        with psycopg.connect(cast(str, pool.conninfo), **kwargs) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))


class _StaleConnection(Exception):
    """The connection failed before the append's transaction began."""


def _record_idempotency(
    curs: psycopg.Cursor[DictRow],
    request: IdempotencyRequest,
    stored_events: Sequence[StoredEvent],
    ids: Sequence[int],
) -> None:
    results = [
        {"id": str(e.originator_id), "version": e.originator_version, "position": i}
        for e, i in zip(stored_events, ids, strict=True)
    ]
    curs.execute(
        f"INSERT INTO {IDEMPOTENCY_TABLE} (key, request_hash, results) "  # noqa: S608
        "VALUES (%s, %s, %s)",
        (request.key, request.request_hash, Jsonb(results)),
    )


class LedgerFactory(PostgresFactory):
    """The library's Postgres factory, building our recorder with its append bound."""

    APPEND_TIMEOUT = "APPEND_TIMEOUT"

    def application_recorder(self) -> ApplicationRecorder:
        prefix = self.env.name.lower() or "stored"
        timeout = float(self.env.get(self.APPEND_TIMEOUT) or DEFAULT_APPEND_TIMEOUT)
        recorder = LedgerRecorder(
            self.datastore, events_table_name=f"{prefix}_events", append_timeout=timeout
        )
        if self.env_create_table():
            recorder.create_table()
        return recorder


class LedgerApplication(Application[UUID]):
    name = "Ledger"  # tables are named ledger_*

    def close(self) -> None:
        recorder = self.recorder
        if isinstance(recorder, LedgerRecorder):
            recorder.watchdog.close()
        super().close()

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
