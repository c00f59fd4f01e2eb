"""Vector stores behind the `VectorStore` port.

- `EdgeVectorStore`: Qdrant's embedded engine (qdrant-edge-py), one shard directory per
  collection under `<data dir>/vectors/`. A shard belongs to one process: the directory is
  locked, and a second process gets a clear error instead of a corrupt index.
- `QdrantServerStore`: qdrant-client against a Qdrant server (`QDRANT_URL`), which any number
  of processes share: the projector writes, the API and MCP processes read."""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from projections.vector_ports import (
    Fusion,
    SparseVector,
    StoredPoint,
    VectorFilter,
    VectorHit,
    VectorPoint,
)

KEYWORD_FIELDS = ("aggregate_id", "kind", "status", "category", "tags", "owner", "link_id")
# Vector names in hybrid collections (the first generations had one unnamed dense vector).
DENSE, SPARSE = "dense", "bm25"


class VectorStoreError(Exception):
    """The vector store cannot be used as configured (locked, wrong dimension, unreachable)."""


class EdgeVectorStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock_file: TextIO | None = open(root / ".lock", "a+")  # noqa: SIM115 - held open
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            owner = self._lock_file.read().strip() or "another process"
            self._lock_file.close()
            self._lock_file = None
            raise VectorStoreError(
                f"the embedded vector index at {root} is in use by {owner}; only one process "
                "can own it (stop that process, or set QDRANT_URL to share a Qdrant server)"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"pid {os.getpid()}")
        self._lock_file.flush()
        self._shards: dict[str, Any] = {}
        marker = root / "store-id"
        if not marker.exists():
            marker.write_text(str(uuid.uuid4()))
        self.identity = f"edge:{marker.read_text().strip()}"

    def _shard(self, name: str) -> Any:
        shard = self._shards.get(name)
        if shard is None:
            from qdrant_edge import EdgeShard

            path = self.root / name
            if not path.exists():
                raise VectorStoreError(f"vector collection {name} does not exist")
            shard = self._shards[name] = EdgeShard.load(str(path))
        return shard

    def ensure_collection(self, name: str, dimension: int, *, hybrid: bool = False) -> None:
        from qdrant_edge import (
            Distance,
            EdgeConfig,
            EdgeShard,
            EdgeSparseVectorParams,
            EdgeVectorParams,
            Modifier,
            PayloadSchemaType,
            UpdateOperation,
        )

        path = self.root / name
        if name in self._shards or path.exists():
            shard = self._shard(name)
            size = _edge_dimension(path)
            if size is not None and size != dimension:
                raise VectorStoreError(
                    f"vector collection {name} holds {size}-dimensional vectors, not {dimension}"
                )
            return
        dense = EdgeVectorParams(size=dimension, distance=Distance.Cosine)
        if hybrid:
            config = EdgeConfig(
                vectors={DENSE: dense},
                sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
            )
        else:
            config = EdgeConfig(vectors=dense)
        shard = self._shards[name] = EdgeShard.create(str(path), config)
        (path / "dimension").write_text(str(dimension))
        if hybrid:
            (path / "hybrid").write_text("1")
        for field in KEYWORD_FIELDS:
            shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))

    def drop_collection(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        shutil.rmtree(self.root / name, ignore_errors=True)

    def upsert(self, name: str, points: Sequence[VectorPoint]) -> None:
        from qdrant_edge import Point, UpdateOperation

        if points:
            hybrid = self._hybrid(name)
            self._shard(name).update(
                UpdateOperation.upsert_points(
                    [Point(p.id, _edge_vectors(p, hybrid), p.payload) for p in points]
                )
            )

    def _hybrid(self, name: str) -> bool:
        return (self.root / name / "hybrid").exists()

    def delete(self, name: str, point_ids: Sequence[str]) -> None:
        from qdrant_edge import UpdateOperation

        if point_ids:
            self._shard(name).update(UpdateOperation.delete_points(list(point_ids)))

    def points_of(self, name: str, aggregate_ids: Sequence[str]) -> list[StoredPoint]:
        from qdrant_edge import FieldCondition, Filter, MatchAny, ScrollRequest

        if not aggregate_ids:
            return []
        flt = Filter(must=[FieldCondition("aggregate_id", match=MatchAny(list(aggregate_ids)))])
        out: list[StoredPoint] = []
        offset = None
        while True:
            records, offset = self._shard(name).scroll(
                ScrollRequest(
                    offset=offset, limit=1000, filter=flt, with_payload=True, with_vector=True
                )
            )
            out += [
                StoredPoint(str(r.id), dict(r.payload or {}), _dense(r.vector)) for r in records
            ]
            if offset is None:
                return out

    def query(
        self,
        name: str,
        vector: Sequence[float],
        flt: VectorFilter,
        limit: int,
        min_score: float | None = None,
    ) -> list[VectorHit]:
        from qdrant_edge import Query, QueryRequest

        using = DENSE if self._hybrid(name) else None
        hits = self._shard(name).query(
            QueryRequest(
                limit=limit,
                query=Query.Nearest(list(vector), using=using),
                filter=_edge_filter(flt),
                with_payload=True,
                score_threshold=min_score,
            )
        )
        return _edge_hits(hits)

    def query_sparse(
        self, name: str, sparse: SparseVector, flt: VectorFilter, limit: int
    ) -> list[VectorHit]:
        from qdrant_edge import Query, QueryRequest

        query = Query.Nearest(_edge_sparse(sparse), using=SPARSE)
        request = QueryRequest(
            limit=limit, query=query, filter=_edge_filter(flt), with_payload=True
        )
        return _edge_hits(self._shard(name).query(request))

    def query_hybrid(
        self,
        name: str,
        vector: Sequence[float],
        sparse: SparseVector,
        flt: VectorFilter,
        limit: int,
        *,
        fusion: Fusion,
    ) -> list[VectorHit]:
        from qdrant_edge import Fusion as EdgeFusion
        from qdrant_edge import Prefetch, Query, QueryRequest

        where = _edge_filter(flt)
        candidates = max(limit, PREFETCH)
        prefetches = [
            Prefetch(candidates, Query.Nearest(list(vector), using=DENSE), filter=where),
            Prefetch(candidates, Query.Nearest(_edge_sparse(sparse), using=SPARSE), filter=where),
        ]
        fuse: Any = (
            EdgeFusion.Dbsf()
            if fusion.method == "dbsf"
            else EdgeFusion.Rrf(k=fusion.k, weights=list(fusion.weights))
        )
        request = QueryRequest(limit=limit, prefetches=prefetches, query=fuse, with_payload=True)
        return _edge_hits(self._shard(name).query(request))

    def count(self, name: str) -> int:
        from qdrant_edge import CountRequest

        return int(self._shard(name).count(CountRequest(exact=True)))

    def optimize(self, name: str) -> None:
        self._shard(name).optimize()

    def flush(self) -> None:
        for shard in self._shards.values():
            shard.flush()

    def close(self) -> None:
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _edge_dimension(path: Path) -> int | None:
    marker = path / "dimension"
    return int(marker.read_text()) if marker.exists() else None


# Candidates each side of a hybrid query contributes before fusion.
PREFETCH = 100


def _dense(vector: Any) -> list[float] | None:
    if isinstance(vector, dict):  # the unnamed vector is keyed ""; hybrid ones are named
        vector = vector.get(DENSE, vector.get(""))
    return list(vector) if vector is not None else None


def _edge_sparse(sparse: SparseVector) -> Any:
    from qdrant_edge import SparseVector as EdgeSparse

    return EdgeSparse(indices=list(sparse.indices), values=list(sparse.values))


def _edge_vectors(point: VectorPoint, hybrid: bool) -> Any:
    if not hybrid:
        return list(point.vector)
    vectors: dict[str, Any] = {DENSE: list(point.vector)}
    if point.sparse is not None and point.sparse.indices:
        vectors[SPARSE] = _edge_sparse(point.sparse)
    return vectors


def _edge_hits(hits: Any) -> list[VectorHit]:
    return [VectorHit(str(h.id), float(h.score), dict(h.payload or {})) for h in hits]


def _edge_filter(flt: VectorFilter) -> Any:
    from qdrant_edge import FieldCondition, Filter, MatchAny, MatchValue

    must: list[Any] = [FieldCondition(k, match=MatchValue(v)) for k, v in flt.equals.items()]
    must += [FieldCondition(k, match=MatchAny(list(v))) for k, v in flt.any_of.items()]
    must += [FieldCondition("tags", match=MatchValue(t)) for t in flt.all_tags]
    must_not: list[Any] = [
        FieldCondition(k, match=MatchAny(list(v))) for k, v in flt.none_of.items()
    ]
    if not must and not must_not:
        return None
    return Filter(must=must or None, must_not=must_not or None)


class QdrantServerStore:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 10.0) -> None:
        from qdrant_client import QdrantClient

        self.identity = f"qdrant:{url}"
        if url == ":memory:":  # qdrant-client's local mode: the same API, for tests
            self.identity = f"qdrant:memory:{uuid.uuid4()}"
            self._client = QdrantClient(location=":memory:")
        else:
            self._client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout))
        self._layouts: dict[str, bool] = {}

    def ensure_collection(self, name: str, dimension: int, *, hybrid: bool = False) -> None:
        from qdrant_client import models

        if self._client.collection_exists(name):
            info = self._client.get_collection(name)
            params = info.config.params.vectors
            if isinstance(params, dict):
                params = params.get(DENSE)
            size = getattr(params, "size", None)
            if size is not None and size != dimension:
                raise VectorStoreError(
                    f"vector collection {name} holds {size}-dimensional vectors, not {dimension}"
                )
            return
        dense = models.VectorParams(size=dimension, distance=models.Distance.COSINE)
        if hybrid:
            self._client.create_collection(
                name,
                vectors_config={DENSE: dense},
                sparse_vectors_config={
                    SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
            )
        else:
            self._client.create_collection(name, vectors_config=dense)
        for field in KEYWORD_FIELDS:
            self._client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)

    def drop_collection(self, name: str) -> None:
        self._layouts.pop(name, None)
        if self._client.collection_exists(name):
            self._client.delete_collection(name)

    def upsert(self, name: str, points: Sequence[VectorPoint]) -> None:
        from qdrant_client import models

        if points:
            hybrid = self._hybrid(name)
            self._client.upsert(
                name,
                [
                    models.PointStruct(
                        id=p.id, vector=_server_vectors(p, hybrid), payload=p.payload
                    )
                    for p in points
                ],
                wait=True,
            )

    def _hybrid(self, name: str) -> bool:
        known = self._layouts.get(name)
        if known is None:
            params = self._client.get_collection(name).config.params.vectors
            known = self._layouts[name] = isinstance(params, dict) and DENSE in params
        return known

    def delete(self, name: str, point_ids: Sequence[str]) -> None:
        from qdrant_client import models

        if point_ids:
            self._client.delete(name, models.PointIdsList(points=list(point_ids)), wait=True)

    def points_of(self, name: str, aggregate_ids: Sequence[str]) -> list[StoredPoint]:
        from qdrant_client import models

        if not aggregate_ids:
            return []
        flt = models.Filter(
            must=[
                models.FieldCondition(
                    key="aggregate_id", match=models.MatchAny(any=list(aggregate_ids))
                )
            ]
        )
        out: list[StoredPoint] = []
        offset = None
        while True:
            records, offset = self._client.scroll(
                name,
                scroll_filter=flt,
                limit=1000,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            )
            out += [
                StoredPoint(str(r.id), dict(r.payload or {}), _dense(r.vector)) for r in records
            ]
            if offset is None:
                return out

    def query(
        self,
        name: str,
        vector: Sequence[float],
        flt: VectorFilter,
        limit: int,
        min_score: float | None = None,
    ) -> list[VectorHit]:
        response = self._client.query_points(
            name,
            query=list(vector),
            using=DENSE if self._hybrid(name) else None,
            query_filter=_server_filter(flt),
            limit=limit,
            with_payload=True,
            score_threshold=min_score,
        )
        return _server_hits(response)

    def query_sparse(
        self, name: str, sparse: SparseVector, flt: VectorFilter, limit: int
    ) -> list[VectorHit]:
        response = self._client.query_points(
            name,
            query=_server_sparse(sparse),
            using=SPARSE,
            query_filter=_server_filter(flt),
            limit=limit,
            with_payload=True,
        )
        return _server_hits(response)

    def query_hybrid(
        self,
        name: str,
        vector: Sequence[float],
        sparse: SparseVector,
        flt: VectorFilter,
        limit: int,
        *,
        fusion: Fusion,
    ) -> list[VectorHit]:
        from qdrant_client import models

        where = _server_filter(flt)
        candidates = max(limit, PREFETCH)
        prefetch = [
            models.Prefetch(query=list(vector), using=DENSE, filter=where, limit=candidates),
            models.Prefetch(
                query=_server_sparse(sparse), using=SPARSE, filter=where, limit=candidates
            ),
        ]
        query: Any = (
            models.FusionQuery(fusion=models.Fusion.DBSF)
            if fusion.method == "dbsf"
            else models.RrfQuery(rrf=models.Rrf(k=fusion.k, weights=list(fusion.weights)))
        )
        response = self._client.query_points(
            name, prefetch=prefetch, query=query, limit=limit, with_payload=True
        )
        return _server_hits(response)

    def count(self, name: str) -> int:
        return int(self._client.count(name, exact=True).count)

    def optimize(self, name: str) -> None:
        """The server optimises in the background."""

    def flush(self) -> None:
        """Writes are acknowledged durable (wait=True)."""

    def close(self) -> None:
        self._client.close()


def _server_filter(flt: VectorFilter) -> Any:
    from qdrant_client import models

    must: list[Any] = [
        models.FieldCondition(key=k, match=models.MatchValue(value=v))
        for k, v in flt.equals.items()
    ]
    must += [
        models.FieldCondition(key=k, match=models.MatchAny(any=list(v)))
        for k, v in flt.any_of.items()
    ]
    must += [
        models.FieldCondition(key="tags", match=models.MatchValue(value=t)) for t in flt.all_tags
    ]
    must_not: list[Any] = [
        models.FieldCondition(key=k, match=models.MatchAny(any=list(v)))
        for k, v in flt.none_of.items()
    ]
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


def _server_sparse(sparse: SparseVector) -> Any:
    from qdrant_client import models

    return models.SparseVector(indices=list(sparse.indices), values=list(sparse.values))


def _server_vectors(point: VectorPoint, hybrid: bool) -> Any:
    if not hybrid:
        return list(point.vector)
    vectors: dict[str, Any] = {DENSE: list(point.vector)}
    if point.sparse is not None and point.sparse.indices:
        vectors[SPARSE] = _server_sparse(point.sparse)
    return vectors


def _server_hits(response: Any) -> list[VectorHit]:
    return [VectorHit(str(h.id), float(h.score), dict(h.payload or {})) for h in response.points]
