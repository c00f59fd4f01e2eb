"""The shapes of command input. Types are checked here; the domain checks the invariants."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JsonObject = dict[str, Any]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def given(self) -> dict[str, Any]:
        """Only the fields the caller actually sent (a PATCH changes nothing else)."""
        return self.model_dump(exclude_unset=True)


class RegisterTool(_Input):
    slug: str = Field(examples=["weather-lookup"], max_length=63)
    name: str = Field(examples=["Weather lookup"], max_length=200)
    description: str = Field(examples=["Current weather for a city"], max_length=2000)
    long_description: str | None = Field(default=None, max_length=100_000)
    category: str = Field(examples=["weather"], max_length=100)
    tags: list[str] = Field(default_factory=list, examples=[["weather", "geo"]])
    examples: list[JsonObject] = Field(default_factory=list)
    input_schema: JsonObject = Field(
        examples=[{"type": "object", "properties": {"city": {"type": "string"}}}]
    )
    output_schema: JsonObject | None = None
    version: str = Field(examples=["1.0.0"], description="Semantic version; only moves forward")
    author: str = Field(examples=["platform-team"], max_length=200)
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
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    long_description: str | None = Field(default=None, max_length=100_000)
    category: str | None = Field(default=None, max_length=100)
    tags: list[str] | None = None
    examples: list[JsonObject] | None = None
    input_schema: JsonObject | None = None
    output_schema: JsonObject | None = None
    version: str | None = None
    author: str | None = Field(default=None, max_length=200)
    config: JsonObject | None = None
    sensitive_keys: list[str] | None = None

    def given(self) -> dict[str, Any]:
        data = super().given()
        # null means "clear" only where a field is optional in the domain.
        nullable = {"long_description", "output_schema"}
        return {k: v for k, v in data.items() if v is not None or k in nullable}


class ToolBatch(_Input):
    tools: list[RegisterTool] = Field(min_length=1, max_length=100_000)
