"""One handler per document command. A link to a tool or dataset must name one that exists."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from commands.common import Kind, WriteResult, change, create, load
from commands.context import CommandContext
from commands.datasets import DATASET
from commands.errors import NotFound
from commands.observe import observed
from commands.ports import CommandDeps
from commands.tools import TOOL
from domain import document as domain
from domain.errors import InvalidInput
from domain.events import DomainEvent, EventMeta

DOCUMENT = domain.AGGREGATE
LINK_TARGETS: dict[str, Kind[Any]] = {"tool": TOOL, "dataset": DATASET}


def check_link(deps: CommandDeps, link: dict[str, str] | None) -> None:
    """The linked tool or dataset must exist (by id, not slug) and not be deleted."""
    if link is None:
        return
    kind = LINK_TARGETS[link["kind"]]
    try:
        target = load(deps, kind, link["id"])
    except NotFound:
        target = None
    # resolve_id falls back to slugs, and a slug can look like a UUID: insist on the id itself.
    if target is None or str(target.id) != link["id"]:
        raise InvalidInput.one("link.id", f"no {kind.name} with id {link['id']}")
    if target.deleted:
        raise InvalidInput.one("link.id", f"{kind.name} {link['id']} is deleted")


@observed
def add_document(deps: CommandDeps, data: dict[str, Any], ctx: CommandContext) -> WriteResult:
    def build() -> list[DomainEvent]:
        added = domain.add_document(uuid4(), data, ctx.meta(deps.clock))
        check_link(deps, added.link)
        return [added]

    return create(deps, DOCUMENT, ctx, build)


@observed
def revise_document(
    deps: CommandDeps, ref: str, data: dict[str, Any], ctx: CommandContext
) -> WriteResult:
    def decide(document: domain.Document, meta: EventMeta) -> domain.DocumentRevised | None:
        revised = domain.revise_document(document, data, meta)
        if revised is not None:
            check_link(deps, revised.changes.get("link"))
        return revised

    return change(deps, DOCUMENT, ref, ctx, decide)


@observed
def retag_document(
    deps: CommandDeps, ref: str, tags: list[str], ctx: CommandContext
) -> WriteResult:
    def decide(document: domain.Document, meta: EventMeta) -> domain.DocumentRetagged | None:
        return domain.retag_document(document, tags, meta)

    return change(deps, DOCUMENT, ref, ctx, decide)


@observed
def remove_document(deps: CommandDeps, ref: str, ctx: CommandContext) -> WriteResult:
    return change(deps, DOCUMENT, ref, ctx, domain.remove_document)


@observed
def restore_document(deps: CommandDeps, ref: str, ctx: CommandContext) -> WriteResult:
    return change(deps, DOCUMENT, ref, ctx, domain.restore_document)
