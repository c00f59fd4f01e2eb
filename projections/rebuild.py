"""Rebuild a read model from the event store: drop it, fold the whole log in memory with the
domain's `evolve`, and write the result in bulk (COPY / pipelined upserts). Live appliers take
a shared lock and a rebuild an exclusive one, so they never interleave."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from psycopg import Connection, Cursor

from projections.current_state import CurrentState, write_all
from projections.folding import Folded, fold_one, history_row
from projections.history import History, copy_history
from projections.kinds import KINDS
from projections.positions import LOG_SOURCE
from projections.records import EventRecord
from projections.runner import PROJECTION_LOCK, Projection

ReadLog = Callable[[int, int], list[EventRecord]]


def fold(records: Iterator[EventRecord], on_history: Callable[[list[Any]], None] | None = None,
         progress: Callable[[int], None] | None = None) -> dict[UUID, Folded]:  # fmt: skip
    """Folds a stream of records (in log order) into per-aggregate state; `on_history` gets the
    history rows of each chunk, so they can be streamed to the database."""
    folded: dict[UUID, Folded] = {}
    chunk: list[Any] = []
    for count, record in enumerate(records, 1):
        if record.kind in KINDS:
            f = fold_one(folded, record)
            if on_history is not None:
                chunk.append(history_row(f, record))
        if count % 5000 == 0:
            if on_history is not None:
                on_history(chunk)
                chunk = []
            if progress:
                progress(5000)
    if on_history is not None and chunk:
        on_history(chunk)
    return folded


def stream_log(read_log: ReadLog, batch: int = 5000) -> Iterator[EventRecord]:
    """The whole log in order. The next batch is fetched in a thread while the caller works on
    this one, so Postgres (another process) reads ahead instead of waiting for us."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-reader") as reader:
        records = read_log(0, batch)
        while records:
            ahead = reader.submit(read_log, records[-1].position, batch)
            yield from records
            records = ahead.result()


def _reset_bookkeeping(cur: Cursor[Any], name: str) -> None:
    # Kafka checkpoints stay: the consumer group's offsets do not rewind with a rebuild.
    for table in ("projection_versions", "projection_dead_letters"):
        cur.execute(f"DELETE FROM {table} WHERE projection = %s", (name,))  # noqa: S608


def _checkpoint_rebuilt(cur: Cursor[Any], name: str, head: int) -> None:
    """Everything up to `head` is applied now: the log checkpoint is `head`, and every Kafka
    partition whose last relayed position is at or below `head` is caught up."""
    cur.execute(
        """INSERT INTO projection_checkpoints (projection, source, position)
        SELECT %(name)s, %(log)s, %(head)s
        UNION ALL
        SELECT %(name)s, p.topic || ':' || p.partition, p.position
        FROM relay_partitions p WHERE p.position <= %(head)s
        ON CONFLICT (projection, source) DO UPDATE SET
            position = CASE WHEN EXCLUDED.source = %(log)s THEN EXCLUDED.position
                ELSE GREATEST(projection_checkpoints.position, EXCLUDED.position) END,
            updated_at = now()""",
        {"name": name, "log": LOG_SOURCE, "head": head},
    )


def _write_versions(cur: Cursor[Any], name: str, folded: dict[UUID, Folded]) -> None:
    with cur.copy("COPY projection_versions (projection, aggregate_id, version) FROM STDIN") as cp:
        for aggregate_id, f in folded.items():
            if f.last is not None:
                cp.write_row((name, aggregate_id, f.last.version))


def rebuild(
    conn: Connection[Any],
    projections: list[Projection],
    read_log: ReadLog,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rebuilds the given projections in one transaction; returns the log position reached."""
    names = {p.name for p in projections}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (PROJECTION_LOCK,))
        for p in projections:
            p.reset(cur)
            _reset_bookkeeping(cur, p.name)
        head = 0

        def history_sink(rows: list[Any]) -> None:
            copy_history(cur, rows)

        def tracked() -> Iterator[EventRecord]:
            nonlocal head
            for record in stream_log(read_log):
                head = record.position
                yield record

        on_history = history_sink if History.name in names else None
        folded = fold(tracked(), on_history, progress)
        if CurrentState.name in names:
            write_all(cur, folded)
        for name in names:
            _write_versions(cur, name, folded)
            _checkpoint_rebuilt(cur, name, head)
    return head
