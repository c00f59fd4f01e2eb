"""The base of every domain event: identity, position in its aggregate, and audit metadata.

Events are frozen dataclasses named in the past tense. `class_version` lets old stored events be
upcast (`upcast_v1_v2(state)` static methods) when an event's shape changes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID


@dataclass(frozen=True)
class EventMeta:
    """Who caused a change, why, and as part of which request."""

    actor: str
    correlation_id: str
    causation_id: str
    occurred_at: datetime
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    originator_id: UUID
    originator_version: int
    occurred_at: datetime
    actor: str
    correlation_id: str
    causation_id: str
    reason: str | None

    class_version: ClassVar[int] = 1

    @property
    def timestamp(self) -> datetime:
        # The event store's protocol calls the event time `timestamp`.
        return self.occurred_at

    @property
    def type_name(self) -> str:
        return type(self).__name__

    def payload(self) -> dict[str, Any]:
        """The event's own data, without identity and metadata."""
        return {name: getattr(self, name) for name in payload_names(type(self))}

    def meta(self) -> EventMeta:
        return EventMeta(
            actor=self.actor,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            occurred_at=self.occurred_at,
            reason=self.reason,
        )


_PAYLOAD_NAMES: dict[type[DomainEvent], tuple[str, ...]] = {}


def payload_names(cls: type[DomainEvent]) -> tuple[str, ...]:
    # dataclasses.fields() is slow; rebuilds call this for every event.
    names = _PAYLOAD_NAMES.get(cls)
    if names is None:
        base = {f.name for f in fields(DomainEvent)}
        names = _PAYLOAD_NAMES[cls] = tuple(f.name for f in fields(cls) if f.name not in base)
    return names


def stamp(meta: EventMeta, aggregate_id: UUID, version: int) -> dict[str, Any]:
    """Keyword arguments shared by every event constructor."""
    return {
        "originator_id": aggregate_id,
        "originator_version": version,
        "occurred_at": meta.occurred_at,
        "actor": meta.actor,
        "correlation_id": meta.correlation_id,
        "causation_id": meta.causation_id,
        "reason": meta.reason,
    }
