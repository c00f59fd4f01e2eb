"""What the read layer answers: typed results that the REST API and the MCP adapter both map
from (`wire()` is the REST body; the MCP adapter builds its own answer models from the fields)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class Item:
    """A tool, dataset or document: its state (`fields`) at a version."""

    kind: str
    id: UUID
    version: int
    position: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    fields: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "position": self.position,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "deleted_at": self.deleted_at, self.kind: self.fields}  # fmt: skip


@dataclass(frozen=True)
class ItemPage:
    items: list[Item]
    next_cursor: str | None

    def wire(self) -> dict[str, Any]:
        return {"items": [i.wire() for i in self.items], "next_cursor": self.next_cursor}


@dataclass(frozen=True)
class VersionEntry:
    """One version of an item: the event that made it and its JSON Patch from the one before;
    the whole state only when asked for."""

    version: int
    event_type: str
    actor: str
    reason: str | None
    correlation_id: str | None
    causation_id: str | None
    occurred_at: datetime
    position: int
    patch: list[dict[str, Any]]
    snapshot: dict[str, Any] | None = None

    def wire(self) -> dict[str, Any]:
        out = {"version": self.version, "event_type": self.event_type, "actor": self.actor,
               "reason": self.reason, "correlation_id": self.correlation_id,
               "causation_id": self.causation_id, "occurred_at": self.occurred_at,
               "position": self.position, "patch": self.patch}  # fmt: skip
        if self.snapshot is not None:
            out["snapshot"] = self.snapshot
        return out


@dataclass(frozen=True)
class VersionPage:
    id: UUID
    items: list[VersionEntry]
    next_after_version: int | None

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "items": [v.wire() for v in self.items],
                "next_after_version": self.next_after_version}  # fmt: skip


@dataclass(frozen=True)
class Diff:
    id: UUID
    from_version: int
    to_version: int
    patch: list[dict[str, Any]]

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "from": self.from_version, "to": self.to_version,
                "patch": self.patch}  # fmt: skip


@dataclass(frozen=True)
class Change:
    """One stored change in the registry, in the order of the store."""

    position: int
    kind: str
    id: UUID
    version: int
    event_type: str
    occurred_at: datetime
    actor: str
    reason: str | None
    ref: str | None  # the slug, or a document's title


@dataclass(frozen=True)
class ChangePage:
    items: list[Change]
    next_position: int
    more: bool
