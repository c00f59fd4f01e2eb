"""EventRecord <-> Kafka message, in CloudEvents 1.0 Kafka binary mode: the value is the event
data as JSON, every attribute is a `ce_*` header. The relay encodes with `to_message`, Kafka
consumers (the projector) decode with `from_message`; this module is the only place that knows
the wire form (documented in docs/events.md, schemas under schemas/)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from projections.records import EVENT_CLASSES, EventRecord

SPEC_VERSION = "1.0"
SOURCE = "/mcp-ledger"
CONTENT_TYPE = "application/json"
TYPE_PREFIX = "io.mcp-ledger"
# Namespace of the deterministic event ids: a re-sent event keeps its ce_id.
EVENT_ID_NAMESPACE = UUID("3c5e1a8e-2f0b-5d3c-9a71-6b1f0e4d2c77")

Headers = list[tuple[str, bytes]]


def event_id(aggregate_id: UUID, version: int) -> UUID:
    return uuid5(EVENT_ID_NAMESPACE, f"{aggregate_id}:{version}")


def class_version(event_type: str) -> int:
    cls = EVENT_CLASSES.get(event_type)
    return cls.class_version if cls is not None else 1


def ce_type(kind: str, event_type: str) -> str:
    """e.g. io.mcp-ledger.tool.ToolRegistered.v1; the suffix is the event's class_version."""
    return f"{TYPE_PREFIX}.{kind}.{event_type}.v{class_version(event_type)}"


def _type_name(ce_type_value: str) -> str:
    parts = ce_type_value.split(".")
    if len(parts) < 3 or not parts[-1].startswith("v"):
        raise ValueError(f"ce_type {ce_type_value!r} is not {TYPE_PREFIX}.<kind>.<Event>.v<N>")
    return parts[-2]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_data(data: Mapping[str, Any]) -> bytes:
    # allow_nan=False: consumers get standard JSON or the event goes to the dead-letter topic.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def envelope(record: EventRecord) -> dict[str, str]:
    """The CloudEvents attributes of a record, as header name -> text."""
    attributes = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": str(event_id(record.aggregate_id, record.version)),
        "ce_type": ce_type(record.kind, record.type),
        "ce_source": SOURCE,
        "ce_subject": str(record.aggregate_id),
        "ce_time": rfc3339(record.occurred_at),
        "content-type": CONTENT_TYPE,
        "ce_sequence": str(record.version),
        "ce_position": str(record.position),
        "ce_actor": record.actor,
        "ce_correlationid": record.correlation_id,
        "ce_causationid": record.causation_id,
    }
    if record.reason is not None:
        attributes["ce_reason"] = record.reason
    return attributes


def to_message(record: EventRecord) -> tuple[bytes, bytes, Headers]:
    """(key, value, headers) for Kafka; key = aggregate id, so one aggregate keeps its order."""
    headers = [(name, value.encode()) for name, value in envelope(record).items()]
    return str(record.aggregate_id).encode(), encode_data(record.data), headers


def decode_headers(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    return {name: (value or b"").decode() for name, value in headers}


def from_message(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]]
) -> EventRecord:
    """The EventRecord again; raises ValueError/KeyError on a message that is not ours."""
    attrs = decode_headers(headers)
    if attrs.get("ce_specversion") != SPEC_VERSION:
        raise ValueError(f"ce_specversion {attrs.get('ce_specversion')!r} is not {SPEC_VERSION}")
    aggregate_id = UUID(attrs["ce_subject"])
    if key is not None and key.decode() != str(aggregate_id):
        raise ValueError("message key differs from ce_subject")
    return EventRecord(
        type=_type_name(attrs["ce_type"]),
        aggregate_id=aggregate_id,
        version=int(attrs["ce_sequence"]),
        position=int(attrs["ce_position"]),
        occurred_at=datetime.fromisoformat(attrs["ce_time"]),
        actor=attrs["ce_actor"],
        correlation_id=attrs["ce_correlationid"],
        causation_id=attrs["ce_causationid"],
        reason=attrs.get("ce_reason"),
        data=json.loads(value) if value else {},
    )


DEAD_LETTER_TYPE = f"{TYPE_PREFIX}.relay.DeadLetter.v1"


def dead_letter_message(
    aggregate_id: UUID, version: int, position: int, stored_topic: str, error: str
) -> tuple[bytes, bytes, Headers]:
    """A poison event's coordinates and the reason, never its state (which may hold secrets):
    the event store stays the place to read it from."""
    data = {
        "aggregate_id": str(aggregate_id),
        "version": version,
        "position": position,
        "stored_topic": stored_topic,
        "error": error,
    }
    attributes = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": str(event_id(aggregate_id, version)),
        "ce_type": DEAD_LETTER_TYPE,
        "ce_source": SOURCE,
        "ce_subject": str(aggregate_id),
        "ce_time": rfc3339(datetime.now(UTC)),
        "content-type": CONTENT_TYPE,
        "ce_sequence": str(version),
        "ce_position": str(position),
    }
    headers = [(name, text.encode()) for name, text in attributes.items()]
    return str(aggregate_id).encode(), encode_data(data), headers
