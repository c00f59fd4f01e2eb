"""In-memory fakes of the command handlers' ports (commands/ports.py), for the unit tier.

They mirror what the real adapters (infra/postgres/event_store.py, infra/security/secrets.py)
promise, so a handler that works here works against Postgres for the same reasons:

- `append` is atomic for the whole list: a version already taken for an aggregate (or taken
  twice within the list, e.g. a second version 1 of a slug index) raises `AppendConflict`, and an
  Idempotency-Key given with the append that is already bound raises `IdempotencyRace`; either
  way nothing of the append is stored. Version conflicts are checked first, as Postgres inserts
  the events before the key row.
- positions are global and increase; like a Postgres sequence, a failed append uses up the
  positions it would have taken, so there are holes (handlers must never assume contiguity).
- events are stored as JSON (top-level times and ids typed, as LedgerTranscoder does) and
  decoded on every read, so a caller never shares mutable state with the store, and a value the
  real store could not hold as JSON fails here too. This is a little stricter than orjson: NaN
  and nested datetimes/UUIDs are refused instead of stored as null or strings.
- the idempotency store shares its key table with the event store, like the real recorder, which
  writes the key row in the events' transaction.

Pure Python: no I/O, no threads, no services.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from commands.errors import AppendConflict, IdempotencyRace
from commands.ports import Appended, CommandDeps, IdempotencyRequest, StoredEvent
from domain.events import DomainEvent
from domain.secrets import SEALED, is_sealed

# --- the stored form of an event ----------------------------------------------------------------

_EVENT_CLASSES: dict[str, type[DomainEvent]] = {}


def _topic(cls: type[DomainEvent]) -> str:
    topic = f"{cls.__module__}:{cls.__qualname__}"
    _EVENT_CLASSES.setdefault(topic, cls)
    return topic


def encode_event(event: DomainEvent) -> tuple[str, str]:
    """(topic, JSON state) as the real store would write them; raises TypeError/ValueError for
    a value that is not JSON."""
    state: dict[str, Any] = {}
    types: dict[str, str] = {}
    for f in fields(event):
        if f.name in ("originator_id", "originator_version"):
            continue  # columns of their own in the real table
        value = getattr(event, f.name)
        if isinstance(value, datetime):
            state[f.name], types[f.name] = value.isoformat(), "datetime"
        elif isinstance(value, UUID):
            state[f.name], types[f.name] = str(value), "uuid"
        else:
            state[f.name] = value
    if types:
        state["__types__"] = types
    return _topic(type(event)), json.dumps(state, allow_nan=False, ensure_ascii=False)


def decode_event(aggregate_id: UUID, version: int, topic: str, data: str) -> DomainEvent:
    state = json.loads(data)
    for key, kind in state.pop("__types__", {}).items():
        state[key] = datetime.fromisoformat(state[key]) if kind == "datetime" else UUID(state[key])
    return _EVENT_CLASSES[topic](originator_id=aggregate_id, originator_version=version, **state)


@dataclass(frozen=True)
class Row:
    """One row of the fake events table."""

    aggregate_id: UUID
    version: int
    position: int
    topic: str
    state: str

    def event(self) -> DomainEvent:
        return decode_event(self.aggregate_id, self.version, self.topic, self.state)


@dataclass(frozen=True)
class KeyRecord:
    request_hash: str
    results: tuple[Appended, ...]


class KeyTable:
    """The Idempotency-Key table both fake stores write (one table, as in Postgres)."""

    def __init__(self) -> None:
        self.rows: dict[str, KeyRecord] = {}

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)


# --- the ports ------------------------------------------------------------------------------------


class InMemoryEventStore:
    """`commands.ports.EventStore` in memory (see the module docstring for what it mirrors)."""

    def __init__(self, keys: KeyTable | None = None) -> None:
        self.keys = keys if keys is not None else KeyTable()
        self._rows: list[Row] = []  # in position order
        self._by_aggregate: dict[UUID, dict[int, Row]] = {}
        self._sequence = 0  # last position handed out, like a Postgres sequence
        self._before_append: list[Callable[[], object]] = []
        self.append_calls = 0

    # -- test helpers

    def before_next_append(self, action: Callable[[], object]) -> None:
        """Runs `action` once, at the start of the next append, as if another process had
        committed it in between the handler's reads and its write."""
        self._before_append.append(action)

    def rows(self) -> list[Row]:
        return list(self._rows)

    def all_events(self) -> list[StoredEvent]:
        return [StoredEvent(r.event(), r.position) for r in self._rows]

    def event_count(self) -> int:
        return len(self._rows)

    def stored_text(self) -> str:
        """Everything stored, as the JSON text the real table would hold."""
        return "\n".join(r.state for r in self._rows)

    # -- the port

    def load(self, aggregate_id: UUID) -> list[DomainEvent]:
        versions = self._by_aggregate.get(aggregate_id, {})
        return [versions[v].event() for v in sorted(versions)]

    def load_page(self, aggregate_id: UUID, after_version: int, limit: int) -> list[StoredEvent]:
        versions = self._by_aggregate.get(aggregate_id, {})
        page = sorted(v for v in versions if v > after_version)[: max(limit, 0)]
        return [StoredEvent(versions[v].event(), versions[v].position) for v in page]

    def append(
        self, events: Sequence[DomainEvent], idempotency: IdempotencyRequest | None = None
    ) -> list[Appended]:
        self.append_calls += 1
        while self._before_append:
            self._before_append.pop(0)()
        if not events:
            return []  # the real recorder returns before its transaction (and key row) begins
        encoded = [encode_event(e) for e in events]  # not JSON: fails before anything is stored
        first = self._sequence + 1
        self._sequence += len(events)  # used up whether or not the append commits
        claimed: set[tuple[UUID, int]] = set()
        for event in events:
            slot = (event.originator_id, event.originator_version)
            taken = event.originator_version in self._by_aggregate.get(event.originator_id, {})
            if taken or slot in claimed:
                raise AppendConflict(
                    f"version {event.originator_version} of {event.originator_id} is taken"
                )
            claimed.add(slot)
        if idempotency is not None and idempotency.key in self.keys:
            raise IdempotencyRace(idempotency.key)
        rows = [
            Row(e.originator_id, e.originator_version, first + i, topic, state)
            for i, (e, (topic, state)) in enumerate(zip(events, encoded, strict=True))
        ]
        for row in rows:
            self._rows.append(row)
            self._by_aggregate.setdefault(row.aggregate_id, {})[row.version] = row
        appended = [Appended(r.aggregate_id, r.version, r.position) for r in rows]
        if idempotency is not None:
            self.keys.rows[idempotency.key] = KeyRecord(idempotency.request_hash, tuple(appended))
        return appended

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        row = self._by_aggregate.get(aggregate_id, {}).get(version)
        return row.position if row else None

    def existing(self, aggregate_ids: Sequence[UUID]) -> set[UUID]:
        return {i for i in aggregate_ids if 1 in self._by_aggregate.get(i, {})}

    def head(self) -> int:
        return self._rows[-1].position if self._rows else 0


class InMemoryIdempotencyStore:
    """`commands.ports.IdempotencyStore` over the key table shared with the event store."""

    def __init__(self, keys: KeyTable) -> None:
        self.keys = keys
        self._before_remember: list[Callable[[], object]] = []

    def before_next_remember(self, action: Callable[[], object]) -> None:
        """Runs `action` once, at the start of the next `remember` (a concurrent request)."""
        self._before_remember.append(action)

    def lookup(self, key: str) -> tuple[str, list[Appended]] | None:
        record = self.keys.rows.get(key)
        if record is None:
            return None
        return record.request_hash, list(record.results)

    def remember(self, request: IdempotencyRequest, results: Sequence[Appended]) -> None:
        while self._before_remember:
            self._before_remember.pop(0)()
        if request.key in self.keys:
            raise IdempotencyRace(request.key)
        self.keys.rows[request.key] = KeyRecord(request.request_hash, tuple(results))


class FakeSealer:
    """`commands.ports.Sealer`: seals to `{"$sealed": "v1:fake-<n>"}`, the real sealed value's
    shape (domain.secrets.is_sealed), with a fresh opaque token per call (as Fernet's random IV
    gives), so a value sealed a second time is visibly different. Keeps what it sealed, per
    aggregate, so tests can unseal."""

    PREFIX = "v1:"  # as infra.security.secrets.PREFIX

    def __init__(self) -> None:
        self._clear: dict[str, tuple[UUID, str]] = {}
        self._counter = itertools.count(1)
        self.calls: list[tuple[UUID, Any]] = []

    def seal(self, aggregate_id: UUID, value: Any) -> dict[str, str]:
        clear = json.dumps(value)  # the real sealer encrypts json.dumps(value)
        token = f"{self.PREFIX}fake-{next(self._counter)}"
        self._clear[token] = (aggregate_id, clear)
        self.calls.append((aggregate_id, value))
        return {SEALED: token}

    def unseal(self, aggregate_id: UUID, sealed: Any) -> Any:
        if not is_sealed(sealed):
            raise ValueError("not a sealed value")
        owner, clear = self._clear[sealed[SEALED]]
        if owner != aggregate_id:
            raise ValueError(f"sealed for {owner}, not {aggregate_id}")
        return json.loads(clear)


class FakeClock:
    """Deterministic, strictly increasing UTC times: `start`, then `step` later at each call."""

    def __init__(
        self,
        start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
        step: timedelta = timedelta(seconds=1),
    ) -> None:
        self.now = start
        self.step = step
        self._first = True

    def __call__(self) -> datetime:
        if self._first:
            self._first = False
        else:
            self.now += self.step
        return self.now


def fake_deps(clock: Callable[[], datetime] | None = None) -> CommandDeps:
    """`CommandDeps` over fresh fakes; the event and idempotency stores share one key table."""
    keys = KeyTable()
    return CommandDeps(
        store=InMemoryEventStore(keys),
        idempotency=InMemoryIdempotencyStore(keys),
        sealer=FakeSealer(),
        clock=clock or FakeClock(),
    )


def store_of(deps: CommandDeps) -> InMemoryEventStore:
    assert isinstance(deps.store, InMemoryEventStore)
    return deps.store


def idempotency_of(deps: CommandDeps) -> InMemoryIdempotencyStore:
    assert isinstance(deps.idempotency, InMemoryIdempotencyStore)
    return deps.idempotency


def sealer_of(deps: CommandDeps) -> FakeSealer:
    assert isinstance(deps.sealer, FakeSealer)
    return deps.sealer


if TYPE_CHECKING:  # the fakes satisfy the ports (checked by mypy, free at run time)
    from commands.ports import EventStore, IdempotencyStore, Sealer

    _store: EventStore = InMemoryEventStore()
    _keys: IdempotencyStore = InMemoryIdempotencyStore(KeyTable())
    _sealer: Sealer = FakeSealer()
