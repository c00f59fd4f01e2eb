"""The ports the vector index and search need: an embedding model and a vector store. infra/
implements them (ONNX MiniLM or an HTTP endpoint; embedded or server Qdrant)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]  # shape (n, dimension), rows L2-normalised


class EmbeddingUnavailable(Exception):
    """The embedding model cannot answer (endpoint down, timeout): search falls back."""


class Embedder(Protocol):
    @property
    def model(self) -> str:
        """Recorded with the index: vectors of different models never mix."""

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


@dataclass(frozen=True)
class SparseVector:
    """Token ids and weights (BM25 term frequencies for a document, 1.0 per query token)."""

    indices: list[int]
    values: list[float]


class SparseEncoder(Protocol):
    """Text into BM25 sparse vectors; the store applies IDF over the collection."""

    @property
    def name(self) -> str:
        """Recorded with the index: sparse vectors of different tokenizers never mix."""

    def document(self, text: str, avg_len: float) -> SparseVector: ...

    def query(self, text: str) -> SparseVector: ...


@dataclass(frozen=True)
class VectorPoint:
    id: str  # a UUID string, deterministic per (aggregate, chunk)
    vector: Sequence[float]
    payload: dict[str, Any]
    sparse: SparseVector | None = None  # in hybrid collections


@dataclass(frozen=True)
class StoredPoint:
    id: str
    payload: dict[str, Any]
    vector: Sequence[float] | None


@dataclass(frozen=True)
class VectorHit:
    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class Fusion:
    """How a hybrid query fuses its dense and BM25 candidates: `dbsf` (each list's scores
    normalised by their distribution, then summed) or `rrf` (reciprocal rank, `k`, weights
    dense:sparse)."""

    method: str = "dbsf"
    k: int = 2
    weights: tuple[float, float] = (1.0, 1.0)


@dataclass(frozen=True)
class VectorFilter:
    """Every given condition must hold: `equals` field == value, `any_of` field in values,
    `all_tags` each tag present, `none_of` field not in values."""

    equals: dict[str, Any] = field(default_factory=dict)
    none_of: dict[str, list[str]] = field(default_factory=dict)
    any_of: dict[str, list[str]] = field(default_factory=dict)
    all_tags: tuple[str, ...] = ()


class VectorStore(Protocol):
    @property
    def identity(self) -> str:
        """Names this store: an embedded shard directory's id, or the server's URL."""

    def ensure_collection(self, name: str, dimension: int, *, hybrid: bool = False) -> None:
        """Creates it if missing (`hybrid`: a named dense vector and a BM25 sparse vector with
        IDF); a collection of another dimension is an error."""

    def drop_collection(self, name: str) -> None: ...

    def upsert(self, name: str, points: Sequence[VectorPoint]) -> None: ...

    def delete(self, name: str, point_ids: Sequence[str]) -> None: ...

    def points_of(self, name: str, aggregate_ids: Sequence[str]) -> list[StoredPoint]:
        """Every point whose payload `aggregate_id` is one of these, with vectors."""

    def query(
        self,
        name: str,
        vector: Sequence[float],
        flt: VectorFilter,
        limit: int,
        min_score: float | None = None,
    ) -> list[VectorHit]: ...

    def query_sparse(
        self, name: str, sparse: SparseVector, flt: VectorFilter, limit: int
    ) -> list[VectorHit]:
        """BM25 ranking of a hybrid collection."""

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
        """Dense and BM25 candidates fused in one query of a hybrid collection."""

    def count(self, name: str) -> int: ...

    def optimize(self, name: str) -> None:
        """Lets the store build its index after a bulk load (a no-op where it does so itself)."""

    def close(self) -> None: ...
