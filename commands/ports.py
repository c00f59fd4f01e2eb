"""What the handlers need from the outside world, as small protocols implemented in `infra/`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from domain.events import DomainEvent


@dataclass(frozen=True)
class Appended:
    """One stored event: which aggregate, its new version, and its global position."""

    id: UUID
    version: int
    position: int


@dataclass(frozen=True)
class IdempotencyRequest:
    key: str
    request_hash: str


@dataclass(frozen=True)
class StoredEvent:
    event: DomainEvent
    position: int


class EventStore(Protocol):
    def load(self, aggregate_id: UUID) -> list[DomainEvent]: ...

    def load_page(
        self, aggregate_id: UUID, after_version: int, limit: int
    ) -> list[StoredEvent]: ...

    def append(
        self, events: Sequence[DomainEvent], idempotency: IdempotencyRequest | None = None
    ) -> list[Appended]:
        """Appends atomically; raises AppendConflict if any version is already taken, and
        IdempotencyRace if the idempotency key was committed meanwhile."""
        ...

    def position_of(self, aggregate_id: UUID, version: int) -> int | None: ...

    def existing(self, aggregate_ids: Sequence[UUID]) -> set[UUID]: ...


class IdempotencyStore(Protocol):
    def lookup(self, key: str) -> tuple[str, list[Appended]] | None:
        """The stored request hash and results for a key, if that key was used."""
        ...

    def remember(self, request: IdempotencyRequest, results: Sequence[Appended]) -> None:
        """Binds a key to a result that appended nothing (a command that changed nothing);
        raises IdempotencyRace if the key was committed meanwhile."""
        ...


class Sealer(Protocol):
    def seal(self, aggregate_id: UUID, value: Any) -> dict[str, str]: ...

    def unseal(self, aggregate_id: UUID, sealed: Any) -> Any:
        """The clear value again (a secret moving into a larger sealed one)."""
        ...


@dataclass(frozen=True)
class CommandDeps:
    store: EventStore
    idempotency: IdempotencyStore
    sealer: Sealer
    clock: Callable[[], datetime]
