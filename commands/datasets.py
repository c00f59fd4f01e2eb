"""One handler per dataset command."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from commands.common import WriteResult, change, create
from commands.context import CommandContext
from commands.observe import observed
from commands.ports import CommandDeps
from domain import dataset as domain
from domain.events import DomainEvent, EventMeta
from domain.slug_index import claim_slug

DATASET = domain.AGGREGATE


@observed
def register_dataset(deps: CommandDeps, data: dict[str, Any], ctx: CommandContext) -> WriteResult:
    def build() -> list[DomainEvent]:
        dataset_id = uuid4()
        meta = ctx.meta(deps.clock)
        registered = domain.register_dataset(dataset_id, data, meta)
        return [registered, claim_slug(DATASET.name, registered.slug, dataset_id, meta)]

    return create(deps, DATASET, ctx, build)


@observed
def describe_dataset(
    deps: CommandDeps, ref: str, data: dict[str, Any], ctx: CommandContext
) -> WriteResult:
    def decide(dataset: domain.Dataset, meta: EventMeta) -> domain.DatasetDescribed | None:
        return domain.describe_dataset(dataset, data, meta)

    return change(deps, DATASET, ref, ctx, decide)


@observed
def change_dataset_columns(
    deps: CommandDeps, ref: str, columns: list[dict[str, Any]], ctx: CommandContext
) -> WriteResult:
    def decide(dataset: domain.Dataset, meta: EventMeta) -> domain.DatasetColumnsChanged | None:
        return domain.change_dataset_columns(dataset, columns, meta)

    return change(deps, DATASET, ref, ctx, decide)


@observed
def record_dataset_profile(
    deps: CommandDeps, ref: str, profile: dict[str, Any], ctx: CommandContext
) -> WriteResult:
    def decide(dataset: domain.Dataset, meta: EventMeta) -> domain.DatasetProfileRecorded:
        return domain.record_dataset_profile(dataset, profile, meta)

    return change(deps, DATASET, ref, ctx, decide)


@observed
def archive_dataset(deps: CommandDeps, ref: str, ctx: CommandContext) -> WriteResult:
    return change(deps, DATASET, ref, ctx, domain.archive_dataset)


@observed
def unarchive_dataset(deps: CommandDeps, ref: str, ctx: CommandContext) -> WriteResult:
    return change(deps, DATASET, ref, ctx, domain.unarchive_dataset)


@observed
def delete_dataset(deps: CommandDeps, ref: str, ctx: CommandContext) -> WriteResult:
    return change(deps, DATASET, ref, ctx, domain.delete_dataset)


@observed
def restore_dataset(deps: CommandDeps, ref: str, ctx: CommandContext) -> WriteResult:
    return change(deps, DATASET, ref, ctx, domain.restore_dataset)
