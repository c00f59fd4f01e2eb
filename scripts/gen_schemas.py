"""Writes schemas/: a JSON Schema (draft 2020-12) for the data of every event type published to
Kafka, named after its ce_type, plus envelope.json for the CloudEvents headers.

Field types come from the domain event dataclasses; the rules the domain enforces (slug and tag
patterns, statuses, which fields a change may touch) are layered on from the domain's own
constants, so a domain change shows up here. Run after changing an event:

    .venv/bin/python scripts/gen_schemas.py          # rewrite schemas/
    .venv/bin/python scripts/gen_schemas.py --check  # exit 1 if schemas/ is out of date (tests)
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from domain import dataset, document, tool  # noqa: E402
from domain.events import DomainEvent  # noqa: E402
from domain.validation import MAX_TAGS, SLUG_RE, TAG_RE  # noqa: E402
from infra.kafka import cloudevents  # noqa: E402
from infra.kafka.topics import KIND_TOPICS  # noqa: E402
from infra.usage.emitter import UsageEvent  # noqa: E402
from infra.usage.sinks import USAGE_TOPIC, USAGE_TYPE  # noqa: E402
from projections.records import EVENT_CLASSES, KIND_OF_EVENT  # noqa: E402

DRAFT = "https://json-schema.org/draft/2020-12/schema"
OUT = ROOT / "schemas"
STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
SCALAR = {"type": ["string", "number", "integer", "boolean", "null"]}

TAGS = {
    "type": "array",
    "items": {"type": "string", "pattern": TAG_RE.pattern},
    "maxItems": MAX_TAGS,
    "uniqueItems": True,
    "description": "sorted, no repeats",
}
COLUMN = {
    "type": "object",
    "properties": {
        "name": STRING,
        "type": STRING,
        "nullable": {"type": "boolean"},
        "description": NULLABLE_STRING,
    },
    "required": ["name", "type", "nullable", "description"],
    "additionalProperties": False,
}
STATS = {
    "type": "object",
    "properties": {
        "null_count": {"type": ["integer", "null"], "minimum": 0},
        "distinct_count": {"type": ["integer", "null"], "minimum": 0},
        "min": SCALAR,
        "max": SCALAR,
    },
    "additionalProperties": False,
}
# The domain's rules for a field, by field name (or "Event.field" where names collide).
REFINED: dict[str, dict[str, Any]] = {
    "slug": {"type": "string", "pattern": SLUG_RE.pattern},
    "tags": TAGS,
    "ToolRegistered.status": {"enum": ["draft", "active"]},
    "ToolStatusChanged.old_status": {"enum": list(tool.STATUSES)},
    "ToolStatusChanged.new_status": {"enum": list(tool.STATUSES)},
    "ToolRegistered.version": {"type": "string", "description": "semantic version (semver 2)"},
    "ToolRegistered.config": {
        "type": "object",
        "description": 'secret values (see sensitive_keys) are always "***"',
    },
    "DatasetRegistered.source": {
        "type": "object",
        "properties": {"kind": {"enum": list(dataset.SOURCE_KINDS)}, "uri": STRING},
        "required": ["kind", "uri"],
        "additionalProperties": False,
    },
    "DatasetRegistered.columns": {"type": "array", "items": COLUMN},
    "DatasetColumnsChanged.columns": {"type": "array", "items": COLUMN},
    "DatasetProfileRecorded.row_count": {"type": "integer", "minimum": 0},
    "DatasetProfileRecorded.columns": {"type": "object", "additionalProperties": STATS},
    "DocumentAdded.content_type": {"enum": list(document.CONTENT_TYPES)},
    "DocumentAdded.metadata": {
        "type": "object",
        "properties": dict.fromkeys(document.METADATA_LIMITS, STRING),
        "additionalProperties": False,
    },
    "DocumentAdded.link": {
        "type": "object",
        "properties": {
            "kind": {"enum": list(document.LINK_KINDS)},
            "id": {"type": "string", "format": "uuid"},
        },
        "required": ["kind", "id"],
        "additionalProperties": False,
    },
}
# A change event carries only the changed fields, each shaped as in the registering event.
CHANGES: dict[type[DomainEvent], tuple[type[DomainEvent], tuple[str, ...]]] = {
    tool.ToolUpdated: (tool.ToolRegistered, tool.UPDATABLE),
    dataset.DatasetDescribed: (dataset.DatasetRegistered, dataset.DESCRIBABLE),
    document.DocumentRevised: (document.DocumentAdded, document.REVISABLE),
}
PUBLISHED = [name for name, kind in KIND_OF_EVENT.items() if kind in KIND_TOPICS]


def type_schema(annotation: Any) -> dict[str, Any]:
    """JSON Schema of a Python annotation as used in the event dataclasses."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        options = [type_schema(a) for a in args if a is not type(None)]
        if len(options) == 1 and type(None) in args:
            return _nullable(options[0])
        return {"anyOf": options}
    simple: dict[Any, dict[str, Any]] = {
        str: STRING,
        bool: {"type": "boolean"},
        int: {"type": "integer"},
        float: {"type": "number"},
        UUID: {"type": "string", "format": "uuid"},
        Any: {},
    }
    if annotation in simple:
        return dict(simple[annotation])
    if origin is list:
        return {"type": "array", "items": type_schema(args[0]) if args else {}}
    if origin is dict:
        values = type_schema(args[1]) if args else {}
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    raise TypeError(f"no JSON Schema for {annotation!r}")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "type" in schema and isinstance(schema["type"], str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def field_schema(cls: type[DomainEvent], name: str, annotation: Any) -> dict[str, Any]:
    refined = REFINED.get(f"{cls.__name__}.{name}") or REFINED.get(name)
    if refined is None:
        return type_schema(annotation)
    if type(None) in typing.get_args(annotation) and "enum" not in refined:
        return _nullable(refined)
    return dict(refined)


def data_properties(cls: type[DomainEvent]) -> dict[str, dict[str, Any]]:
    base = {f.name for f in fields(DomainEvent)}
    hints = typing.get_type_hints(cls)
    own = [f.name for f in fields(cls) if f.name not in base]
    return {name: field_schema(cls, name, hints[name]) for name in own}


def changes_schema(cls: type[DomainEvent]) -> dict[str, Any]:
    registered, allowed = CHANGES[cls]
    shapes = data_properties(registered)
    properties = {name: shapes.get(name, {}) for name in allowed}
    return {
        "type": "object",
        "description": "only the fields that changed, with their new values",
        "properties": properties,
        "additionalProperties": False,
        "minProperties": 1,
    }


def event_schema(name: str) -> dict[str, Any]:
    cls = EVENT_CLASSES[name]
    ce_type = cloudevents.ce_type(KIND_OF_EVENT[name], name)
    properties = data_properties(cls)
    if cls in CHANGES:
        properties["changes"] = changes_schema(cls)
    return {
        "$schema": DRAFT,
        "$id": f"urn:mcp-ledger:schema:{ce_type}",
        "title": f"{name} (data of {ce_type})",
        "description": f"The value (JSON) of {ce_type} messages on the Kafka topic "
        f"<prefix>.{KIND_TOPICS[KIND_OF_EVENT[name]]} (default prefix mcp-ledger).",
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def envelope_schema() -> dict[str, Any]:
    decimal = {"type": "string", "pattern": "^[1-9][0-9]*$"}
    headers = {
        "ce_specversion": {"const": cloudevents.SPEC_VERSION},
        "ce_id": {"type": "string", "format": "uuid", "description": "uuid5 of subject:sequence"},
        "ce_type": {
            "type": "string",
            "pattern": r"^io\.mcp-ledger\.[a-z]+\.[A-Za-z]+\.v[1-9][0-9]*$",
        },
        "ce_source": {"const": cloudevents.SOURCE},
        "ce_subject": {"type": "string", "format": "uuid", "description": "the aggregate id"},
        "ce_time": {"type": "string", "format": "date-time"},
        "content-type": {"const": cloudevents.CONTENT_TYPE},
        "ce_sequence": {**decimal, "description": "the aggregate version (1, 2, ...)"},
        "ce_position": {**decimal, "description": "the event store position (global order)"},
        "ce_actor": STRING,
        "ce_correlationid": STRING,
        "ce_causationid": STRING,
        "ce_reason": STRING,
    }
    return {
        "$schema": DRAFT,
        "$id": "urn:mcp-ledger:schema:envelope",
        "title": "CloudEvents 1.0 Kafka headers of every mcp-ledger event message",
        "description": "Header name -> UTF-8 header value. The message key is the aggregate id "
        "(= ce_subject); the value is the event data as JSON, described by the schema named "
        "after ce_type.",
        "type": "object",
        "properties": headers,
        "required": [h for h in headers if h != "ce_reason"],
        "additionalProperties": False,
    }


def dead_letter_schema() -> dict[str, Any]:
    integer = {"type": "integer", "minimum": 1}
    properties = {
        "aggregate_id": {"type": "string", "format": "uuid"},
        "version": integer,
        "position": integer,
        "stored_topic": STRING,
        "error": STRING,
    }
    return {
        "$schema": DRAFT,
        "$id": f"urn:mcp-ledger:schema:{cloudevents.DEAD_LETTER_TYPE}",
        "title": "An event the relay could not publish (read it from the event store)",
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def usage_schema() -> dict[str, Any]:
    """The value of usage messages, from the UsageEvent dataclass."""
    hints = typing.get_type_hints(UsageEvent)
    refined: dict[str, dict[str, Any]] = {
        "surface": {"enum": ["mcp", "api"]},
        "status": {"enum": ["ok", "error", "not_found", "invalid"]},
        "arguments_digest": {
            "type": "string",
            "pattern": "^sha256:[0-9a-f]{64}$",
            "description": "sha256 of the canonical JSON arguments, secret-named keys masked",
        },
        "result_ids": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": STRING,
                    "id": STRING,
                    "version": {"type": ["integer", "null"]},
                },
                "required": ["kind", "id"],
            },
            "description": "what the call returned, with the versions it saw",
        },
        "latency_ms": {"type": "number", "minimum": 0},
        "id": {"type": "string", "description": "the event id (= ce_id); deduplicate by it"},
        "occurred_at": {"type": "string", "format": "date-time"},
    }
    properties = {
        f.name: refined.get(f.name) or type_schema(hints[f.name]) for f in fields(UsageEvent)
    }
    return {
        "$schema": DRAFT,
        "$id": f"urn:mcp-ledger:schema:{USAGE_TYPE}",
        "title": f"A served call (data of {USAGE_TYPE})",
        "description": f"The value (JSON) of messages on the Kafka topic <prefix>.{USAGE_TOPIC} "
        "(default prefix mcp-ledger): one per MCP tool call and per API search.",
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def usage_envelope_schema() -> dict[str, Any]:
    headers = {
        "ce_specversion": {"const": cloudevents.SPEC_VERSION},
        "ce_id": {"type": "string", "description": "the usage event's id"},
        "ce_type": {"const": USAGE_TYPE},
        "ce_source": {"const": cloudevents.SOURCE},
        "ce_subject": {"type": "string", "description": "the tool name (= the message key)"},
        "ce_time": {"type": "string", "format": "date-time"},
        "content-type": {"const": cloudevents.CONTENT_TYPE},
        "ce_correlationid": {"type": "string", "description": "the request id, when known"},
    }
    return {
        "$schema": DRAFT,
        "$id": "urn:mcp-ledger:schema:usage-envelope",
        "title": f"CloudEvents 1.0 Kafka headers of <prefix>.{USAGE_TOPIC} messages",
        "type": "object",
        "properties": headers,
        "required": [h for h in headers if h != "ce_correlationid"],
        "additionalProperties": False,
    }


def generate() -> dict[str, str]:
    """File name -> content."""
    documents = {
        f"{cloudevents.ce_type(KIND_OF_EVENT[name], name)}.json": event_schema(name)
        for name in PUBLISHED
    }
    documents["envelope.json"] = envelope_schema()
    documents[f"{cloudevents.DEAD_LETTER_TYPE}.json"] = dead_letter_schema()
    documents[f"{USAGE_TYPE}.json"] = usage_schema()
    documents["usage-envelope.json"] = usage_envelope_schema()
    return {name: json.dumps(doc, indent=2) + "\n" for name, doc in sorted(documents.items())}


def main(argv: list[str]) -> int:
    wanted = generate()
    if "--check" in argv:
        present = {p.name: p.read_text() for p in OUT.glob("*.json")}
        stale = sorted(n for n in wanted.keys() | present.keys() if wanted.get(n) != present.get(n))
        for name in stale:
            print(f"schemas/{name} is out of date: run scripts/gen_schemas.py", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for old in {p.name for p in OUT.glob("*.json")} - wanted.keys():
        (OUT / old).unlink()
    for name, text in wanted.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(wanted)} schemas to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
