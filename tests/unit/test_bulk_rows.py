"""The JSON that carries a batch of read-model rows to Postgres (projections.bulk_rows)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from projections.bulk_rows import to_json


def test_rows_keep_key_order_times_and_ids() -> None:
    ident = uuid.uuid4()
    at = datetime(2026, 12, 3, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    doc = {"zeta": 1, "alpha": [1.5, "x"], "mid": {"b": None, "a": True}}
    text = to_json([{"id": ident, "at": at, "doc": doc}])
    (row,) = json.loads(text)
    assert row["id"] == str(ident)
    assert datetime.fromisoformat(row["at"]) == at  # the offset and the microseconds survive
    assert list(row["doc"]) == ["zeta", "alpha", "mid"]
    assert list(row["doc"]["mid"]) == ["b", "a"]
    assert row["doc"] == doc


def test_text_that_needs_escaping_round_trips() -> None:
    text = 'quote " backslash \\ tab \t newline \n emoji \U0001f600 accent é'
    assert json.loads(to_json([{"t": text}])) == [{"t": text}]


def test_a_value_json_cannot_carry_is_refused_not_mangled() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        to_json([{"n": Decimal("1.5")}])
    assert json.loads(to_json([{"at": datetime(2026, 1, 1, tzinfo=UTC)}])) == [
        {"at": "2026-01-01T00:00:00+00:00"}
    ]
