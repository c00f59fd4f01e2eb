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
class VectorPoint:
    id: str  # a UUID string, deterministic per (aggregate, chunk)
    vector: Sequence[float]
    payload: dict[str, Any]


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

    def ensure_collection(self, name: str, dimension: int) -> None:
        """Creates it if missing; a collection of another dimension is an error."""

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

    def count(self, name: str) -> int: ...

    def optimize(self, name: str) -> None:
        """Lets the store build its index after a bulk load (a no-op where it does so itself)."""

    def close(self) -> None: ...
