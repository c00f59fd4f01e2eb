"""The vector index projection: keeps a vector store in step with `rm_search`.

The current-state writers put every changed item in `vector_outbox` in their own transaction;
the indexer drains it: it reads the item's units from `rm_search`, embeds the ones whose text
changed (a hash in the payload says which), upserts points with deterministic ids, removes the
points of chunks that no longer exist (or of a deleted item), and only then deletes the outbox
rows it covered, guarded by version. A crash at any step re-does the work idempotently, so the
effect is exactly once. One indexer runs at a time (an advisory lock).

An index generation is one model and dimension with its collections. `rebuild` fills a new
generation beside the live one and switches when it is complete: queries never see a
half-built or mixed index."""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from psycopg import Connection
from psycopg.rows import dict_row

from projections import advisory_locks
from projections.kinds import KINDS
from projections.vector_ports import (
    Embedder,
    SparseEncoder,
    SparseVector,
    VectorPoint,
    VectorStore,
)

log = structlog.get_logger("projections.vectors")

Connect = Callable[[], AbstractContextManager[Connection[Any]]]
COLLECTIONS = {name: kind.collection for name, kind in KINDS.items()}
VECTOR_LOCK = advisory_locks.VECTOR_INDEX
UNIT_COLUMNS = (
    "kind, id, chunk, slug, name, heading, body, status, category, tags, owner, link_id, "
    "deleted, version, position"
)


class IndexMismatch(Exception):
    """The live index was built with another model or dimension than this process embeds with."""


class IndexOwnedElsewhere(Exception):
    """Another store (process) keeps this database's live index and has said so recently."""


OWNER_LEASE_SECONDS = 30.0  # an owner silent this long may be replaced
HEARTBEAT_SECONDS = 5.0


HYBRID, DENSE_ONLY = "hybrid", "dense"  # layouts: dense + BM25 vectors, or the first (dense)


@dataclass(frozen=True)
class Generation:
    name: str
    model: str
    dimension: int
    layout: str = HYBRID

    @property
    def hybrid(self) -> bool:
        return self.layout == HYBRID

    def collection(self, kind: str) -> str:
        return f"ledger_{COLLECTIONS[kind]}__{self.name}"


def new_generation(embedder: Embedder, layout: str = HYBRID) -> Generation:
    slug = re.sub(r"[^a-z0-9]+", "-", embedder.model.lower()).strip("-")
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
    name = f"{slug}-{embedder.dimension}-{stamp}"
    return Generation(name, embedder.model, embedder.dimension, layout)


def point_id(aggregate_id: Any, chunk: int) -> str:
    return str(uuid.uuid5(uuid.UUID(str(aggregate_id)), str(chunk)))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def active_generation(conn: Connection[Any]) -> Generation | None:
    live = live_index(conn)
    return live[0] if live else None


def live_index(conn: Connection[Any]) -> tuple[Generation, str | None] | None:
    """The live generation and the store keeping it, in one query (every search asks)."""
    row = _one(
        conn,
        "SELECT generation, model, dimension, layout, owner FROM vector_indexes "
        "WHERE status = 'active'",
    )
    if row is None:
        return None
    generation = Generation(row["generation"], row["model"], row["dimension"], row["layout"])
    return generation, row["owner"]


def index_owner(conn: Connection[Any]) -> tuple[str | None, bool]:
    """The store keeping the live index, and whether its lease has lapsed."""
    row = _one(
        conn,
        "SELECT owner, coalesce(owner_seen_at < now() - make_interval(secs => %s), true) "
        "AS lapsed FROM vector_indexes WHERE status = 'active'",
        (OWNER_LEASE_SECONDS,),
    )
    return (row["owner"], row["lapsed"]) if row else (None, True)


def check_owner(owner: str | None, store: VectorStore) -> None:
    if owner is not None and owner != store.identity:
        raise IndexOwnedElsewhere(
            f"the vector index of this database is kept by another process ({owner}); this "
            f"process's index ({store.identity}) would be stale. Run one serving process per "
            "database with the embedded index, or share a Qdrant server (QDRANT_URL)"
        )


def _one(conn: Connection[Any], sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchone()


def _all(conn: Connection[Any], sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def check_model(generation: Generation, embedder: Embedder) -> None:
    if (generation.model, generation.dimension) != (embedder.model, embedder.dimension):
        raise IndexMismatch(
            f"the vector index was built with {generation.model} ({generation.dimension} "
            f"dimensions), but this process embeds with {embedder.model} "
            f"({embedder.dimension}); run `mcp-ledger rebuild vectors` to build an index for "
            "this model, or configure the index's model"
        )


class VectorIndexer:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        connect: Connect,
        batch_size: int = 256,
        sparse: SparseEncoder | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.connect = connect
        self.batch_size = batch_size
        # BM25 beside the dense vectors; without it, generations are built dense only.
        self.sparse = sparse
        self.layout = HYBRID if sparse is not None else DENSE_ONLY
        self.generation: Generation | None = None
        # The live generation has an older layout: run() builds a new one first.
        self.upgrade_pending = False
        self._since_optimize = 0

    # -- start-up ---------------------------------------------------------------------------

    def prepare(self) -> Generation:
        """Adopts the live generation (which must be this model's) or creates the first one;
        a missing or emptied store is refilled from `rm_search`."""
        me = self.store.identity
        with self.connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (VECTOR_LOCK,))
            generation = active_generation(conn)
            if generation is None:
                generation = new_generation(self.embedder, self.layout)
                conn.execute(
                    "INSERT INTO vector_indexes (generation, model, dimension, layout, status, "
                    "activated_at, owner, owner_seen_at) "
                    "VALUES (%s, %s, %s, %s, 'active', now(), %s, now())",
                    (generation.name, generation.model, generation.dimension, generation.layout,
                     me),
                )  # fmt: skip
            self.upgrade_pending = generation.layout != self.layout
            check_model(generation, self.embedder)
            owner, lapsed = index_owner(conn)
            if owner != me and not lapsed:
                check_owner(owner, self.store)
            # Taking over from another store: this one may hold an old copy, so every item is
            # checked again (unchanged texts keep their vectors, nothing is re-embedded).
            taken_over = owner is not None and owner != me
            conn.execute(
                "UPDATE vector_indexes SET owner = %s, owner_seen_at = now() "
                "WHERE status = 'active'",
                (me,),
            )
            empty = True
            for kind in COLLECTIONS:
                self._ensure(generation, kind)
                empty = empty and self.store.count(generation.collection(kind)) == 0
            if empty or taken_over:
                _enqueue_all(conn)
        self.generation = generation
        return generation

    # -- live indexing ----------------------------------------------------------------------

    def run_once(self) -> int:
        """Indexes one batch from the outbox; returns how many items it covered. No database
        transaction stays open while the model embeds: the lock is a session lock, released
        after each batch so a rebuild can take it between batches."""
        generation = self.generation or self.prepare()
        with self.connect() as conn:
            locked = _one(conn, "SELECT pg_try_advisory_lock(%s) AS ok", (VECTOR_LOCK,))
            if not (locked and locked["ok"]):
                return 0  # a rebuild is running, or another indexer
            try:
                return self._drain_batch(conn, generation)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (VECTOR_LOCK,))

    def _drain_batch(self, conn: Connection[Any], generation: Generation) -> int:
        if live_index(conn) != (generation, self.store.identity):
            self.generation = None  # switched by a rebuild, or taken over: prepare again
            return 0
        rows = _all(
            conn,
            "SELECT id, kind FROM vector_outbox ORDER BY position LIMIT %s",
            (self.batch_size,),
        )
        if not rows:
            return 0
        units = _units(conn, [r["id"] for r in rows])
        versions = self.index(generation, units, {(r["id"], r["kind"]) for r in rows})
        # Only the versions indexed: a newer change that arrived meanwhile stays queued.
        conn.execute(
            "DELETE FROM vector_outbox o USING unnest(%s::uuid[], %s::int[]) AS d(id, v) "
            "WHERE o.id = d.id AND o.version <= d.v",
            (list(versions), list(versions.values())),
        )
        self._maybe_optimize(generation, len(rows))
        return len(rows)

    def index(
        self,
        generation: Generation,
        units: Sequence[dict[str, Any]],
        items: set[tuple[Any, str]],
    ) -> dict[Any, int]:
        """Makes the store hold exactly these items' live units; returns each item's version."""
        by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for unit in units:
            by_kind[unit["kind"]].append(unit)
        versions: dict[Any, int] = {}
        for kind in {k for _, k in items}:
            ids = [str(i) for i, k in items if k == kind]
            versions.update(self._index_kind(generation, kind, ids, by_kind[kind]))
        for item_id, _ in items:
            versions.setdefault(item_id, 0)  # no units at all: nothing left to index
        return versions

    def _ensure(self, generation: Generation, kind: str) -> None:
        collection = generation.collection(kind)
        self.store.ensure_collection(collection, generation.dimension, hybrid=generation.hybrid)

    def _index_kind(
        self, generation: Generation, kind: str, ids: list[str], units: list[dict[str, Any]]
    ) -> dict[Any, int]:
        collection = generation.collection(kind)
        existing = {p.id: p for p in self.store.points_of(collection, ids)}
        live = [u for u in units if not u["deleted"]]
        hashes = [text_hash(u["body"]) for u in live]
        pids = [point_id(u["id"], u["chunk"]) for u in live]
        vectors: list[Any] = [None] * len(live)
        todo = []
        for i, (pid, digest) in enumerate(zip(pids, hashes, strict=True)):
            old = existing.get(pid)
            if (
                old is not None
                and old.vector is not None
                and old.payload.get("text_hash") == digest
            ):
                vectors[i] = old.vector  # same text: the same vector, no model call
            else:
                todo.append(i)
        if todo:
            fresh = self.embedder.embed([live[i]["body"] for i in todo])
            for i, vector in zip(todo, fresh, strict=True):
                vectors[i] = vector.tolist()
        sparse: list[SparseVector | None] = [None] * len(live)
        if generation.hybrid:
            if self.sparse is None:
                raise IndexMismatch(
                    f"the vector index generation {generation.name} holds BM25 vectors, which "
                    "this indexer was not given the encoder for"
                )
            avg_len = KINDS[kind].bm25_avg_len
            sparse = [self.sparse.document(u["body"], avg_len) for u in live]
        points = [
            VectorPoint(pid, vector, _payload(unit, digest), bow)
            for pid, vector, unit, digest, bow in zip(
                pids, vectors, live, hashes, sparse, strict=True
            )
        ]
        self.store.upsert(collection, points)
        self.store.delete(collection, sorted(set(existing) - set(pids)))
        return {u["id"]: u["version"] for u in units}

    def _maybe_optimize(self, generation: Generation, count: int) -> None:
        # Fresh points sit in a small unindexed segment; past a few thousand, index them.
        self._since_optimize += count
        if self._since_optimize >= 5000:
            self._since_optimize = 0
            for kind in COLLECTIONS:
                self.store.optimize(generation.collection(kind))

    def catch_up(self) -> int:
        total = 0
        while count := self.run_once():
            total += count
        return total

    def run(self, stop: threading.Event, idle_wait: float = 0.1) -> None:
        """Drains the outbox until `stop` is set, renewing this store's ownership of the index
        as it goes; on the way out it gives the ownership up, so a successor need not wait."""
        beat = told = 0.0
        try:
            self._upgrade_if_pending()
            while not stop.is_set():
                try:
                    if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                        self.heartbeat()
                        beat = time.monotonic()
                    count = self.run_once()
                except IndexOwnedElsewhere as exc:  # wait for the owner to stop or go silent
                    if time.monotonic() - told >= 60:
                        log.error("vector_index_owned_elsewhere", error=str(exc))
                        told = time.monotonic()
                    stop.wait(1.0)
                    continue
                except Exception as exc:  # keep going: the outbox keeps the work until done
                    log.error("vector_index_failed", error=f"{type(exc).__name__}: {exc}")
                    stop.wait(5.0)
                    continue
                if count == 0:
                    stop.wait(idle_wait)
        finally:
            self.release()

    def _upgrade_if_pending(self) -> None:
        """A live generation of an older layout is rebuilt in the new one (searches keep the
        old generation meanwhile)."""
        if self.generation is None:
            try:
                self.prepare()
            except Exception:  # run()'s loop reports and retries
                return
        if self.upgrade_pending:
            log.info("vector_index_upgrade", layout=self.layout, reason="older layout")
            generation, count = self.rebuild()
            log.info("vector_index_upgraded", generation=generation.name, points=count)
            self.upgrade_pending = False

    def heartbeat(self) -> None:
        with self.connect() as conn:
            conn.execute(
                "UPDATE vector_indexes SET owner_seen_at = now() "
                "WHERE status = 'active' AND owner = %s",
                (self.store.identity,),
            )

    def release(self) -> None:
        try:
            with self.connect() as conn:
                conn.execute(
                    "UPDATE vector_indexes SET owner_seen_at = NULL "
                    "WHERE status = 'active' AND owner = %s",
                    (self.store.identity,),
                )
        except Exception as exc:  # the lease then simply runs out
            log.warning("vector_index_release_failed", error=f"{type(exc).__name__}: {exc}")

    # -- rebuild ----------------------------------------------------------------------------

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> tuple[Generation, int]:
        """Builds a new generation with this indexer's model from `rm_search` beside the live
        one, switches to it and drops the old one. Returns the new generation and its point
        count. The live indexer is paused meanwhile (the lock): queries keep the old, complete
        index, and changes wait in the outbox, which the live indexer then applies to the new
        generation (idempotently, for those the rebuild already saw)."""
        generation = new_generation(self.embedder, self.layout)
        with self.connect() as lock_conn:
            lock_conn.execute("SELECT pg_advisory_lock(%s)", (VECTOR_LOCK,))
            try:
                old = self._build(generation, progress)
            finally:
                lock_conn.execute("SELECT pg_advisory_unlock(%s)", (VECTOR_LOCK,))
        for kind in COLLECTIONS:
            if old is not None and old.name != generation.name:
                self.store.drop_collection(old.collection(kind))
        self.generation = generation
        count = sum(self.store.count(generation.collection(k)) for k in COLLECTIONS)
        return generation, count

    def _build(
        self, generation: Generation, progress: Callable[[int, int], None] | None
    ) -> Generation | None:
        for kind in COLLECTIONS:
            self._ensure(generation, kind)
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO vector_indexes (generation, model, dimension, layout, status) "
                "VALUES (%s, %s, %s, %s, 'building')",
                (generation.name, generation.model, generation.dimension, generation.layout),
            )
            counted = _one(conn, "SELECT count(DISTINCT id) AS n FROM rm_search")
            total = int(counted["n"]) if counted else 0
        done = 0
        for units in _all_items(self.connect, self.batch_size):
            items = {(u["id"], u["kind"]) for u in units}
            self.index(generation, units, items)
            done += len(items)
            if progress:
                progress(done, total)
        for kind in COLLECTIONS:
            self.store.optimize(generation.collection(kind))
        with self.connect() as conn, conn.transaction():
            old = active_generation(conn)
            conn.execute("DELETE FROM vector_indexes WHERE status = 'active'")
            conn.execute(
                "UPDATE vector_indexes SET status = 'active', activated_at = now(), owner = %s, "
                "owner_seen_at = now() WHERE generation = %s",
                (self.store.identity, generation.name),
            )
        return old


def vectors_caught_up(conn: Connection[Any], position: int) -> bool:
    """Whether every change up to `position` that the current state has applied is indexed."""
    row = _one(
        conn,
        "SELECT NOT EXISTS (SELECT 1 FROM vector_outbox WHERE position <= %s) AS done",
        (position,),
    )
    return bool(row and row["done"])


def live_units(conn: Connection[Any]) -> int:
    """How many points a complete index holds: the units of items not deleted."""
    row = _one(conn, "SELECT count(*) AS n FROM rm_search WHERE NOT deleted")
    return int(row["n"]) if row else 0


def _payload(unit: dict[str, Any], digest: str) -> dict[str, Any]:
    return {
        "aggregate_id": str(unit["id"]),
        "kind": unit["kind"],
        "chunk": unit["chunk"],
        "version": unit["version"],
        "slug": unit["slug"],
        "status": unit["status"],
        "category": unit["category"],
        "tags": list(unit["tags"]),
        "owner": unit["owner"],
        "link_id": str(unit["link_id"]) if unit["link_id"] else None,
        "deleted": unit["deleted"],
        "text_hash": digest,
    }


def _units(conn: Connection[Any], ids: Sequence[Any]) -> list[dict[str, Any]]:
    return _all(
        conn,
        f"SELECT {UNIT_COLUMNS} FROM rm_search WHERE id = ANY(%s) ORDER BY id, chunk",  # noqa: S608
        (list(ids),),
    )


def _all_items(connect: Connect, batch: int) -> Iterator[list[dict[str, Any]]]:
    """Every item's units, about `batch` items at a time, in id order (a keyset)."""
    after = uuid.UUID(int=0)
    while True:
        with connect() as conn:
            rows = _all(
                conn,
                "SELECT DISTINCT id FROM rm_search WHERE id > %s ORDER BY id LIMIT %s",
                (after, batch),
            )
            ids = [r["id"] for r in rows]
            if not ids:
                return
            after = ids[-1]
            units = _units(conn, ids)
        yield units


def _enqueue_all(conn: Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO vector_outbox (id, kind, version, position) "
        "SELECT id, kind, max(version), max(position) FROM rm_search GROUP BY id, kind "
        "ON CONFLICT (id) DO NOTHING"
    )


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True
