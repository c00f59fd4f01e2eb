"""Appends that are large or stall: a batch bigger than the socket's send buffer completes (it
hung for ever on the embedded Postgres while psycopg's pipeline mode was used), and a writer
stalled while holding the events table is ended within its bound, so the others carry on."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from commands.errors import AppendTimedOut, StoreUnavailable
from commands.ports import IdempotencyRequest
from infra.postgres.event_store import LedgerApplication, LedgerRecorder, eventsourcing_env
from infra.postgres.schema import ensure_schema
from tests.conftest import _with_db

pytestmark = pytest.mark.backends("server", "embedded")

APPEND_TIMEOUT = 2.0
TOPIC = "tests.append:Probe"


def events(n: int, size: int) -> list[StoredEvent]:
    body = b'{"pad":"' + b"x" * size + b'"}'
    return [StoredEvent(uuid.uuid4(), 1, TOPIC, body) for _ in range(n)]


def stored(database_url: str, ids: list[uuid.UUID]) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM ledger_events WHERE originator_id = ANY(%s)", (ids,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def session_state(database_url: str, pid: int) -> tuple[str, str] | None:
    with psycopg.connect(database_url) as conn:
        for _ in range(50):
            row = conn.execute(
                "SELECT state, wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row and row[1] == "ClientRead":
                return (row[0], row[1])
            time.sleep(0.02)
    return None


@pytest.fixture
def own_db(database_url: str) -> Iterator[str]:
    """A database of its own: these probe events are no tool's, and the session's read models
    must never see them."""
    server = _with_db(database_url, "postgres")
    name = f"ledger_append_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_db(database_url, name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def app(own_db: str) -> Iterator[LedgerApplication]:
    ensure_schema(own_db, auto_migrate=True)
    application = LedgerApplication(env=eventsourcing_env(own_db, 4, APPEND_TIMEOUT))
    yield application
    application.close()


@pytest.mark.parametrize("size", [300, 2_000])
def test_a_batch_larger_than_the_socket_buffer_is_appended(app, own_db, size) -> None:  # type: ignore[no-untyped-def]
    # 1,000 events of 2 KB is a ~2 MB query: ten times a unix socket's send buffer.
    batch = events(1_000, size)
    positions = app.recorder.insert_events(batch)
    assert positions is not None
    assert len(positions) == 1_000
    assert positions == sorted(positions)
    assert stored(own_db, [e.originator_id for e in batch]) == 1_000


class StallingRecorder(LedgerRecorder):
    """Takes the table lock, then stops half-way through sending a query and waits, as the
    pipelined insert did: the server session is *active* in ClientRead, where neither the
    statement nor the idle-in-transaction timeout fires."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.locked = threading.Event()
        self.backend_pid = 0

    def _insert(self, conn, stored_events, idempotency):  # type: ignore[no-untyped-def]
        with conn.cursor() as curs:
            curs.execute(self._begin_sql(conn))
        self.backend_pid = conn.info.backend_pid
        pgconn = conn.pgconn
        pgconn.nonblocking = 1
        # Parse arrives whole and is run; the Bind with the big value arrives only in part.
        pgconn.send_query_params(b"SELECT $1::text", [b"x" * 64_000_000])
        self.locked.set()
        self.release.wait(60)
        conn.execute("COMMIT")  # the session is gone by now
        return []


def test_a_stalled_writer_is_ended_and_the_others_carry_on(app, own_db) -> None:  # type: ignore[no-untyped-def]
    stalled = StallingRecorder(
        app.recorder.datastore,
        events_table_name="ledger_events",
        append_timeout=APPEND_TIMEOUT,
    )
    mine = events(3, 100)
    outcome: dict[str, BaseException | None] = {}

    def stall() -> None:
        try:
            stalled.insert_events(mine, idempotency=IdempotencyRequest(uuid.uuid4().hex, "h"))
            outcome["error"] = None
        except BaseException as exc:
            outcome["error"] = exc

    writer = threading.Thread(target=stall)
    writer.start()
    assert stalled.locked.wait(10)
    try:
        assert session_state(own_db, stalled.backend_pid) == ("active", "ClientRead")
        others = events(5, 100)
        started = time.monotonic()
        app.recorder.insert_events(others)  # waits behind the lock, then goes through
        waited = time.monotonic() - started
        assert stored(own_db, [e.originator_id for e in others]) == 5
        # Ended by the append bound, well before the other writer's lock wait (10 s) ran out.
        assert waited < 10, waited
    finally:
        stalled.release.set()
        writer.join(30)
    error = outcome["error"]
    assert isinstance(error, StoreUnavailable), error
    assert isinstance(error, AppendTimedOut) or "connection" in str(error)
    assert stored(own_db, [e.originator_id for e in mine]) == 0
    # The store is free: a plain append goes straight through.
    assert len(app.recorder.insert_events(events(2, 10)) or []) == 2
    stalled.watchdog.close()


def test_the_watchdog_ends_the_session_itself(app, own_db) -> None:  # type: ignore[no-untyped-def]
    """On servers without transaction_timeout (PostgreSQL < 17) only the watchdog ends a
    writer stuck mid-message; it must do so on every server."""
    recorder = app.recorder
    with psycopg.connect(own_db, autocommit=True) as victim:
        pid = victim.info.backend_pid
        with recorder.watchdog.guard(pid, 0.5) as ticket:
            deadline = time.monotonic() + 10
            while not ticket.fired and time.monotonic() < deadline:
                time.sleep(0.05)
        assert ticket.fired
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")


def test_an_append_within_its_bound_is_never_ended(app) -> None:  # type: ignore[no-untyped-def]
    recorder = app.recorder
    with psycopg.connect(recorder.datastore.pool.conninfo, **recorder.datastore.pool.kwargs) as c:
        with recorder.watchdog.guard(c.info.backend_pid, 1.0) as ticket:
            c.execute("SELECT 1")
        time.sleep(1.5)
        assert not ticket.fired
        assert c.execute("SELECT 2").fetchone() is not None
