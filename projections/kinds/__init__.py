"""The registry of aggregate kinds: one entry per kind, read by everything that handles every
kind (current state, history, search rows, the vector index, verification, queries, Kafka
topics, event schemas). A new kind is its domain module, its module here, and one line below."""

from __future__ import annotations

from projections.kinds import dataset, document, tool
from projections.kinds.base import ReadKind, Table

KINDS: dict[str, ReadKind] = {k.name: k for k in (tool.READ, dataset.READ, document.READ)}

# Which kind each event type belongs to (by class name); the slug index is internal.
KIND_OF_EVENT: dict[str, str] = {
    event.__name__: k.name for k in KINDS.values() for event in k.aggregate.events
}


def read_kind(name: str) -> ReadKind:
    return KINDS[name]


__all__ = ["KINDS", "KIND_OF_EVENT", "ReadKind", "Table", "read_kind"]
