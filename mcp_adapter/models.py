"""What the MCP tools answer: pydantic models whose JSON Schemas are the tools' output schemas.
Every answer carries `position`, the event-store position the read models had applied when it
was read (in the same snapshot as the rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

POSITION = Field(
    description="The event-store position the read models had applied when this was read: "
    "every change up to it is reflected, later ones are not (yet)"
)


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    position: int = POSITION

    def result_ids(self) -> list[dict[str, Any]]:
        """What the answer returned, as {kind, id, version}, for the usage event."""
        return []


# --- tools ----------------------------------------------------------------------------------


class Param(BaseModel):
    name: str
    type: str = Field(description="JSON type(s), e.g. string, integer, array, or 'any'")
    required: bool
    description: str | None = None


class ToolSummary(BaseModel):
    id: str
    slug: str
    name: str
    description: str
    category: str
    tags: list[str]
    status: str
    semver: str = Field(description="The tool's own semantic version")
    version: int = Field(description="The registry version (aggregate version) of this state")
    updated_at: datetime


class ToolRecord(ToolSummary):
    author: str
    long_description: str | None = None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    examples: list[dict[str, Any]] = Field(default_factory=list)
    config: dict[str, Any] = Field(
        default_factory=dict, description="Configuration; sensitive values read '***'"
    )
    event_position: int = Field(description="The store position of this version's event")
    created_at: datetime | None
    deleted_at: datetime | None = None


class ToolAnswer(Answer):
    tool: ToolRecord
    historic: bool = Field(description="True when read from the version history (as_of/version)")

    def result_ids(self) -> list[dict[str, Any]]:
        return [{"kind": "tool", "id": self.tool.id, "version": self.tool.version}]


class ToolPage(Answer):
    items: list[ToolSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )

    def result_ids(self) -> list[dict[str, Any]]:
        return [{"kind": "tool", "id": t.id, "version": t.version} for t in self.items]


class ToolHit(BaseModel):
    id: str
    slug: str | None
    name: str
    description: str | None
    score: float
    version: int = Field(description="The registry version (aggregate version) indexed")
    semver: str | None = None
    status: str | None
    category: str | None = None
    tags: list[str] = Field(default_factory=list)
    inputs: list[Param] = Field(
        default_factory=list, description="The tool's input parameters (from its input schema)"
    )


class ToolSearch(Answer):
    items: list[ToolHit]
    mode: str = Field(description="What ran: hybrid, vector or lexical")
    warnings: list[str] = Field(default_factory=list)

    def result_ids(self) -> list[dict[str, Any]]:
        return [{"kind": "tool", "id": h.id, "version": h.version} for h in self.items]


class VersionEntry(BaseModel):
    version: int
    event_type: str
    actor: str
    reason: str | None
    occurred_at: datetime
    event_position: int
    patch: list[dict[str, Any]] = Field(description="RFC 6902 JSON Patch from the version before")


class ToolHistory(Answer):
    id: str
    slug: str
    items: list[VersionEntry]
    next_after_version: int | None = Field(
        description="Pass as `after_version` for the next page; null at the end"
    )

    def result_ids(self) -> list[dict[str, Any]]:
        return [{"kind": "tool", "id": self.id, "version": v.version} for v in self.items[-1:]]


class ToolDiff(Answer):
    id: str
    slug: str
    from_version: int
    to_version: int
    patch: list[dict[str, Any]] = Field(
        description="RFC 6902 JSON Patch: applied to from_version's state it gives to_version's"
    )

    def result_ids(self) -> list[dict[str, Any]]:
        return [{"kind": "tool", "id": self.id, "version": self.to_version}]


# --- documents ------------------------------------------------------------------------------


class DocumentRecord(BaseModel):
    id: str
    title: str
    content: str
    content_type: str
    metadata: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    link: dict[str, str] | None = Field(
        default=None, description="The tool or dataset it documents: {kind, id}"
    )
    version: int
    event_position: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


class DocumentAnswer(Answer):
    document: DocumentRecord

    def result_ids(self) -> list[dict[str, Any]]:
        return [{"kind": "document", "id": self.document.id, "version": self.document.version}]


class DocumentHit(BaseModel):
    id: str
    title: str
    score: float
    version: int
    tags: list[str] = Field(default_factory=list)
    chunk: dict[str, Any] | None = Field(
        default=None, description="The passage that matched best: {index, heading, text}"
    )


class DocumentSearch(Answer):
    items: list[DocumentHit]
    mode: str
    warnings: list[str] = Field(default_factory=list)

    def result_ids(self) -> list[dict[str, Any]]:
        return [{"kind": "document", "id": h.id, "version": h.version} for h in self.items]


# --- datasets -------------------------------------------------------------------------------


class Column(BaseModel):
    name: str
    type: str
    nullable: bool = True
    description: str | None = None


class DatasetSummary(BaseModel):
    id: str
    slug: str
    name: str
    description: str
    owner: str
    tags: list[str]
    status: str
    version: int
    columns: int = Field(description="How many columns")
    updated_at: datetime


class DatasetRecord(BaseModel):
    id: str
    slug: str
    name: str
    description: str
    owner: str
    tags: list[str]
    status: str
    source: dict[str, str]
    columns: list[Column]
    profile: dict[str, Any] | None = Field(
        default=None, description="Row count and per-column statistics, when profiled"
    )
    version: int
    event_position: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


class DatasetPage(Answer):
    items: list[DatasetSummary]
    next_cursor: str | None

    def result_ids(self) -> list[dict[str, Any]]:
        return [{"kind": "dataset", "id": d.id, "version": d.version} for d in self.items]


class DatasetAnswer(Answer):
    dataset: DatasetRecord

    def result_ids(self) -> list[dict[str, Any]]:
        return [{"kind": "dataset", "id": self.dataset.id, "version": self.dataset.version}]


# --- changes and usage ----------------------------------------------------------------------


class Change(BaseModel):
    event_position: int
    kind: str
    id: str
    version: int
    event_type: str
    ref: str | None = Field(description="The slug (tools, datasets) or title (documents)")
    occurred_at: datetime
    actor: str
    reason: str | None


class Changes(Answer):
    items: list[Change]
    next_position: int = Field(
        description="Pass as `position` to continue: everything up to it has been returned"
    )
    more: bool = Field(description="True when more changes are already available")

    def result_ids(self) -> list[dict[str, Any]]:
        return [{"kind": c.kind, "id": c.id, "version": c.version} for c in self.items]


class Latency(BaseModel):
    p50: float | None = Field(description="Median latency, ms (null without calls)")
    p95: float | None
    mean: float | None
    max: float | None


class ToolUsage(BaseModel):
    tool: str = Field(description="An MCP tool's name (or api.search)")
    calls: int
    errors: int
    latency_ms: Latency


class UsageStats(BaseModel):
    window: Literal["1h", "24h", "7d"]
    tool: str | None = Field(description="The MCP tool asked about, or null for all")
    calls: int
    errors: int
    error_rate: float
    latency_ms: Latency
    top_tools: list[ToolUsage] = Field(description="Most called first")
    window_start: str = Field(description="Start of the window (RFC 3339)")
    window_end: str
    granularity: str = Field(description="The analytics windows summed: 1m or 1h")
    source: str = Field(description="Where the numbers were read: redis or postgres")


class ErrorInfo(BaseModel):
    code: str = Field(description="not_found, projection_behind, search_unavailable, ...")
    message: str
    position: int | None = None
