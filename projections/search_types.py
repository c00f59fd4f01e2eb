"""What a search asks and answers: shared by the REST route, the MCP tools and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("tool", "document", "dataset")


@dataclass(frozen=True)
class SearchRequest:
    q: str
    kinds: tuple[str, ...] = KINDS
    limit: int = 10
    category: str | None = None
    tags: tuple[str, ...] = ()  # all must match
    status: str | None = None
    owner: str | None = None  # a tool's author or a dataset's owner
    linked_to: str | None = None  # documents linked to this aggregate id
    include_deprecated: bool = False
    include_deleted: bool = False
    min_score: float | None = None  # vector similarity (cosine) below which a hit is dropped
    mode: str = "hybrid"  # hybrid, vector or lexical (the latter two for evaluation)


@dataclass
class SearchHit:
    kind: str
    id: str
    slug: str | None
    name: str
    description: str | None
    score: float
    version: int
    status: str | None
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    # For documents: the chunk that matched best ({"index", "heading", "text"}).
    chunk: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if data["chunk"] is None:
            del data["chunk"]
        return data


@dataclass
class SearchResult:
    items: list[SearchHit]
    mode: str  # what actually ran: hybrid, vector or lexical
    warnings: list[str] = field(default_factory=list)
