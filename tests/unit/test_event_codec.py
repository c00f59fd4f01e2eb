"""The stored form of events: user JSON is kept exactly, and old event shapes are upcast."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import uuid4

from eventsourcing.persistence import Mapper
from hypothesis import given
from hypothesis import strategies as st

from domain.events import DomainEvent, EventMeta, stamp
from domain.slug_index import claim_slug
from infra.postgres.event_store import LedgerTranscoder

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

META = EventMeta("alice", "req-1", "cmd-1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "why")


@dataclass(frozen=True, kw_only=True)
class Noted(DomainEvent):
    note: Any


def _mapper() -> Mapper[Any]:
    return Mapper(transcoder=LedgerTranscoder())


@given(json_values)
def test_user_json_round_trips_exactly(value: Any) -> None:
    # Objects shaped like a type marker must come back unchanged, not be decoded as types.
    event = Noted(**stamp(META, uuid4(), 1), note={"_type_": "uuid_hex", "_data_": value})
    mapper = _mapper()
    assert mapper.to_domain_event(mapper.to_stored_event(event)) == event


def test_ids_and_times_keep_their_types() -> None:
    owner = uuid4()
    event = claim_slug("tool", "weather", owner, META)
    back = _mapper().to_domain_event(_mapper().to_stored_event(event))
    assert back == event
    assert back.owner_id == owner  # type: ignore[attr-defined]
    assert back.occurred_at.tzinfo is not None


@dataclass(frozen=True, kw_only=True)
class NotedV2(DomainEvent):
    note: Any
    language: str

    class_version: ClassVar[int] = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["language"] = "en"


def test_old_event_shape_is_upcast_on_read() -> None:
    mapper = _mapper()
    old = mapper.to_stored_event(Noted(**stamp(META, uuid4(), 1), note="hello"))
    # The same stored bytes read by the newer class (as after a code upgrade).
    upgraded = type(old)(
        originator_id=old.originator_id,
        originator_version=old.originator_version,
        topic=f"{__name__}:NotedV2",
        state=old.state,
    )
    event = mapper.to_domain_event(upgraded)
    assert isinstance(event, NotedV2)
    assert event.language == "en"
    assert event.note == "hello"
