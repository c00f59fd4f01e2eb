"""The shape of a registry entry: everything the read side and the wire need to know about one
kind of aggregate. Per-kind modules fill one in; `projections.kinds` lists them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from psycopg import Cursor

from domain.kinds import AggregateKind
from projections.search_text import Unit


class Applied(Protocol):
    """What a writer needs of the event it applies (an EventRecord; the records module reads
    this registry, so it cannot be imported here)."""

    @property
    def position(self) -> int: ...

    @property
    def occurred_at(self) -> datetime: ...


@dataclass(frozen=True)
class Written:
    """One aggregate's state to write: its state, the last event folded into it, when it was
    created and (if it is) deleted."""

    state: Any
    applied: Applied
    created: datetime
    deleted: datetime | None


# The current-state row of an aggregate, by column name.
RowOf = Callable[[Written], dict[str, Any]]
# Rewrites the companion rows of the given aggregates (e.g. a dataset's columns).
CompanionWriter = Callable[[Cursor[Any], Sequence[Written]], None]


@dataclass(frozen=True)
class Table:
    """The current-state table of a kind, as the queries read it."""

    name: str
    sorts: tuple[str, ...]
    # Extra select-list entries (the dataset's columns come from their own table).
    extra: str = ""
    # Tables of this kind's own besides `name`, emptied with it on a reset.
    companions: tuple[str, ...] = ()
    # Columns an update never changes.
    keep: tuple[str, ...] = ("id", "slug", "created_at")


@dataclass(frozen=True)
class ReadKind:
    aggregate: AggregateKind[Any]
    table: Table
    row: RowOf
    # The text search sees (one unit, or a document's chunks) and the item-level search fields
    # (slug, name, description, status, category, owner, link_id).
    units: Callable[[dict[str, Any]], list[Unit]]
    search_fields: Callable[[dict[str, Any]], dict[str, Any]]
    collection: str  # vector index collections are named after it
    topic: str  # Kafka topic suffix, versioned: `<prefix>.<topic>`
    deleted_by: tuple[str, ...]  # the event types that (soft) delete it
    # BM25's average unit length (in words) for this kind's collection: tools and datasets
    # are one short unit each, documents are chunks of up to ~200 words.
    bm25_avg_len: float = 80.0
    write_companions: CompanionWriter | None = None

    @property
    def name(self) -> str:
        return self.aggregate.name

    @property
    def has_slug(self) -> bool:
        return self.aggregate.has_slug

    def state_from_doc(self, aggregate_id: Any, version: int, doc: dict[str, Any]) -> Any:
        return self.aggregate.state(id=aggregate_id, aggregate_version=version, **doc)
