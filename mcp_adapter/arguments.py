"""The MCP tools' argument types: bounds, patterns and descriptions, from the signatures the SDK
validates and publishes as input schemas."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp_types import (
    ToolAnnotations,
)
from pydantic import Field

from projections.read_args import CURSOR_MAX, MAX_INT, NO_NUL, QUERY_MAX, VALUE_MAX

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

Slug = Annotated[
    str,
    Field(min_length=1, max_length=VALUE_MAX, pattern=NO_NUL, description="The slug (or the id)"),
]
Text = Annotated[str, Field(min_length=1, max_length=VALUE_MAX, pattern=NO_NUL)]
SearchText = Annotated[
    str, Field(min_length=1, max_length=QUERY_MAX, pattern=NO_NUL, description="What to look for")
]
Tags = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=VALUE_MAX, pattern=NO_NUL)]] | None,
    Field(max_length=20, description="Only items with every one of these tags"),
]
Limit = Annotated[int, Field(ge=1, le=100, description="At most this many items")]
Cursor = Annotated[
    str | None,
    Field(max_length=CURSOR_MAX, description="The `next_cursor` of the previous page"),
]
Version = Annotated[int, Field(ge=1, le=MAX_INT, description="A registry (aggregate) version")]
Position = Annotated[int, Field(ge=0, le=MAX_INT, description="An event-store position")]
MinPosition = Annotated[
    int | None,
    Field(
        ge=0,
        le=MAX_INT,
        description="Wait (bounded) until the read models have applied this event-store "
        "position, e.g. the `position` a write returned; the answer says so if they have not",
    ),
]
ToolStatus = Literal["draft", "active", "deprecated"]
DatasetStatus = Literal["active", "archived"]
Window = Literal["1h", "24h", "7d"]
IncludeDeprecated = Annotated[
    bool, Field(description="Also return deprecated tools (left out by default)")
]
