"""The Document aggregate: a text or Markdown document, optionally linked to a tool or dataset.

Documents have no slug; they are addressed by id. Decisions (`add_document`, `revise_document`,
...) check invariants and return the event to append; `evolve` folds an event into the state.
Whether a linked tool or dataset exists is I/O, so the command layer checks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from domain.errors import FieldError, IllegalTransition, InvalidInput
from domain.events import DomainEvent, EventMeta, stamp
from domain.kinds import AggregateKind
from domain.validation import check_string, check_tag_list, normalise_tags

KIND = "document"
CONTENT_TYPES = ("text/plain", "text/markdown")
LINK_KINDS = ("tool", "dataset")
MAX_TITLE = 500
MAX_CONTENT = 1_000_000
# Fields a DocumentRevised may change. Tags have their own command.
REVISABLE = ("title", "content", "content_type", "metadata", "link")
METADATA_LIMITS = {"source": 2000, "author": 200, "language": 35}
# A BCP 47 language tag, loosely: "en", "pt-BR", "zh-Hant-TW".
LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True)
class Document:
    id: UUID
    aggregate_version: int
    title: str
    content: str
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    link: dict[str, str] | None = None
    deleted: bool = False

    def fields(self) -> dict[str, Any]:
        """The document's data as plain JSON-able values."""
        return {
            "title": self.title,
            "content": self.content,
            "content_type": self.content_type,
            "metadata": dict(self.metadata),
            "tags": list(self.tags),
            "link": dict(self.link) if self.link else None,
            "deleted": self.deleted,
        }


@dataclass(frozen=True, kw_only=True)
class DocumentAdded(DomainEvent):
    title: str
    content: str
    content_type: str
    metadata: dict[str, str]
    tags: list[str]
    link: dict[str, str] | None


@dataclass(frozen=True, kw_only=True)
class DocumentRevised(DomainEvent):
    changes: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class DocumentRetagged(DomainEvent):
    tags: list[str]


@dataclass(frozen=True, kw_only=True)
class DocumentRemoved(DomainEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class DocumentRestored(DomainEvent):
    pass


DOCUMENT_EVENTS: tuple[type[DomainEvent], ...] = (
    DocumentAdded,
    DocumentRevised,
    DocumentRetagged,
    DocumentRemoved,
    DocumentRestored,
)


def _check_metadata(metadata: Any) -> list[FieldError]:
    if not isinstance(metadata, dict):
        return [FieldError("metadata", "must be an object with source, author or language")]
    errors = [
        FieldError(f"metadata.{k}", "is not a known field")
        for k in sorted(set(metadata) - set(METADATA_LIMITS))
    ]
    for key, limit in METADATA_LIMITS.items():
        if metadata.get(key) is not None:
            errors += check_string(metadata[key], f"metadata.{key}", limit)
    language = metadata.get("language")
    if isinstance(language, str) and not errors and not LANGUAGE_RE.fullmatch(language):
        errors.append(FieldError("metadata.language", "must be a language tag such as en or pt-BR"))
    return errors


def _check_link(link: Any) -> list[FieldError]:
    if link is None:
        return []
    if not isinstance(link, dict):
        return [FieldError("link", "must be an object with kind and id")]
    errors = [
        FieldError(f"link.{k}", "is not a known field") for k in sorted(set(link) - {"kind", "id"})
    ]
    if link.get("kind") not in LINK_KINDS:
        errors.append(FieldError("link.kind", f"must be one of {', '.join(LINK_KINDS)}"))
    if _as_uuid(link.get("id")) is None:
        errors.append(FieldError("link.id", "must be a UUID"))
    return errors


def _as_uuid(value: Any) -> UUID | None:
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _check_fields(data: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    if "title" in data:
        errors += check_string(data["title"], "title", MAX_TITLE)
    if "content" in data:
        errors += check_string(data["content"], "content", MAX_CONTENT)
    if "content_type" in data and data["content_type"] not in CONTENT_TYPES:
        errors.append(FieldError("content_type", f"must be one of {', '.join(CONTENT_TYPES)}"))
    if "metadata" in data:
        errors += _check_metadata(data["metadata"])
    if "link" in data:
        errors += _check_link(data["link"])
    if "tags" in data:
        errors += check_tag_list(data["tags"])
    return errors


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Absent metadata keys are dropped; link ids are stored in canonical form."""
    out = dict(data)
    if "metadata" in out:
        out["metadata"] = {k: v for k, v in out["metadata"].items() if v is not None}
    if out.get("link") is not None:
        out["link"] = {"kind": out["link"]["kind"], "id": str(UUID(out["link"]["id"]))}
    return out


def add_document(document_id: UUID, data: dict[str, Any], meta: EventMeta) -> DocumentAdded:
    allowed = {*REVISABLE, "tags"}
    errors = [FieldError(k, "is not a known field") for k in sorted(set(data) - allowed)]
    errors += [FieldError(k, "is required") for k in ("title", "content") if k not in data]
    errors += _check_fields(data)
    if errors:
        raise InvalidInput(errors)
    clean = _normalise(data)
    return DocumentAdded(
        **stamp(meta, document_id, 1),
        title=clean["title"],
        content=clean["content"],
        content_type=clean.get("content_type", "text/plain"),
        metadata=clean.get("metadata", {}),
        tags=normalise_tags(clean.get("tags") or []),
        link=clean.get("link"),
    )


def _require_live(document: Document) -> None:
    if document.deleted:
        raise IllegalTransition(f"document {document.id} is removed; restore it first")


def _next(document: Document, meta: EventMeta) -> dict[str, Any]:
    return stamp(meta, document.id, document.aggregate_version + 1)


def revise_document(
    document: Document, data: dict[str, Any], meta: EventMeta
) -> DocumentRevised | None:
    """Changes the given fields (metadata is replaced whole, a null link unlinks); returns None
    when nothing actually changes."""
    _require_live(document)
    unknown = sorted(set(data) - set(REVISABLE))
    errors = [FieldError(k, "is not a revisable field") for k in unknown] + _check_fields(data)
    if errors:
        raise InvalidInput(errors)
    current = document.fields()
    changes = {k: v for k, v in _normalise(data).items() if current[k] != v}
    if not changes:
        return None
    return DocumentRevised(**_next(document, meta), changes=changes)


def retag_document(document: Document, tags: list[str], meta: EventMeta) -> DocumentRetagged | None:
    """Replaces the tags; returns None when they are already the same."""
    _require_live(document)
    errors = check_tag_list(tags)
    if errors:
        raise InvalidInput(errors)
    new = normalise_tags(tags)
    if new == document.tags:
        return None
    return DocumentRetagged(**_next(document, meta), tags=new)


def remove_document(document: Document, meta: EventMeta) -> DocumentRemoved:
    _require_live(document)
    return DocumentRemoved(**_next(document, meta))


def restore_document(document: Document, meta: EventMeta) -> DocumentRestored:
    if not document.deleted:
        raise IllegalTransition(f"document {document.id} is not removed")
    return DocumentRestored(**_next(document, meta))


def evolve(document: Document | None, event: DomainEvent) -> Document:
    version = event.originator_version
    if isinstance(event, DocumentAdded):
        return Document(id=event.originator_id, aggregate_version=version, **event.payload())
    if document is None:
        raise ValueError(f"{event.type_name} before DocumentAdded for {event.originator_id}")
    if isinstance(event, DocumentRevised):
        return replace(document, aggregate_version=version, **event.changes)
    if isinstance(event, DocumentRetagged):
        return replace(document, aggregate_version=version, tags=event.tags)
    if isinstance(event, DocumentRemoved):
        return replace(document, aggregate_version=version, deleted=True)
    if isinstance(event, DocumentRestored):
        return replace(document, aggregate_version=version, deleted=False)
    raise TypeError(f"not a document event: {event.type_name}")


def replay(events: Iterable[DomainEvent]) -> Document | None:
    document: Document | None = None
    for event in events:
        document = evolve(document, event)
    return document


AGGREGATE: AggregateKind[Document] = AggregateKind(
    KIND, Document, DOCUMENT_EVENTS, evolve, replay, has_slug=False
)
