"""What the rest of the system needs to know about one kind of aggregate: its name, state type,
events, and how events fold into state. Each aggregate module defines its own `AGGREGATE`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from domain.events import DomainEvent

S = TypeVar("S")


@dataclass(frozen=True)
class AggregateKind(Generic[S]):
    name: str
    state: type[S]
    events: tuple[type[DomainEvent], ...]
    evolve: Callable[[Any, DomainEvent], S]
    replay: Callable[[Iterable[DomainEvent]], S | None]
    has_slug: bool = True  # looked up by slug as well as by id
