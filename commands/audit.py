"""Queries answered by replaying the event store: the audit trail, and an aggregate's state now,
as of a time, or at a version. (The event store is the write side's; these reads reuse its port.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from commands.common import Kind, resolve_id
from commands.ports import CommandDeps, StoredEvent
from domain.errors import NotFound
from domain.events import DomainEvent
from domain.secrets import redact_sealed

S = TypeVar("S")


@dataclass(frozen=True)
class Snapshot(Generic[S]):
    state: S
    version: int
    position: int
    updated_at: datetime


def _check_kind(kind: Kind[Any], ref: str, events: list[StoredEvent]) -> None:
    if not events or not isinstance(events[0].event, kind.events):
        raise NotFound(kind.name, ref, by_slug=kind.has_slug)


def state_of(
    deps: CommandDeps,
    kind: Kind[S],
    ref: str,
    *,
    as_of: datetime | None = None,
    at_version: int | None = None,
) -> Snapshot[S]:
    """Replays the aggregate up to a time and/or version (both inclusive)."""
    aggregate_id = resolve_id(deps, kind, ref)
    stored = deps.store.load_page(aggregate_id, 0, at_version or 1_000_000_000)
    _check_kind(kind, ref, stored)
    if as_of is not None:
        stored = [s for s in stored if s.event.occurred_at <= as_of]
        if not stored:
            raise NotFound(kind.name, f"{ref} as of {as_of.isoformat()}", by_slug=kind.has_slug)
    if at_version is not None and len(stored) < at_version:
        raise NotFound(kind.name, f"{ref} at version {at_version}", by_slug=kind.has_slug)
    state = kind.replay(s.event for s in stored)
    assert state is not None
    last = stored[-1]
    return Snapshot(state, last.event.originator_version, last.position, last.event.occurred_at)


def describe_event(stored: StoredEvent) -> dict[str, Any]:
    event: DomainEvent = stored.event
    data = {k: (str(v) if isinstance(v, UUID) else v) for k, v in event.payload().items()}
    return {
        "type": event.type_name,
        "version": event.originator_version,
        "position": stored.position,
        "occurred_at": event.occurred_at,
        "actor": event.actor,
        "reason": event.reason,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "data": redact_sealed(data),
    }


def audit_trail(
    deps: CommandDeps, kind: Kind[Any], ref: str, after_version: int, limit: int
) -> tuple[UUID, list[dict[str, Any]], int | None]:
    """One page of an aggregate's events; returns the cursor for the next page (or None)."""
    aggregate_id = resolve_id(deps, kind, ref)
    first = deps.store.load_page(aggregate_id, 0, 1)
    _check_kind(kind, ref, first)
    page = deps.store.load_page(aggregate_id, after_version, limit + 1)
    more = len(page) > limit
    page = page[:limit]
    next_after = page[-1].event.originator_version if more and page else None
    return aggregate_id, [describe_event(s) for s in page], next_after
