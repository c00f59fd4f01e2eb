"""One contract suite run against both vector stores: the embedded Qdrant Edge shard and
qdrant-client (here in its in-process mode; the same client code talks to a Qdrant server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from infra.search.vector_store import EdgeVectorStore, QdrantServerStore, VectorStoreError
from projections.vector_index import point_id
from projections.vector_ports import Fusion, VectorFilter, VectorPoint, VectorStore

DIM = 8


def open_store(kind: str, tmp_path: Path) -> VectorStore:
    """Both stores behind the port: the embedded Edge shard and the server client (in memory)."""
    if kind == "edge":
        return EdgeVectorStore(tmp_path / "vectors")
    return QdrantServerStore(":memory:")


@pytest.fixture(params=["edge", "qdrant-client"])
def store(request, tmp_path: Path) -> Iterator[VectorStore]:
    s = open_store(request.param, tmp_path)
    s.ensure_collection("tools", DIM)
    yield s
    s.close()


def vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM)
    return list(v / np.linalg.norm(v))


def item(seed: int, chunks: int = 1, **payload: object) -> list[VectorPoint]:
    aggregate = str(uuid.UUID(int=seed + 1))
    return [
        VectorPoint(point_id(aggregate, c), vec(seed * 100 + c),
                    {"aggregate_id": aggregate, "chunk": c, "status": "active", "tags": [],
                     **payload})
        for c in range(chunks)
    ]  # fmt: skip


def test_nearest_first_with_cosine_scores(store) -> None:
    for seed in range(20):
        store.upsert("tools", item(seed))
    hits = store.query("tools", vec(700), VectorFilter(), 5)
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    exact = store.query("tools", vec(700), VectorFilter(), 1)
    assert exact[0].id == point_id(str(uuid.UUID(int=8)), 0)
    assert exact[0].score == pytest.approx(1.0, abs=1e-5)


def test_filters(store) -> None:
    store.upsert("tools", item(1, status="active", tags=["a", "b"], category="geo"))
    store.upsert("tools", item(2, status="deprecated", tags=["a"], category="geo"))
    store.upsert("tools", item(3, status="archived", tags=["b"], category="money"))

    def ids(flt: VectorFilter) -> set[int]:
        return {uuid.UUID(h.payload["aggregate_id"]).int - 1
                for h in store.query("tools", vec(1), flt, 10)}  # fmt: skip

    assert ids(VectorFilter()) == {1, 2, 3}
    assert ids(VectorFilter(equals={"category": "geo"})) == {1, 2}
    assert ids(VectorFilter(none_of={"status": ["deprecated", "archived"]})) == {1}
    assert ids(VectorFilter(all_tags=("a", "b"))) == {1}
    assert ids(VectorFilter(any_of={"status": ["archived", "deprecated"]})) == {2, 3}


def test_points_of_and_delete(store) -> None:
    store.upsert("tools", item(1, chunks=3) + item(2))
    aggregate = str(uuid.UUID(int=2))
    points = store.points_of("tools", [aggregate])
    assert sorted(p.payload["chunk"] for p in points) == [0, 1, 2]
    assert all(len(p.vector or []) == DIM for p in points)
    store.delete("tools", [point_id(aggregate, 2)])
    assert len(store.points_of("tools", [aggregate])) == 2
    assert store.count("tools") == 3


def test_upsert_is_idempotent(store) -> None:
    points = item(5, chunks=2)
    store.upsert("tools", points)
    store.upsert("tools", points)
    assert store.count("tools") == 2


def test_min_score_drops_weak_hits(store) -> None:
    store.upsert("tools", item(1) + item(2))
    hits = store.query("tools", vec(100), VectorFilter(), 10, min_score=0.999)
    assert [h.payload["aggregate_id"] for h in hits] == [str(uuid.UUID(int=2))]


def test_a_collection_of_another_dimension_is_refused(store) -> None:
    with pytest.raises(VectorStoreError, match="8-dimensional"):
        store.ensure_collection("tools", DIM * 2)


def test_one_process_owns_an_embedded_index(tmp_path: Path) -> None:
    first = EdgeVectorStore(tmp_path / "v")
    with pytest.raises(VectorStoreError, match="in use"):
        EdgeVectorStore(tmp_path / "v")
    first.close()
    EdgeVectorStore(tmp_path / "v").close()  # free again once the owner closes


def test_an_embedded_index_survives_a_reopen(tmp_path: Path) -> None:
    s = EdgeVectorStore(tmp_path / "v")
    s.ensure_collection("tools", DIM)
    s.upsert("tools", item(1, chunks=2))
    s.close()
    again = EdgeVectorStore(tmp_path / "v")
    again.ensure_collection("tools", DIM)
    assert again.count("tools") == 2
    again.close()


# --- hybrid collections: a dense vector and BM25 (IDF) per point -------------------------------

TEXTS = {
    1: "convert an amount between currencies at today's exchange rate",
    2: "current weather conditions for a city",
    3: "hourly weather forecast for the next two days",
    4: "refund a card payment to the customer",
}


@pytest.fixture(params=["edge", "qdrant-client"])
def hybrid(request, tmp_path: Path) -> Iterator[VectorStore]:
    from infra.search.sparse import Bm25Encoder

    s = open_store(request.param, tmp_path)
    s.ensure_collection("units", DIM, hybrid=True)
    bm25 = Bm25Encoder()
    points = []
    for seed, text in TEXTS.items():
        (point,) = item(seed, text=text)
        points.append(VectorPoint(point.id, point.vector, point.payload, bm25.document(text, 10)))
    s.upsert("units", points)
    yield s
    s.close()


def seeds(hits) -> list[int]:  # type: ignore[no-untyped-def]
    return [uuid.UUID(h.payload["aggregate_id"]).int - 1 for h in hits]


def test_bm25_ranks_by_shared_rare_words(hybrid) -> None:
    from infra.search.sparse import Bm25Encoder

    hits = hybrid.query_sparse("units", Bm25Encoder().query("weather forecast"), VectorFilter(), 10)
    assert seeds(hits)[:2] == [3, 2]  # both say weather; only 3 says forecast
    assert 1 not in seeds(hits)  # no shared word, no BM25 score


def test_dense_queries_still_answer_in_a_hybrid_collection(hybrid) -> None:
    assert seeds(hybrid.query("units", vec(400), VectorFilter(), 1)) == [4]
    assert len(hybrid.points_of("units", [str(uuid.UUID(int=2))])[0].vector or []) == DIM


@pytest.mark.parametrize("fusion", [Fusion("dbsf"), Fusion("rrf", k=2, weights=(1.0, 1.0))])
def test_one_query_fuses_dense_and_bm25(hybrid, fusion: Fusion) -> None:
    from infra.search.sparse import Bm25Encoder

    words = Bm25Encoder().query("refund")
    # The dense side points at 2, the BM25 side at 4: both come back, fused.
    fused = hybrid.query_hybrid("units", vec(200), words, VectorFilter(), 10, fusion=fusion)
    assert {2, 4} <= set(seeds(fused)[:2])
    only_active = VectorFilter(none_of={"aggregate_id": [str(uuid.UUID(int=5))]})
    filtered = hybrid.query_hybrid("units", vec(200), words, only_active, 10, fusion=fusion)
    assert 4 not in seeds(filtered)
