"""Property: whatever the sequence of changes, and wherever the indexer is interrupted (a failure
before or after a store write), the vector index converges to exactly the live units of
`rm_search`: one point per unit with its version and text, none for deleted items or chunks
that no longer exist, and an empty outbox. Real Postgres (a database of its own), the real
model and an embedded Qdrant."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands import documents, tools
from commands.context import CommandContext
from commands.inputs import RegisterTool
from projections.vector_index import COLLECTIONS, VectorIndexer, point_id, text_hash
from projections.vector_ports import VectorStore
from tests.conftest import tool_body
from tests.kafka_pipeline_support import fresh_database

TEXTS = [
    "Tomorrow's temperature and rain for a city",
    "Converts money between currencies",
    "Sends a text message to a phone",
]
RUNBOOK = {"title": "Runbook", "content": "Refunds.", "content_type": "text/plain"}
PARAGRAPHS = ["Refunds go back to the card. " * 30, "Chargebacks need evidence. " * 30, "Short."]


class Interrupted(Exception):
    pass


class FailingStore:
    """The real store, failing once at a chosen write (before or after doing it)."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self.fail_at: tuple[str, int, bool] | None = None  # (method, nth call, after the write)
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name not in ("upsert", "delete"):
            return attr

        def write(*args: Any) -> Any:
            n = self.calls[name] = self.calls.get(name, 0) + 1
            fail = self.fail_at is not None and self.fail_at[:2] == (name, n)
            if fail and self.fail_at and not self.fail_at[2]:
                raise Interrupted(name)
            result = attr(*args)
            if fail:
                raise Interrupted(name)
            return result

        return write


@pytest.fixture(scope="module")
def world(secret_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from infra.container import build_container
    from infra.settings import load_settings

    with fresh_database("vc") as url:
        settings_ = load_settings(
            database_url=url, secret_key=secret_key,
            data_dir=tmp_path_factory.mktemp("vc"), read_feed="log",
        )  # fmt: skip
        container = build_container(settings_)
        parts = container.search_parts()
        assert parts.store is not None
        assert parts.embedder is not None
        yield container, parts
        container.close()


operation = st.one_of(
    st.tuples(st.just("describe"), st.integers(0, 1), st.sampled_from(TEXTS)),
    st.tuples(st.just("deprecate"), st.integers(0, 1), st.none()),
    st.tuples(st.just("delete"), st.integers(0, 1), st.none()),
    st.tuples(st.just("restore"), st.integers(0, 1), st.none()),
    st.tuples(st.just("revise"), st.just(0), st.lists(st.sampled_from(PARAGRAPHS), max_size=3)),
    st.tuples(st.just("remove"), st.just(0), st.none()),
    st.tuples(st.just("restore_doc"), st.just(0), st.none()),
    st.tuples(
        st.just("index"),
        st.integers(1, 3),
        st.one_of(
            st.none(),
            st.tuples(st.sampled_from(["upsert", "delete"]), st.integers(1, 3), st.booleans()),
        ),
    ),
)


def apply(container: Any, op: tuple[str, int, Any], ids: dict[str, Any], index: Any) -> None:
    ctx = CommandContext(actor="property", correlation_id="vector-convergence")
    deps = container.deps
    kind, n, arg = op
    try:
        if kind == "describe":
            tools.update_tool(deps, ids["tools"][n], {"description": arg}, ctx)
        elif kind == "deprecate":
            tools.deprecate_tool(deps, ids["tools"][n], ctx)
        elif kind == "delete":
            tools.delete_tool(deps, ids["tools"][n], ctx)
        elif kind == "restore":
            tools.restore_tool(deps, ids["tools"][n], ctx)
        elif kind == "revise":
            content = "\n\n".join(f"# Part {i}\n\n{p}" for i, p in enumerate(arg)) or "Empty."
            documents.revise_document(deps, ids["doc"], {"content": content}, ctx)
        elif kind == "remove":
            documents.remove_document(deps, ids["doc"], ctx)
        elif kind == "restore_doc":
            documents.restore_document(deps, ids["doc"], ctx)
    except Exception as exc:  # an illegal transition (e.g. restore what is not deleted)
        if type(exc).__name__ not in ("IllegalTransition", "InvalidInput", "NotFound"):
            raise
    container.read_side.follower.catch_up()
    if kind == "index":
        index(n, arg)


def expected_points(container: Any) -> dict[str, dict[str, tuple[int, str]]]:
    with container.read_side.connection() as conn:
        rows = conn.execute(
            "SELECT kind, id, chunk, version, body FROM rm_search WHERE NOT deleted"
        ).fetchall()
    out: dict[str, dict[str, tuple[int, str]]] = {k: {} for k in COLLECTIONS}
    for r in rows:
        out[r["kind"]][point_id(r["id"], r["chunk"])] = (r["version"], text_hash(r["body"]))
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(operation, min_size=1, max_size=12))
def test_the_index_converges_whatever_fails(world, ops) -> None:
    container, parts = world
    ctx = CommandContext(actor="property", correlation_id="vector-convergence")
    deps = container.deps
    ids = {
        "tools": [
            str(tools.register_tool(deps, RegisterTool(**tool_body(description=t)).given(), ctx).id)
            for t in TEXTS[:2]
        ],
        "doc": str(documents.add_document(deps, RUNBOOK, ctx).id),
    }
    container.read_side.follower.catch_up()
    failing = FailingStore(parts.store)
    store: Any = failing
    indexer = VectorIndexer(
        store, parts.embedder, container.read_side.connection, batch_size=2, sparse=parts.sparse
    )

    def index(batches: int, fault: Any) -> None:
        failing.calls.clear()
        failing.fail_at = fault
        for _ in range(batches):
            with contextlib.suppress(Interrupted):
                indexer.run_once()
        failing.fail_at = None

    for op in ops:
        apply(container, op, ids, index)
    indexer.catch_up()

    generation = indexer.generation
    assert generation is not None
    want = expected_points(container)
    for kind in COLLECTIONS:
        collection = generation.collection(kind)
        mine = [str(i) for i in ids["tools"]] if kind == "tool" else [str(ids["doc"])]
        if kind == "dataset":
            continue
        stored = {
            p.id: (p.payload["version"], p.payload["text_hash"])
            for p in parts.store.points_of(collection, mine)
        }
        expected = {pid: v for pid, v in want[kind].items() if pid in _points_of(want[kind], mine)}
        assert stored == expected
    with container.read_side.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM vector_outbox").fetchone() == {"n": 0}


def _points_of(points: dict[str, Any], aggregate_ids: list[str]) -> set[str]:
    """The expected point ids of these aggregates (point ids derive from aggregate and chunk)."""
    return {point_id(a, c) for a in aggregate_ids for c in range(50)} & set(points)


def test_one_store_keeps_the_index_of_a_database(world, tmp_path) -> None:
    from infra.search.vector_store import EdgeVectorStore
    from projections.search import Searcher
    from projections.search_types import SearchRequest
    from projections.vector_index import IndexOwnedElsewhere

    container, parts = world
    connect = container.read_side.connection
    first = VectorIndexer(parts.store, parts.embedder, connect, sparse=parts.sparse)
    first.prepare()
    first.catch_up()
    other = EdgeVectorStore(tmp_path / "other")
    second = VectorIndexer(other, parts.embedder, connect, sparse=parts.sparse)
    try:
        with pytest.raises(IndexOwnedElsewhere, match="kept by another process"):
            second.prepare()
        with connect() as conn:
            result = Searcher(parts.embedder, other).search(conn, SearchRequest(q="money"))
        assert result.mode == "lexical"
        assert "kept by another process" in result.warnings[0]

        first.release()  # e.g. the owner stopped: the next one takes over at once
        second.prepare()
        second.catch_up()
        want = expected_points(container)
        for kind in ("tool", "document"):
            collection = second.generation.collection(kind)  # type: ignore[union-attr]
            assert other.count(collection) == len(want[kind])
        with connect() as conn:
            assert Searcher(parts.embedder, other).search(conn, SearchRequest(q="x")).warnings == []
            assert (
                "kept by another"
                in Searcher(parts.embedder, parts.store)
                .search(conn, SearchRequest(q="x"))
                .warnings[0]
            )
    finally:
        second.release()
        other.close()
        first.prepare()  # hand the index back to the module's store
        first.catch_up()
