"""The shapes of command input. Types are checked here; the domain checks the invariants."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from domain import dataset, document, tool
from domain.validation import SLUG_MAX

# Length limits are the domain's: the schema refuses early what the domain would refuse.
TOOL_TEXT = tool.TEXT_LIMITS
DATASET_TEXT = dataset.TEXT_LIMITS
DOCUMENT_META = document.METADATA_LIMITS

# Only JSON: YAML dates/sets or NaN would otherwise reach the event store (a crash, or "NaN" in
# the stored JSON that other readers cannot parse).
JsonObject = dict[str, JsonValue]
STRICT_JSON = ConfigDict(extra="forbid", allow_inf_nan=False)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # Postgres text and jsonb cannot hold U+0000: accepting it would store an event that
        # no read model can project.
        if _has_nul(value):
            raise ValueError("must not contain the NUL character (\\u0000)")
        return value

    def given(self) -> dict[str, Any]:
        """Only the fields the caller actually sent (a PATCH changes nothing else)."""
        return self.model_dump(exclude_unset=True)


class RegisterTool(_Input):
    model_config = STRICT_JSON

    slug: str = Field(examples=["weather-lookup"], max_length=SLUG_MAX)
    name: str = Field(examples=["Weather lookup"], max_length=TOOL_TEXT["name"])
    description: str = Field(
        examples=["Current weather for a city"], max_length=TOOL_TEXT["description"]
    )
    long_description: str | None = Field(default=None, max_length=tool.LONG_DESCRIPTION_MAX)
    category: str = Field(examples=["weather"], max_length=TOOL_TEXT["category"])
    tags: list[str] = Field(default_factory=list, examples=[["weather", "geo"]])
    examples: list[JsonObject] = Field(default_factory=list)
    input_schema: JsonObject = Field(
        examples=[{"type": "object", "properties": {"city": {"type": "string"}}}]
    )
    output_schema: JsonObject | None = None
    version: str = Field(examples=["1.0.0"], description="Semantic version; only moves forward")
    author: str | None = Field(
        default=None,
        examples=["platform-team"],
        max_length=TOOL_TEXT["author"],
        description="Defaults to who registers it: the API key's name, or the OIDC subject",
    )
    config: JsonObject = Field(
        default_factory=dict,
        description="Free JSON; values under sensitive keys are sealed and never shown again",
    )
    sensitive_keys: list[str] = Field(
        default_factory=list,
        description="Config keys that are secret (keys named like token/password/secret/api_key "
        "are secret anyway)",
    )
    status: Literal["draft", "active"] = "draft"


class UpdateTool(_Input):
    model_config = STRICT_JSON

    name: str | None = Field(default=None, max_length=TOOL_TEXT["name"])
    description: str | None = Field(default=None, max_length=TOOL_TEXT["description"])
    long_description: str | None = Field(default=None, max_length=tool.LONG_DESCRIPTION_MAX)
    category: str | None = Field(default=None, max_length=TOOL_TEXT["category"])
    tags: list[str] | None = None
    examples: list[JsonObject] | None = None
    input_schema: JsonObject | None = None
    output_schema: JsonObject | None = None
    version: str | None = None
    author: str | None = Field(default=None, max_length=TOOL_TEXT["author"])
    config: JsonObject | None = None
    sensitive_keys: list[str] | None = None

    def given(self) -> dict[str, Any]:
        data = super().given()
        # null means "clear" only where a field is optional in the domain.
        nullable = {"long_description", "output_schema"}
        return {k: v for k, v in data.items() if v is not None or k in nullable}


class ToolBatch(_Input):
    """Many tools: `{"tools": [...]}`, or just the list."""

    tools: list[RegisterTool] = Field(min_length=1, max_length=100_000)

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, value: Any) -> Any:
        return {"tools": value} if isinstance(value, list) else value


DatasetSourceKind = Literal["postgres_table", "csv", "parquet", "url", "json", "api", "other"]
# A profile's min/max: any JSON scalar (dates and times as strings).
Scalar = str | int | float | bool | None


class DatasetSource(_Input):
    kind: DatasetSourceKind = Field(examples=["postgres_table"])
    uri: str = Field(
        max_length=dataset.URI_MAX,
        examples=["postgresql://warehouse.internal/sales?table=public.orders"],
        description="Where the data lives; must not embed a password",
    )


class Column(_Input):
    name: str = Field(max_length=dataset.COLUMN_LIMITS["name"], examples=["order_id"])
    type: str = Field(max_length=dataset.COLUMN_LIMITS["type"], examples=["bigint"])
    nullable: bool = True
    description: str | None = Field(default=None, max_length=dataset.COLUMN_LIMITS["description"])


class RegisterDataset(_Input):
    slug: str = Field(examples=["sales-orders"], max_length=SLUG_MAX)
    name: str = Field(examples=["Sales orders"], max_length=DATASET_TEXT["name"])
    description: str = Field(
        examples=["One row per order since 2019"], max_length=DATASET_TEXT["description"]
    )
    source: DatasetSource
    columns: list[Column] = Field(
        default_factory=list,
        max_length=dataset.MAX_COLUMNS,
        examples=[[{"name": "order_id", "type": "bigint", "nullable": False}]],
        description="Column names must be unique",
    )
    tags: list[str] = Field(default_factory=list, examples=[["sales", "finance"]])
    owner: str = Field(examples=["data-platform"], max_length=DATASET_TEXT["owner"])


class DescribeDataset(_Input):
    name: str | None = Field(default=None, max_length=DATASET_TEXT["name"])
    description: str | None = Field(default=None, max_length=DATASET_TEXT["description"])
    tags: list[str] | None = Field(default=None, examples=[["sales"]])
    owner: str | None = Field(default=None, max_length=DATASET_TEXT["owner"])
    source: DatasetSource | None = None

    def given(self) -> dict[str, Any]:
        # None of these fields can be cleared, so null means "leave as is".
        return {k: v for k, v in super().given().items() if v is not None}


class ChangeColumns(_Input):
    columns: list[Column] = Field(
        max_length=dataset.MAX_COLUMNS,
        examples=[[{"name": "order_id", "type": "bigint", "nullable": False}]],
        description="The complete new column list; statistics of dropped columns are dropped",
    )


class ColumnStats(_Input):
    null_count: int | None = Field(default=None, ge=0, examples=[0])
    distinct_count: int | None = Field(default=None, ge=0, examples=[1250])
    min: Scalar = Field(default=None, examples=[1])
    max: Scalar = Field(default=None, examples=[1250])


class RecordProfile(_Input):
    row_count: int = Field(ge=0, examples=[1250])
    columns: dict[str, ColumnStats] = Field(
        default_factory=dict,
        examples=[{"order_id": {"null_count": 0, "distinct_count": 1250, "min": 1, "max": 1250}}],
        description="Statistics keyed by column name; only existing columns may be named",
    )


class DocumentMetadata(_Input):
    source: str | None = Field(
        default=None, max_length=DOCUMENT_META["source"], examples=["https://wiki/orders"]
    )
    author: str | None = Field(default=None, max_length=DOCUMENT_META["author"], examples=["jane"])
    language: str | None = Field(
        default=None, max_length=DOCUMENT_META["language"], examples=["en"]
    )


class DocumentLink(_Input):
    kind: Literal["tool", "dataset"] = Field(examples=["dataset"])
    id: str = Field(
        max_length=36,
        examples=["0b6f7d1e-8a63-4c55-9f0e-2f1d3c4b5a69"],
        description="The id (not the slug) of an existing tool or dataset",
    )


class AddDocument(_Input):
    title: str = Field(examples=["How orders are counted"], max_length=document.MAX_TITLE)
    content: str = Field(examples=["# Orders\nOne row per order."], max_length=document.MAX_CONTENT)
    content_type: Literal["text/plain", "text/markdown"] = "text/plain"
    metadata: DocumentMetadata = Field(default_factory=DocumentMetadata)
    tags: list[str] = Field(default_factory=list, examples=[["sales"]])
    link: DocumentLink | None = None


class ReviseDocument(_Input):
    title: str | None = Field(default=None, max_length=document.MAX_TITLE)
    content: str | None = Field(default=None, max_length=document.MAX_CONTENT)
    content_type: Literal["text/plain", "text/markdown"] | None = None
    metadata: DocumentMetadata | None = Field(
        default=None, description="Replaces the whole metadata object"
    )
    link: DocumentLink | None = Field(default=None, description="null removes the link")

    def given(self) -> dict[str, Any]:
        # Only the link can be cleared with null.
        return {k: v for k, v in super().given().items() if v is not None or k == "link"}


class RetagDocument(_Input):
    tags: list[str] = Field(examples=[["sales", "how-to"]], description="Replaces all tags")
