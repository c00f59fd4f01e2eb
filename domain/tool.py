"""The Tool aggregate: an MCP tool's description, schemas, version, config and lifecycle.

Decisions (`register_tool`, `update_tool`, ...) check invariants against the current state and
return the event to append; `evolve` folds an event into the state. Both are pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from domain.errors import FieldError, IllegalTransition, InvalidInput
from domain.events import DomainEvent, EventMeta, stamp
from domain.kinds import AggregateKind
from domain.secrets import check_sealed, sensitive_keys_of
from domain.validation import (
    check_json_schema,
    check_slug,
    check_tags,
    check_text,
    check_version_forward,
    normalise_tags,
    parse_semver,
)

KIND = "tool"
STATUSES = ("draft", "active", "deprecated")
# Fields a ToolUpdated may change. The slug is the tool's public handle and never changes.
UPDATABLE = (
    "name",
    "description",
    "long_description",
    "category",
    "tags",
    "examples",
    "input_schema",
    "output_schema",
    "version",
    "author",
    "config",
    "sensitive_keys",
)


@dataclass(frozen=True)
class Tool:
    id: UUID
    aggregate_version: int
    slug: str
    name: str
    description: str
    category: str
    input_schema: dict[str, Any]
    version: str
    author: str
    long_description: str | None = None
    output_schema: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    sensitive_keys: list[str] = field(default_factory=list)
    status: str = "draft"
    deleted: bool = False

    def fields(self) -> dict[str, Any]:
        """The tool's data as plain JSON-able values (config still sealed)."""
        return {
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "long_description": self.long_description,
            "category": self.category,
            "tags": list(self.tags),
            "examples": list(self.examples),
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "version": self.version,
            "author": self.author,
            "config": dict(self.config),
            "sensitive_keys": list(self.sensitive_keys),
            "status": self.status,
            "deleted": self.deleted,
        }


@dataclass(frozen=True, kw_only=True)
class ToolRegistered(DomainEvent):
    slug: str
    name: str
    description: str
    long_description: str | None
    category: str
    tags: list[str]
    examples: list[dict[str, Any]]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    version: str
    author: str
    config: dict[str, Any]
    sensitive_keys: list[str]
    status: str


@dataclass(frozen=True, kw_only=True)
class ToolUpdated(DomainEvent):
    changes: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ToolStatusChanged(DomainEvent):
    old_status: str
    new_status: str


@dataclass(frozen=True, kw_only=True)
class ToolDeleted(DomainEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class ToolRestored(DomainEvent):
    pass


TOOL_EVENTS: tuple[type[DomainEvent], ...] = (
    ToolRegistered,
    ToolUpdated,
    ToolStatusChanged,
    ToolDeleted,
    ToolRestored,
)


TEXT_LIMITS = {"name": 200, "description": 2000, "category": 100, "author": 200}
LONG_DESCRIPTION_MAX = 100_000


def _check_fields(data: dict[str, Any], *, current_version: str | None) -> list[FieldError]:
    errors: list[FieldError] = []
    for name, limit in TEXT_LIMITS.items():
        if name in data:
            errors += check_text(data[name], name, max_len=limit)
    if data.get("long_description") is not None:
        errors += check_text(
            data["long_description"], "long_description", max_len=LONG_DESCRIPTION_MAX
        )
    if "tags" in data:
        errors += check_tags(data["tags"])
    if "input_schema" in data:
        errors += check_json_schema(data["input_schema"], "input_schema")
    if data.get("output_schema") is not None:
        errors += check_json_schema(data["output_schema"], "output_schema")
    if "examples" in data and not all(isinstance(e, dict) for e in data["examples"]):
        errors.append(FieldError("examples", "each example must be a JSON object"))
    if "config" in data and not isinstance(data["config"], dict):
        errors.append(FieldError("config", "must be a JSON object"))
    if "version" in data:
        errors += _check_semver(data["version"], current_version)
    return errors


def _check_semver(new: str, current: str | None) -> list[FieldError]:
    if current is not None:
        return check_version_forward(current, new)
    parsed = parse_semver(new)
    return [parsed] if isinstance(parsed, FieldError) else []


def register_tool(tool_id: UUID, data: dict[str, Any], meta: EventMeta) -> ToolRegistered:
    errors = check_slug(data.get("slug", ""))
    errors += _check_fields(data, current_version=None)
    status = data.get("status", "draft")
    if status not in ("draft", "active"):
        errors.append(FieldError("status", "a new tool is 'draft' or 'active'"))
    config = data.get("config") or {}
    keys = sensitive_keys_of(config, data.get("sensitive_keys") or [])
    errors += check_sealed(config, keys)
    if errors:
        raise InvalidInput(errors)
    return ToolRegistered(
        **stamp(meta, tool_id, 1),
        slug=data["slug"],
        name=data["name"],
        description=data["description"],
        long_description=data.get("long_description"),
        category=data["category"],
        tags=normalise_tags(data.get("tags") or []),
        examples=list(data.get("examples") or []),
        input_schema=data["input_schema"],
        output_schema=data.get("output_schema"),
        version=data["version"],
        author=data["author"],
        config=config,
        sensitive_keys=keys,
        status=status,
    )


def _require_live(tool: Tool) -> None:
    if tool.deleted:
        raise IllegalTransition(f"tool {tool.slug} is deleted; restore it first")


def update_tool(tool: Tool, data: dict[str, Any], meta: EventMeta) -> ToolUpdated | None:
    """Changes the given fields; returns None when nothing actually changes."""
    _require_live(tool)
    if "slug" in data and data["slug"] != tool.slug:
        raise InvalidInput.one("slug", "cannot be changed; register a new tool instead")
    unknown = sorted(set(data) - set(UPDATABLE) - {"slug"})
    if unknown:
        raise InvalidInput([FieldError(k, "is not an updatable field") for k in unknown])
    current = tool.fields()
    changes = {k: v for k, v in data.items() if k in UPDATABLE and current[k] != v}
    if "tags" in changes:
        changes["tags"] = normalise_tags(changes["tags"])
        if changes["tags"] == current["tags"]:
            del changes["tags"]
    if "config" in changes or "sensitive_keys" in changes:
        config = changes.get("config", tool.config)
        keys = sensitive_keys_of(config, changes.get("sensitive_keys", tool.sensitive_keys))
        errors = check_sealed(config, keys)
        if errors:
            raise InvalidInput(errors)
        if keys != tool.sensitive_keys:
            changes["sensitive_keys"] = keys
        else:
            changes.pop("sensitive_keys", None)
    # Tags are checked as the caller sent them (repeats, indices), not as normalised above.
    errors = check_tags(data["tags"]) if "tags" in data else []
    unchecked = {k: v for k, v in changes.items() if k != "tags"}
    errors += _check_fields(unchecked, current_version=tool.version)
    if errors:
        raise InvalidInput(errors)
    if not changes:
        return None
    return ToolUpdated(**stamp(meta, tool.id, tool.aggregate_version + 1), changes=changes)


def _change_status(tool: Tool, new_status: str, meta: EventMeta) -> ToolStatusChanged:
    _require_live(tool)
    if tool.status == new_status:
        raise IllegalTransition(f"tool {tool.slug} is already {new_status}")
    return ToolStatusChanged(
        **stamp(meta, tool.id, tool.aggregate_version + 1),
        old_status=tool.status,
        new_status=new_status,
    )


def activate_tool(tool: Tool, meta: EventMeta) -> ToolStatusChanged:
    """draft → active, and deprecated → active (reactivation)."""
    return _change_status(tool, "active", meta)


def deprecate_tool(tool: Tool, meta: EventMeta) -> ToolStatusChanged:
    if tool.status == "draft":
        raise IllegalTransition(f"tool {tool.slug} is a draft; a draft is activated or deleted")
    return _change_status(tool, "deprecated", meta)


def delete_tool(tool: Tool, meta: EventMeta) -> ToolDeleted:
    _require_live(tool)
    return ToolDeleted(**stamp(meta, tool.id, tool.aggregate_version + 1))


def restore_tool(tool: Tool, meta: EventMeta) -> ToolRestored:
    if not tool.deleted:
        raise IllegalTransition(f"tool {tool.slug} is not deleted")
    return ToolRestored(**stamp(meta, tool.id, tool.aggregate_version + 1))


def evolve(tool: Tool | None, event: DomainEvent) -> Tool:
    version = event.originator_version
    if isinstance(event, ToolRegistered):
        data = event.payload()
        return Tool(id=event.originator_id, aggregate_version=version, deleted=False, **data)
    if tool is None:
        raise ValueError(f"{event.type_name} before ToolRegistered for {event.originator_id}")
    if isinstance(event, ToolUpdated):
        return replace(tool, aggregate_version=version, **event.changes)
    if isinstance(event, ToolStatusChanged):
        return replace(tool, aggregate_version=version, status=event.new_status)
    if isinstance(event, ToolDeleted):
        return replace(tool, aggregate_version=version, deleted=True)
    if isinstance(event, ToolRestored):
        return replace(tool, aggregate_version=version, deleted=False)
    raise TypeError(f"not a tool event: {event.type_name}")


def replay(events: Iterable[DomainEvent]) -> Tool | None:
    tool: Tool | None = None
    for event in events:
        tool = evolve(tool, event)
    return tool


AGGREGATE: AggregateKind[Tool] = AggregateKind(KIND, Tool, TOOL_EVENTS, evolve, replay)
