"""The Kafka message form of an EventRecord: CloudEvents binary mode, both directions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.kafka.cloudevents import (
    dead_letter_message,
    decode_headers,
    event_id,
    from_message,
    to_message,
)
from projections.records import EVENT_CLASSES, EventRecord

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)

records = st.builds(
    EventRecord,
    type=st.sampled_from(sorted(EVENT_CLASSES)),
    aggregate_id=st.uuids(),
    version=st.integers(1, 2**31),
    position=st.integers(1, 2**62),
    occurred_at=st.datetimes(timezones=zones),
    actor=st.text(),
    correlation_id=st.text(),
    causation_id=st.text(),
    reason=st.none() | st.text(),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=6),
)


@given(records)
def test_round_trip(record: EventRecord) -> None:
    key, value, headers = to_message(record)
    assert from_message(key, value, headers) == record


@given(records)
def test_headers_are_cloudevents_binary_mode(record: EventRecord) -> None:
    key, value, headers = to_message(record)
    attrs = decode_headers(headers)
    assert key == str(record.aggregate_id).encode()
    assert json.loads(value) == record.data
    assert attrs["ce_specversion"] == "1.0"
    assert attrs["ce_source"] == "/mcp-ledger"
    assert attrs["ce_subject"] == str(record.aggregate_id)
    assert attrs["content-type"] == "application/json"
    assert attrs["ce_type"] == f"io.mcp-ledger.{record.kind}.{record.type}.v1"
    assert attrs["ce_id"] == str(event_id(record.aggregate_id, record.version))
    assert attrs["ce_sequence"] == str(record.version)
    assert attrs["ce_position"] == str(record.position)
    assert attrs["ce_time"].endswith("Z")
    assert datetime.fromisoformat(attrs["ce_time"]) == record.occurred_at
    assert ("ce_reason" in attrs) == (record.reason is not None)
    assert len({name for name, _ in headers}) == len(headers)


def test_event_id_is_deterministic_per_aggregate_version() -> None:
    aggregate = uuid4()
    assert event_id(aggregate, 3) == event_id(aggregate, 3)
    assert event_id(aggregate, 3) != event_id(aggregate, 4)
    assert event_id(aggregate, 3) != event_id(uuid4(), 3)
    assert event_id(aggregate, 3).version == 5


def _record(**overrides: Any) -> EventRecord:
    values: dict[str, Any] = {
        "type": "ToolDeleted",
        "aggregate_id": uuid4(),
        "version": 2,
        "position": 10,
        "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        "actor": "alice",
        "correlation_id": "req-1",
        "causation_id": "cmd-1",
        "reason": None,
        "data": {},
    }
    return EventRecord(**{**values, **overrides})


def test_time_is_rfc3339_utc() -> None:
    _, _, headers = to_message(_record())
    assert decode_headers(headers)["ce_time"] == "2026-01-02T03:04:05.123456Z"


def test_nan_is_refused_rather_than_sent_as_non_json() -> None:
    with pytest.raises(ValueError):
        to_message(_record(data={"x": float("nan")}))


def test_foreign_messages_are_refused() -> None:
    key, value, headers = to_message(_record())
    with pytest.raises(ValueError):
        from_message(key, value, [("ce_specversion", b"0.3"), *headers[1:]])
    with pytest.raises(ValueError):
        from_message(str(uuid4()).encode(), value, headers)


def test_dead_letter_carries_coordinates_not_state() -> None:
    aggregate = uuid4()
    key, value, headers = dead_letter_message(aggregate, 4, 99, "domain.tool:Gone", "boom")
    attrs = decode_headers(headers)
    assert key == str(aggregate).encode()
    assert json.loads(value) == {
        "aggregate_id": str(aggregate),
        "version": 4,
        "position": 99,
        "stored_topic": "domain.tool:Gone",
        "error": "boom",
    }
    assert attrs["ce_id"] == str(event_id(aggregate, 4))
    assert attrs["ce_type"] == "io.mcp-ledger.relay.DeadLetter.v1"
    assert UUID(attrs["ce_subject"]) == aggregate
