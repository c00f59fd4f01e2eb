"""The event as the read side sees it: one neutral record, whether it came from the event store
(in-process driver, rebuilds) or from Kafka (Faust). Secrets are already redacted here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from domain import slug_index
from domain.events import DomainEvent, EventMeta, stamp
from domain.secrets import redact_sealed
from projections.kinds import KIND_OF_EVENT as _KIND_OF_EVENT
from projections.kinds import KINDS

EVENT_CLASSES: dict[str, type[DomainEvent]] = {
    cls.__name__: cls
    for cls in (*(e for k in KINDS.values() for e in k.aggregate.events), slug_index.SlugClaimed)
}

# The kind of each event type; "slug" for the slug index's claims (internal, never published).
KIND_OF_EVENT: dict[str, str] = {**_KIND_OF_EVENT, slug_index.SlugClaimed.__name__: "slug"}


_UUID_FIELDS: dict[type[DomainEvent], tuple[str, ...]] = {}


def _uuid_fields(cls: type[DomainEvent]) -> tuple[str, ...]:
    names = _UUID_FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.type in ("UUID", UUID))
        _UUID_FIELDS[cls] = names
    return names


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value


@dataclass(frozen=True)
class EventRecord:
    type: str
    aggregate_id: UUID
    version: int
    position: int
    occurred_at: datetime
    actor: str
    correlation_id: str
    causation_id: str
    reason: str | None
    data: dict[str, Any] = field(default_factory=dict)
    # The domain event this record was made from, when it needed no redaction: folding it
    # directly saves rebuilding it from `data`.
    origin: DomainEvent | None = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return KIND_OF_EVENT.get(self.type, "unknown")

    @classmethod
    def from_event(cls, event: DomainEvent, position: int, *, sealed: bool = True) -> EventRecord:
        """`sealed=False` promises the event holds no sealed value (its stored bytes lack the
        marker), which skips the redaction walk: rebuilds read every event."""
        data = {k: _jsonable(v) for k, v in event.payload().items()}
        return cls(
            type=event.type_name,
            aggregate_id=event.originator_id,
            version=event.originator_version,
            position=position,
            occurred_at=event.occurred_at,
            actor=event.actor,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            reason=event.reason,
            data=redact_sealed(data) if sealed else data,
            origin=None if sealed else event,
        )

    def to_event(self) -> DomainEvent:
        """The domain event again (with secrets redacted), so read models can use `evolve`."""
        if self.origin is not None:
            return self.origin
        cls = EVENT_CLASSES[self.type]
        meta = EventMeta(
            self.actor, self.correlation_id, self.causation_id, self.occurred_at, self.reason
        )
        data = dict(self.data)
        for name in _uuid_fields(cls):
            if name in data:
                data[name] = UUID(data[name])
        return cls(**stamp(meta, self.aggregate_id, self.version), **data)


def record_to_json(record: EventRecord) -> dict[str, Any]:
    return {
        "type": record.type,
        "aggregate_id": str(record.aggregate_id),
        "version": record.version,
        "position": record.position,
        "occurred_at": record.occurred_at.isoformat(),
        "actor": record.actor,
        "correlation_id": record.correlation_id,
        "causation_id": record.causation_id,
        "reason": record.reason,
        "data": record.data,
    }


def record_from_json(value: dict[str, Any]) -> EventRecord:
    return EventRecord(
        type=value["type"],
        aggregate_id=UUID(value["aggregate_id"]),
        version=int(value["version"]),
        position=int(value["position"]),
        occurred_at=datetime.fromisoformat(value["occurred_at"]),
        actor=value["actor"],
        correlation_id=value["correlation_id"],
        causation_id=value["causation_id"],
        reason=value.get("reason"),
        data=value.get("data") or {},
    )
