"""Domain state types per kind, and their JSON form in the read models (secrets redacted)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from domain import dataset, document, tool
from domain.events import DomainEvent

State = tool.Tool | dataset.Dataset | document.Document

STATE_CLASSES: dict[str, type[Any]] = {
    "tool": tool.Tool,
    "dataset": dataset.Dataset,
    "document": document.Document,
}
EVOLVE: dict[str, Callable[[Any, DomainEvent], Any]] = {
    "tool": tool.evolve,
    "dataset": dataset.evolve,
    "document": document.evolve,
}


def state_from_doc(kind: str, aggregate_id: UUID, version: int, doc: dict[str, Any]) -> Any:
    return STATE_CLASSES[kind](id=aggregate_id, aggregate_version=version, **doc)
