"""The published JSON Schemas (schemas/) match what the relay really sends: real events from the
domain's own decisions, turned into EventRecords and messages, validate against them; and the
committed files are exactly what scripts/gen_schemas.py generates."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import jsonschema
import pytest

from domain import dataset, document, tool
from domain.events import DomainEvent, EventMeta
from infra.kafka.cloudevents import decode_headers, to_message
from projections.records import KIND_OF_EVENT, EventRecord

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
META = EventMeta("alice", "req-1", "cmd-1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "why")
SEALED = {"$sealed": "v1:gAAAAAB-not-a-real-token"}


def _fold(
    evolve: Callable[[Any, DomainEvent], Any], first: DomainEvent, *steps: Callable[[Any], Any]
) -> Iterator[DomainEvent]:
    """Runs decisions one after another on the evolving state, yielding each event."""
    state = evolve(None, first)
    yield first
    for step in steps:
        event = step(state)
        state = evolve(state, event)
        yield event


def tool_events() -> Iterator[DomainEvent]:
    body = {
        "slug": "weather-lookup",
        "name": "Weather",
        "description": "Weather now",
        "long_description": None,
        "category": "weather",
        "tags": ["weather", "geo"],
        "examples": [{"city": "Lisbon"}],
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        "output_schema": None,
        "version": "1.0.0",
        "author": "platform",
        "config": {"region": "eu", "api_token": SEALED},
    }
    yield from _fold(
        tool.evolve,
        tool.register_tool(uuid4(), body, META),
        lambda t: tool.update_tool(
            t, {"version": "1.1.0", "tags": ["b", "a"], "output_schema": {"type": "object"}}, META
        ),
        lambda t: tool.activate_tool(t, META),
        lambda t: tool.deprecate_tool(t, META),
        lambda t: tool.delete_tool(t, META),
        lambda t: tool.restore_tool(t, META),
    )


def dataset_events() -> Iterator[DomainEvent]:
    body = {
        "slug": "sales-orders",
        "name": "Sales orders",
        "description": "One row per order",
        "source": {"kind": "postgres_table", "uri": "postgresql://wh/sales?table=orders"},
        "columns": [
            {"name": "id", "type": "bigint", "nullable": False},
            {"name": "amount", "type": "numeric"},
        ],
        "tags": ["sales"],
        "owner": "data",
    }
    profile = {
        "row_count": 10,
        "columns": {"id": {"null_count": 0, "distinct_count": 10, "min": 1, "max": 10}},
    }
    yield from _fold(
        dataset.evolve,
        dataset.register_dataset(uuid4(), body, META),
        lambda d: dataset.describe_dataset(d, {"owner": "finance", "tags": ["x"]}, META),
        lambda d: dataset.change_dataset_columns(d, [{"name": "id", "type": "uuid"}], META),
        lambda d: dataset.record_dataset_profile(d, profile, META),
        lambda d: dataset.archive_dataset(d, META),
        lambda d: dataset.unarchive_dataset(d, META),
        lambda d: dataset.delete_dataset(d, META),
        lambda d: dataset.restore_dataset(d, META),
    )


def document_events() -> Iterator[DomainEvent]:
    body = {
        "title": "How orders are counted",
        "content": "# Orders",
        "content_type": "text/markdown",
        "metadata": {"author": "jane", "language": "en"},
        "tags": ["sales"],
        "link": {"kind": "tool", "id": str(uuid4())},
    }
    yield from _fold(
        document.evolve,
        document.add_document(uuid4(), body, META),
        lambda d: document.revise_document(d, {"title": "Orders", "link": None}, META),
        lambda d: document.retag_document(d, ["a", "b"], META),
        lambda d: document.remove_document(d, META),
        lambda d: document.restore_document(d, META),
    )


def real_records() -> list[EventRecord]:
    events = [*tool_events(), *dataset_events(), *document_events()]
    return [EventRecord.from_event(e, position) for position, e in enumerate(events, 1)]


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


RECORDS = real_records()


def test_every_published_event_type_has_an_example_and_a_schema() -> None:
    published = {n for n, kind in KIND_OF_EVENT.items() if kind != "slug"}
    assert {r.type for r in RECORDS} == published
    files = {p.name for p in SCHEMAS.glob("io.mcp-ledger.*.json")}
    assert {f"io.mcp-ledger.{KIND_OF_EVENT[n]}.{n}.v1.json" for n in published} <= files


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.type)
def test_real_event_data_and_headers_validate(record: EventRecord) -> None:
    _, value, headers = to_message(record)
    attrs = decode_headers(headers)
    _validator(f"{attrs['ce_type']}.json").validate(json.loads(value))
    _validator("envelope.json").validate(attrs)


def test_secrets_are_redacted_in_published_data() -> None:
    registered = next(r for r in RECORDS if r.type == "ToolRegistered")
    assert registered.data["config"]["api_token"] == "***"


def test_schemas_are_what_the_generator_writes() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_schemas.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(
    ("type_", "change"),
    [
        ("ToolRegistered", {"surprise": 1}),
        ("ToolRegistered", {"tags": ["Not-Lower"]}),
        ("ToolUpdated", {"changes": {"slug": "renamed"}}),
        ("DocumentAdded", {"link": {"kind": "tool", "id": "not-a-uuid"}}),
    ],
)
def test_schemas_reject_what_the_domain_never_emits(type_: str, change: dict[str, Any]) -> None:
    record = next(r for r in RECORDS if r.type == type_)
    _, value, headers = to_message(record)
    attrs = decode_headers(headers)
    with pytest.raises(jsonschema.ValidationError):
        _validator(f"{attrs['ce_type']}.json").validate({**json.loads(value), **change})
