"""Usage events: the emitter never blocks a call and counts what it drops, argument digests hold
no secrets, and the Kafka wire form round-trips and matches the published schemas."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.usage.emitter import (
    UsageDropped,
    UsageEmitter,
    UsageEvent,
    digest_arguments,
    wait_stored,
)
from infra.usage.sinks import USAGE_TYPE, usage_from_message, usage_to_message

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def event(**overrides: object) -> UsageEvent:
    fields: dict[str, object] = {
        "tool": "get_tool",
        "surface": "mcp",
        "arguments_digest": digest_arguments({"slug": "weather"}),
        "result_ids": [{"kind": "tool", "id": "5b0c", "version": 3}],
        "latency_ms": 12.5,
        "status": "ok",
        "client_id": "c-1",
        "client_name": "claude",
        "request_id": "req-1",
    }
    fields.update(overrides)
    return UsageEvent(**fields)  # type: ignore[arg-type]


class BlockingSink:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.received: list[UsageEvent] = []

    def __call__(self, events: Sequence[UsageEvent]) -> None:
        self.entered.set()
        assert self.release.wait(10)
        self.received.extend(events)


def test_a_full_buffer_drops_and_counts_without_blocking() -> None:
    sink = BlockingSink()
    emitter = UsageEmitter(sink, capacity=10, batch=1)
    emitter.emit(event())
    assert sink.entered.wait(5)  # the drain thread holds one event, stuck in the sink
    started = time.perf_counter()
    for _ in range(1000):
        emitter.emit(event())
    elapsed = time.perf_counter() - started
    assert emitter.dropped == 990  # 10 fit in the buffer
    assert elapsed < 1.0, f"emit blocked: {elapsed:.3f}s for 1000 calls"
    sink.release.set()
    assert emitter.flush(10)
    assert emitter.emitted == 11
    assert len(sink.received) == 11
    assert emitter.stats() == {"emitted": 11, "dropped": 990, "queued": 0, "capacity": 10}
    emitter.close()


def test_a_failing_sink_is_retried_and_loses_nothing() -> None:
    calls = []

    def flaky(events: Sequence[UsageEvent]) -> None:
        calls.append(len(events))
        if len(calls) <= 2:
            raise ConnectionError("broker down")

    emitter = UsageEmitter(flaky, batch=1)
    first = emitter.emit(event())
    assert emitter.flush(5)
    second = emitter.emit(event())
    assert emitter.flush(5)
    assert (emitter.dropped, emitter.emitted, emitter.retries) == (0, 2, 2)
    assert first is not None
    assert second is not None
    assert first.result(0) is None
    assert second.result(0) is None
    emitter.close()


def test_the_future_completes_when_the_event_is_stored() -> None:
    sink = BlockingSink()
    emitter = UsageEmitter(sink, capacity=1, batch=1, linger=0)
    held = emitter.emit(event())
    assert sink.entered.wait(5)
    assert held is not None
    assert not held.done()  # handed to the sink, not yet stored
    queued = emitter.emit(event())
    full = emitter.emit(event())  # the buffer (capacity 1) holds `queued`
    assert full is not None
    with pytest.raises(UsageDropped):
        full.result(0)
    assert not wait_stored(full, 0.1)
    sink.release.set()
    assert wait_stored(held, 5)
    assert wait_stored(queued, 5)
    assert len(sink.received) == 2
    emitter.close()


def test_a_sink_still_failing_at_close_drops_and_says_so() -> None:
    def down(events: Sequence[UsageEvent]) -> None:
        raise ConnectionError("broker down")

    emitter = UsageEmitter(down, batch=1)
    pending = emitter.emit(event())
    time.sleep(0.3)
    emitter.close(timeout=5)
    assert pending is not None
    with pytest.raises(UsageDropped):
        pending.result(1)
    assert emitter.dropped == 1


def test_without_a_sink_emit_is_a_no_op() -> None:
    emitter = UsageEmitter(None)
    emitter.emit(event())
    assert emitter.stats()["queued"] == 0
    assert emitter.flush(0.1)
    emitter.close()


def test_emitting_from_many_threads_loses_nothing_that_fit() -> None:
    received: list[UsageEvent] = []
    emitter = UsageEmitter(received.extend, capacity=100_000)

    def burst() -> None:
        for _ in range(500):
            emitter.emit(event())

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert emitter.flush(10)
    assert len(received) == emitter.emitted == 4000
    assert emitter.dropped == 0
    emitter.close()


def test_the_digest_hides_secrets_but_tells_arguments_apart() -> None:
    a = digest_arguments({"slug": "x", "config": {"api_token": "s3cr3t", "region": "eu"}})
    b = digest_arguments({"config": {"region": "eu", "api_token": "other"}, "slug": "x"})
    c = digest_arguments({"slug": "y", "config": {"api_token": "s3cr3t", "region": "eu"}})
    assert a == b  # secrets masked, key order irrelevant
    assert a != c
    assert a.startswith("sha256:")
    assert "s3cr3t" not in a
    nested = digest_arguments({"items": [{"password": "hunter2"}]})
    assert nested == digest_arguments({"items": [{"password": "***"}]})


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5))
def test_secret_values_never_change_the_digest(extra: dict[str, str]) -> None:
    assert digest_arguments({**extra, "api_key": "one"}) == digest_arguments(
        {**extra, "api_key": "two"}
    )


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_the_wire_form_round_trips_and_matches_the_schemas() -> None:
    original = event()
    key, value, headers = usage_to_message(original)
    attrs = {name: raw.decode() for name, raw in headers}
    assert key == b"get_tool"
    assert attrs["ce_id"] == original.id
    assert attrs["ce_type"] == USAGE_TYPE
    assert attrs["ce_subject"] == "get_tool"
    assert attrs["ce_correlationid"] == "req-1"
    assert attrs["ce_time"].endswith("Z")
    _validator(f"{USAGE_TYPE}.json").validate(json.loads(value))
    _validator("usage-envelope.json").validate(attrs)
    assert usage_from_message(key, value, headers) == original


@pytest.mark.parametrize(
    ("headers", "value"),
    [
        ([("ce_specversion", b"0.3")], b"{}"),
        ([("ce_specversion", b"1.0"), ("ce_type", b"io.mcp-ledger.tool.ToolRegistered.v1")], b"{}"),
        ([("ce_specversion", b"1.0"), ("ce_type", USAGE_TYPE.encode())], b"not json"),
        ([("ce_specversion", b"1.0"), ("ce_type", USAGE_TYPE.encode())], b'{"tool": 1}'),
        ([("ce_specversion", b"1.0"), ("ce_type", USAGE_TYPE.encode())], b"[]"),
    ],
)
def test_foreign_messages_are_refused(headers: list[tuple[str, bytes]], value: bytes) -> None:
    with pytest.raises(ValueError):
        usage_from_message(b"k", value, headers)


def test_from_json_refuses_bad_latencies_and_times() -> None:
    good = event().to_json()
    for bad in ({"latency_ms": -1}, {"latency_ms": "3"}, {"latency_ms": True},
                {"occurred_at": "yesterday"}, {"client_id": 5}):  # fmt: skip
        with pytest.raises(ValueError):
            UsageEvent.from_json({**good, **bad})
    assert UsageEvent.from_json({**good, "future_field": 1}) == event(
        id=good["id"], occurred_at=good["occurred_at"]
    )
