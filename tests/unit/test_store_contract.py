"""The EventStore and IdempotencyStore ports' contract (commands/ports.py), as the handlers rely
on it.

Run here against the in-memory fakes only. Written against the ports, not the fakes: a real
adapter joins by adding a factory to PORTS (e.g. PostgresEventStore and PostgresIdempotencyStore
over a LedgerApplication on a fresh database, in the integration tier). The tests never assume an
empty store or exclusive use of it: every aggregate id and key is fresh, and positions are only
compared relative to `head()` before the test's own appends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID, uuid4

import pytest

from commands.errors import AppendConflict, IdempotencyRace
from commands.ports import Appended, EventStore, IdempotencyRequest, IdempotencyStore
from domain import tool as tool_domain
from domain.events import DomainEvent, EventMeta, stamp
from domain.slug_index import claim_slug, slug_index_id
from tests.unit.fakes import InMemoryEventStore, InMemoryIdempotencyStore, KeyTable


class StoreUnderTest(EventStore, Protocol):
    def head(self) -> int: ...


@dataclass
class Ports:
    store: StoreUnderTest
    idempotency: IdempotencyStore


def in_memory() -> Ports:
    keys = KeyTable()
    return Ports(InMemoryEventStore(keys), InMemoryIdempotencyStore(keys))


PORTS: list[Callable[[], Ports]] = [in_memory]


@pytest.fixture(params=PORTS, ids=lambda factory: factory.__name__)
def ports(request: pytest.FixtureRequest) -> Ports:
    factory: Callable[[], Ports] = request.param
    return factory()


META = EventMeta("contract", "corr-c", "cmd-c", datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC), "why")


def registered(aggregate_id: UUID, slug: str | None = None) -> DomainEvent:
    body = {
        "slug": slug or f"c-{aggregate_id.hex[:12]}",
        "name": "Contract",
        "description": "A tool of the contract tests",
        "category": "test",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "version": "1.0.0",
        "author": "tests",
        "tags": ["b", "a"],
        "examples": [{"q": "x", "n": [1, 2.5, None, True]}],
        "config": {"nested": {"list": [1, {"k": "v"}]}, "unicode": "çé✓"},
    }
    return tool_domain.register_tool(aggregate_id, body, META)


def updated(aggregate_id: UUID, version: int) -> DomainEvent:
    return tool_domain.ToolUpdated(
        **stamp(META, aggregate_id, version), changes={"description": f"v{version}"}
    )


def history(aggregate_id: UUID, length: int) -> list[DomainEvent]:
    return [registered(aggregate_id)] + [updated(aggregate_id, v) for v in range(2, length + 1)]


def key() -> str:
    return f"contract-{uuid4()}"


# --- appending and reading --------------------------------------------------------------------


def test_appended_events_load_back_equal_and_in_version_order(ports: Ports) -> None:
    a = uuid4()
    events = history(a, 3)
    ports.store.append(events[:1])
    ports.store.append(events[1:])
    assert ports.store.load(a) == events
    assert ports.store.load(uuid4()) == []


def test_append_reports_each_event_with_an_increasing_global_position(ports: Ports) -> None:
    a, b = uuid4(), uuid4()
    before = ports.store.head()
    first = ports.store.append([registered(a), registered(b)])
    second = ports.store.append([updated(b, 2), updated(a, 2)])
    assert [(r.id, r.version) for r in first + second] == [(a, 1), (b, 1), (b, 2), (a, 2)]
    positions = [r.position for r in first + second]
    assert before < positions[0]
    assert positions == sorted(set(positions))  # increasing; not necessarily contiguous
    assert ports.store.head() >= positions[-1]


def test_loaded_events_are_not_shared_with_the_store(ports: Ports) -> None:
    a = uuid4()
    ports.store.append([registered(a)])
    loaded = ports.store.load(a)[0]
    assert isinstance(loaded, tool_domain.ToolRegistered)
    loaded.config["nested"]["list"].append("changed")
    loaded.tags.append("changed")
    assert ports.store.load(a) == [registered(a)]


def test_load_page_pages_by_version_with_positions(ports: Ports) -> None:
    a = uuid4()
    appended = ports.store.append(history(a, 5))
    position = {r.version: r.position for r in appended}
    page = ports.store.load_page(a, 0, 2)
    assert [(s.event.originator_version, s.position) for s in page] == [
        (1, position[1]),
        (2, position[2]),
    ]
    assert page[0].event == registered(a)
    rest = ports.store.load_page(a, 2, 10)
    assert [s.event.originator_version for s in rest] == [3, 4, 5]
    assert [s.position for s in rest] == [position[v] for v in (3, 4, 5)]
    assert ports.store.load_page(a, 5, 10) == []
    assert ports.store.load_page(uuid4(), 0, 10) == []


def test_position_of_names_the_stored_event(ports: Ports) -> None:
    a = uuid4()
    appended = ports.store.append(history(a, 2))
    for r in appended:
        assert ports.store.position_of(a, r.version) == r.position
    assert ports.store.position_of(a, 3) is None
    assert ports.store.position_of(uuid4(), 1) is None


def test_existing_names_the_aggregates_that_have_a_first_version(ports: Ports) -> None:
    a, b, missing = uuid4(), uuid4(), uuid4()
    ports.store.append([registered(a), claim_slug("tool", f"s-{b.hex}", b, META)])
    claim_id = slug_index_id("tool", f"s-{b.hex}")
    assert ports.store.existing([a, missing, claim_id]) == {a, claim_id}
    assert ports.store.existing([]) == set()


def test_an_empty_append_stores_nothing(ports: Ports) -> None:
    before = ports.store.head()
    assert ports.store.append([]) == []
    assert ports.store.head() == before


# --- conflicts: all or nothing ------------------------------------------------------------------


def test_a_taken_version_conflicts_and_nothing_of_the_append_is_stored(ports: Ports) -> None:
    a, bystander = uuid4(), uuid4()
    ports.store.append(history(a, 2))
    head = ports.store.head()
    with pytest.raises(AppendConflict):
        ports.store.append([registered(bystander), updated(a, 3), updated(a, 2)])
    assert ports.store.load(bystander) == []
    assert ports.store.position_of(bystander, 1) is None
    assert ports.store.load(a) == history(a, 2)
    assert ports.store.head() == head


def test_a_version_twice_in_one_append_conflicts(ports: Ports) -> None:
    a = uuid4()
    with pytest.raises(AppendConflict):
        ports.store.append([registered(a), updated(a, 2), updated(a, 2)])
    assert ports.store.load(a) == []


def test_a_second_claim_of_a_slug_conflicts(ports: Ports) -> None:
    owner, other = uuid4(), uuid4()
    slug = f"s-{owner.hex}"
    ports.store.append([registered(owner, slug), claim_slug("tool", slug, owner, META)])
    with pytest.raises(AppendConflict):
        ports.store.append([registered(other, slug), claim_slug("tool", slug, other, META)])
    claims = ports.store.load(slug_index_id("tool", slug))
    assert [c.owner_id for c in claims] == [owner]  # type: ignore[attr-defined]
    assert ports.store.load(other) == []


def test_positions_keep_increasing_after_a_refused_append(ports: Ports) -> None:
    a = uuid4()
    first = ports.store.append([registered(a)])
    with pytest.raises(AppendConflict):
        ports.store.append([updated(a, 2), registered(a)])
    after = ports.store.append([updated(a, 2)])
    assert after[0].position > first[0].position
    assert ports.store.head() >= after[0].position


# --- idempotency keys ---------------------------------------------------------------------------


def test_a_key_given_with_an_append_is_bound_to_its_results(ports: Ports) -> None:
    a, k = uuid4(), key()
    assert ports.idempotency.lookup(k) is None
    appended = ports.store.append(history(a, 2), IdempotencyRequest(k, "hash-a"))
    assert ports.idempotency.lookup(k) == ("hash-a", appended)


def test_a_key_already_bound_races_and_nothing_is_stored(ports: Ports) -> None:
    a, b, k = uuid4(), uuid4(), key()
    appended = ports.store.append([registered(a)], IdempotencyRequest(k, "hash-a"))
    head = ports.store.head()
    with pytest.raises(IdempotencyRace):
        ports.store.append([registered(b)], IdempotencyRequest(k, "hash-a"))
    assert ports.store.load(b) == []
    assert ports.store.head() == head
    assert ports.idempotency.lookup(k) == ("hash-a", appended)


def test_a_refused_append_binds_no_key(ports: Ports) -> None:
    a, k = uuid4(), key()
    ports.store.append([registered(a)])
    with pytest.raises(AppendConflict):
        ports.store.append([registered(a)], IdempotencyRequest(k, "hash"))
    assert ports.idempotency.lookup(k) is None


def test_remember_binds_a_key_once(ports: Ports) -> None:
    a, k = uuid4(), key()
    ports.store.append([registered(a)])
    unchanged = [Appended(a, 1, ports.store.position_of(a, 1) or 0)]
    ports.idempotency.remember(IdempotencyRequest(k, "hash-1"), unchanged)
    assert ports.idempotency.lookup(k) == ("hash-1", unchanged)
    with pytest.raises(IdempotencyRace):
        ports.idempotency.remember(IdempotencyRequest(k, "hash-2"), [])
    # The key table is one: an append with a remembered key races too, and stores nothing.
    with pytest.raises(IdempotencyRace):
        ports.store.append([updated(a, 2)], IdempotencyRequest(k, "hash-1"))
    assert ports.store.load(a) == [registered(a)]
    assert ports.idempotency.lookup(k) == ("hash-1", unchanged)
