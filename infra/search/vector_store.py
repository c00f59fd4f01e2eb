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

from projections.vector_ports import StoredPoint, VectorFilter, VectorHit, VectorPoint

KEYWORD_FIELDS = ("aggregate_id", "kind", "status", "category", "tags", "owner", "link_id")


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

    def ensure_collection(self, name: str, dimension: int) -> None:
        from qdrant_edge import (
            Distance,
            EdgeConfig,
            EdgeShard,
            EdgeVectorParams,
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
        config = EdgeConfig(vectors=EdgeVectorParams(size=dimension, distance=Distance.Cosine))
        shard = self._shards[name] = EdgeShard.create(str(path), config)
        (path / "dimension").write_text(str(dimension))
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
            self._shard(name).update(
                UpdateOperation.upsert_points(
                    [Point(p.id, list(p.vector), p.payload) for p in points]
                )
            )

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

        hits = self._shard(name).query(
            QueryRequest(
                limit=limit,
                query=Query.Nearest(list(vector)),
                filter=_edge_filter(flt),
                with_payload=True,
                score_threshold=min_score,
            )
        )
        return [VectorHit(str(h.id), float(h.score), dict(h.payload or {})) for h in hits]

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


def _dense(vector: Any) -> list[float] | None:
    if isinstance(vector, dict):  # the default (unnamed) vector is keyed ""
        vector = vector.get("")
    return list(vector) if vector is not None else None


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

    def ensure_collection(self, name: str, dimension: int) -> None:
        from qdrant_client import models

        if self._client.collection_exists(name):
            info = self._client.get_collection(name)
            params = info.config.params.vectors
            size = getattr(params, "size", None)
            if size is not None and size != dimension:
                raise VectorStoreError(
                    f"vector collection {name} holds {size}-dimensional vectors, not {dimension}"
                )
            return
        self._client.create_collection(
            name,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
        )
        for field in KEYWORD_FIELDS:
            self._client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)

    def drop_collection(self, name: str) -> None:
        if self._client.collection_exists(name):
            self._client.delete_collection(name)

    def upsert(self, name: str, points: Sequence[VectorPoint]) -> None:
        from qdrant_client import models

        if points:
            self._client.upsert(
                name,
                [
                    models.PointStruct(id=p.id, vector=list(p.vector), payload=p.payload)
                    for p in points
                ],
                wait=True,
            )

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
            query_filter=_server_filter(flt),
            limit=limit,
            with_payload=True,
            score_threshold=min_score,
        )
        return [
            VectorHit(str(h.id), float(h.score), dict(h.payload or {})) for h in response.points
        ]

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
