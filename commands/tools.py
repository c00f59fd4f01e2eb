"""One handler per tool command."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from commands.common import WriteResult, change, create, seal_sensitive
from commands.context import CommandContext
from commands.observe import observed
from commands.ports import CommandDeps
from domain import tool as domain
from domain.secrets import sensitive_keys_of
from domain.slug_index import claim_slug

TOOL = domain.AGGREGATE


def tool_registration_events(
    deps: CommandDeps, data: dict[str, Any], ctx: CommandContext
) -> list[Any]:
    """The events that register one tool: the tool itself and its slug claim."""
    tool_id = uuid4()
    if data.get("author") is None:  # left out: who registers it (an empty one is refused)
        data = {**data, "author": ctx.default_author}
    config = data.get("config") or {}
    keys = sensitive_keys_of(config, data.get("sensitive_keys") or [])
    sealed = {**data, "config": seal_sensitive(deps, tool_id, config, keys)}
    meta = ctx.meta(deps.clock)
    registered = domain.register_tool(tool_id, sealed, meta)
    return [registered, claim_slug(TOOL.name, registered.slug, tool_id, meta)]


@observed
def register_tool(deps: CommandDeps, data: dict[str, Any], ctx: CommandContext) -> WriteResult:
    return create(deps, TOOL, ctx, lambda: tool_registration_events(deps, data, ctx))


@observed
def update_tool(
    deps: CommandDeps, ref: str, data: dict[str, Any], ctx: CommandContext
) -> WriteResult:
    def decide(tool: domain.Tool, meta: Any) -> Any:
        changes = dict(data)
        if "config" in changes or "sensitive_keys" in changes:
            config = changes.get("config", tool.config)
            keys = sensitive_keys_of(config, changes.get("sensitive_keys", tool.sensitive_keys))
            changes["config"] = seal_sensitive(deps, tool.id, config, keys, previous=tool.config)
            if changes["config"] == tool.config:
                del changes["config"]
        return domain.update_tool(tool, changes, meta)

    return change(deps, TOOL, ref, ctx, decide)


@observed
def activate_tool(deps: CommandDeps, ref: str, ctx: CommandContext) -> WriteResult:
    return change(deps, TOOL, ref, ctx, domain.activate_tool)


@observed
def deprecate_tool(deps: CommandDeps, ref: str, ctx: CommandContext) -> WriteResult:
    return change(deps, TOOL, ref, ctx, domain.deprecate_tool)


@observed
def delete_tool(deps: CommandDeps, ref: str, ctx: CommandContext) -> WriteResult:
    return change(deps, TOOL, ref, ctx, domain.delete_tool)


@observed
def restore_tool(deps: CommandDeps, ref: str, ctx: CommandContext) -> WriteResult:
    return change(deps, TOOL, ref, ctx, domain.restore_tool)
