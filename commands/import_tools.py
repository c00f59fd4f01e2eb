"""Bulk registration: many tools appended in batches, each batch all-or-nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from commands.common import idempotent
from commands.context import CommandContext
from commands.errors import AppendConflict, SlugTaken
from commands.inputs import RegisterTool
from commands.observe import observed
from commands.ports import Appended, CommandDeps, IdempotencyRequest
from commands.tools import TOOL, tool_registration_events
from domain.errors import FieldError, InvalidInput
from domain.slug_index import slug_index_id


@dataclass
class BatchOutcome:
    index: int
    size: int
    results: list[Appended] = field(default_factory=list)
    error: Exception | None = None


def _batch_context(ctx: CommandContext, index: int) -> CommandContext:
    if ctx.idempotency is None:
        return ctx
    key = f"{ctx.idempotency.key}#batch-{index}"
    return CommandContext(
        actor=ctx.actor,
        correlation_id=ctx.correlation_id,
        reason=ctx.reason,
        idempotency=IdempotencyRequest(key, ctx.idempotency.request_hash),
        command_id=ctx.command_id,
        author=ctx.author,
    )


def _check_batch_slugs(deps: CommandDeps, items: Sequence[RegisterTool], offset: int) -> None:
    seen: dict[str, int] = {}
    errors = []
    for i, item in enumerate(items):
        if item.slug in seen:
            errors.append(
                FieldError(f"tools[{offset + i}].slug", f"repeats tools[{seen[item.slug]}].slug")
            )
        seen.setdefault(item.slug, offset + i)
    if errors:
        raise InvalidInput(errors)
    ids = {slug_index_id(TOOL.name, s): s for s in seen}
    taken = deps.store.existing(list(ids))
    if taken:
        raise SlugTaken(TOOL.name, ", ".join(sorted(ids[t] for t in taken)))


def _prefix_fields(exc: InvalidInput, position: int) -> InvalidInput:
    return InvalidInput([FieldError(f"tools[{position}].{e.field}", e.message) for e in exc.errors])


@observed
def import_batch(
    deps: CommandDeps, items: Sequence[RegisterTool], offset: int, ctx: CommandContext
) -> list[Appended]:
    """Registers one batch in one transaction; any invalid item rejects the whole batch."""

    def run() -> list[Appended]:
        _check_batch_slugs(deps, items, offset)
        events: list[Any] = []
        for i, item in enumerate(items):
            try:
                events += tool_registration_events(deps, item.given(), ctx)
            except InvalidInput as exc:
                raise _prefix_fields(exc, offset + i) from None
        try:
            appended = deps.store.append(events, ctx.idempotency)
        except AppendConflict:
            raise SlugTaken(TOOL.name, "one of this batch's slugs (registered meanwhile)") from None
        return appended

    # Every tool's event comes before its slug claim.
    return idempotent(deps, ctx, run)[::2]


def import_tools(
    deps: CommandDeps,
    items: Sequence[RegisterTool],
    ctx: CommandContext,
    batch_size: int,
    on_batch: Callable[[BatchOutcome], None] | None = None,
) -> list[BatchOutcome]:
    """Batches in order; stops at the first batch that fails (everything before it is stored)."""
    outcomes = []
    for index, start in enumerate(range(0, len(items), batch_size)):
        chunk = items[start : start + batch_size]
        outcome = BatchOutcome(index, len(chunk))
        try:
            outcome.results = import_batch(deps, chunk, start, _batch_context(ctx, index))
        except (InvalidInput, SlugTaken) as exc:
            outcome.error = exc
        outcomes.append(outcome)
        if on_batch:
            on_batch(outcome)
        if outcome.error:
            break
    return outcomes
