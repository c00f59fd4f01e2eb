"""The Dataset aggregate's decisions and fold, without I/O."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import Mapper
from hypothesis import given
from hypothesis import strategies as st

from domain import dataset as d
from domain.errors import IllegalTransition, InvalidInput
from domain.events import DomainEvent, EventMeta
from domain.validation import SLUG_RE, TAG_RE
from infra.postgres.event_store import LedgerTranscoder

META = EventMeta("alice", "req-1", "cmd-1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "why")

texts = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")
columns_st = st.lists(
    st.fixed_dictionaries(
        {
            "name": texts,
            "type": texts,
            "nullable": st.booleans(),
            "description": st.none() | st.text(max_size=40),
        }
    ),
    max_size=6,
    unique_by=lambda c: c["name"],
)
valid_datasets = st.fixed_dictionaries(
    {
        "slug": st.from_regex(SLUG_RE, fullmatch=True),
        "name": texts,
        "description": texts,
        "owner": texts,
        "source": st.fixed_dictionaries(
            {
                "kind": st.sampled_from(d.SOURCE_KINDS),
                # No '@': a URI with user:password@ is refused on purpose.
                "uri": texts.filter(lambda s: "@" not in s),
            }
        ),
        "columns": columns_st,
        "tags": st.lists(st.from_regex(TAG_RE, fullmatch=True), unique=True, max_size=5).map(
            sorted
        ),
    }
)


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "slug": "sales-orders",
        "name": "Sales orders",
        "description": "One row per order",
        "owner": "data-platform",
        "source": {"kind": "postgres_table", "uri": "postgresql://wh/sales?table=orders"},
        "columns": [
            {"name": "order_id", "type": "bigint", "nullable": False, "description": None},
            {"name": "amount", "type": "numeric", "nullable": True, "description": "EUR"},
        ],
        "tags": ["sales"],
    }
    data.update(overrides)
    return data


def registered(**overrides: Any) -> d.Dataset:
    state = d.replay([d.register_dataset(uuid4(), body(**overrides), META)])
    assert state is not None
    return state


def fold(state: d.Dataset, event: DomainEvent | None) -> d.Dataset:
    assert event is not None
    return d.evolve(state, event)


def fields_of(exc: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [e.field for e in exc.value.errors]


def _stored_and_back(event: DomainEvent) -> DomainEvent:
    mapper: Mapper[Any] = Mapper(transcoder=LedgerTranscoder())
    return mapper.to_domain_event(mapper.to_stored_event(event))  # type: ignore[return-value]


@given(valid_datasets)
def test_any_valid_dataset_registers_and_replays_to_its_input(data: dict[str, Any]) -> None:
    dataset_id = uuid4()
    event = d.register_dataset(dataset_id, data, META)
    state = d.replay([_stored_and_back(event)])
    assert state is not None
    assert state.id == dataset_id
    assert state.aggregate_version == 1
    expected = {**data, "profile": None, "status": "active", "deleted": False}
    assert state.fields() == expected


BREAKERS: list[tuple[str, dict[str, Any]]] = [
    ("slug", {"slug": "Not A Slug"}),
    ("slug", {"slug": "-leading-dash"}),
    ("name", {"name": "   "}),
    ("description", {"description": "x" * 2001}),
    ("owner", {"owner": ""}),
    ("source.kind", {"source": {"kind": "ftp", "uri": "ftp://x"}}),
    ("source.uri", {"source": {"kind": "csv", "uri": ""}}),
    ("source.uri", {"source": {"kind": "url", "uri": "https://bob:hunter2@example.com/x.csv"}}),
    ("source.extra", {"source": {"kind": "csv", "uri": "s3://b/x.csv", "extra": 1}}),
    ("tags[0]", {"tags": ["Not A Tag"]}),
    ("tags", {"tags": ["a", "a"]}),
    ("columns[1].name", {"columns": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]}),
    ("columns[0].name", {"columns": [{"name": " ", "type": "int"}]}),
    ("columns[0].type", {"columns": [{"name": "a", "type": ""}]}),
    ("columns[0].nullable", {"columns": [{"name": "a", "type": "int", "nullable": "yes"}]}),
    ("columns[0].width", {"columns": [{"name": "a", "type": "int", "width": 3}]}),
    ("status", {"status": "archived"}),
]


@given(valid_datasets, st.sampled_from(BREAKERS))
def test_invalid_input_is_rejected_naming_the_field(
    data: dict[str, Any], breaker: tuple[str, dict[str, Any]]
) -> None:
    field, override = breaker
    with pytest.raises(InvalidInput) as exc:
        d.register_dataset(uuid4(), {**data, **override}, META)
    assert field in fields_of(exc)


@pytest.mark.parametrize("missing", ["slug", "name", "description", "owner", "source"])
def test_required_fields_are_named_when_missing(missing: str) -> None:
    data = body()
    del data[missing]
    with pytest.raises(InvalidInput) as exc:
        d.register_dataset(uuid4(), data, META)
    assert missing in fields_of(exc)


def test_columns_default_to_nullable_without_description() -> None:
    state = registered(columns=[{"name": "id", "type": "uuid"}])
    assert state.columns == [{"name": "id", "type": "uuid", "nullable": True, "description": None}]


def test_describe_changes_only_what_differs_and_normalises_tags() -> None:
    state = registered()
    event = d.describe_dataset(state, {"name": "Sales orders", "tags": ["b", "a"]}, META)
    assert isinstance(event, d.DatasetDescribed)
    assert event.changes == {"tags": ["a", "b"]}
    assert event.originator_version == 2
    assert fold(state, event).tags == ["a", "b"]


def test_describe_with_nothing_new_is_a_no_op() -> None:
    state = registered()
    unchanged = {"name": state.name, "source": dict(state.source), "tags": ["sales"]}
    assert d.describe_dataset(state, unchanged, META) is None


def test_describe_refuses_slug_changes_and_unknown_fields() -> None:
    state = registered()
    with pytest.raises(InvalidInput) as exc:
        d.describe_dataset(state, {"slug": "other"}, META)
    assert fields_of(exc) == ["slug"]
    assert d.describe_dataset(state, {"slug": state.slug}, META) is None
    with pytest.raises(InvalidInput) as exc:
        d.describe_dataset(state, {"columns": []}, META)
    assert fields_of(exc) == ["columns"]


def test_describe_validates_even_unchanged_looking_input() -> None:
    with pytest.raises(InvalidInput) as exc:
        d.describe_dataset(registered(), {"tags": ["sales", "sales"]}, META)
    assert fields_of(exc) == ["tags"]


def test_describe_replaces_the_source() -> None:
    state = registered()
    source = {"kind": "parquet", "uri": "s3://lake/orders/"}
    assert fold(state, d.describe_dataset(state, {"source": source}, META)).source == source


def test_columns_change_replaces_the_list_and_same_list_is_a_no_op() -> None:
    state = registered()
    new = [{"name": "id", "type": "uuid", "nullable": False, "description": "key"}]
    after = fold(state, d.change_dataset_columns(state, new, META))
    assert after.columns == new
    assert after.aggregate_version == 2
    assert d.change_dataset_columns(after, new, META) is None


def test_columns_change_rejects_repeated_names() -> None:
    cols = [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}, {"name": "x", "type": "t"}]
    with pytest.raises(InvalidInput) as exc:
        d.change_dataset_columns(registered(), cols, META)
    assert fields_of(exc) == ["columns[2].name"]


def test_profile_is_recorded_with_every_stat_key() -> None:
    state = registered()
    profile = {"row_count": 10, "columns": {"amount": {"null_count": 2, "min": 0.5, "max": 99}}}
    after = fold(state, d.record_dataset_profile(state, profile, META))
    assert after.profile == {
        "row_count": 10,
        "columns": {"amount": {"null_count": 2, "distinct_count": None, "min": 0.5, "max": 99}},
    }


def test_profile_without_column_stats_keeps_only_the_row_count() -> None:
    state = registered()
    after = fold(state, d.record_dataset_profile(state, {"row_count": 0}, META))
    assert after.profile == {"row_count": 0, "columns": {}}


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        ({"row_count": -1}, "row_count"),
        ({"row_count": True}, "row_count"),
        ({"row_count": 5, "columns": {"ghost": {}}}, "columns.ghost"),
        ({"row_count": 5, "columns": {"amount": {"null_count": 6}}}, "columns.amount.null_count"),
        (
            {"row_count": 5, "columns": {"amount": {"distinct_count": -1}}},
            "columns.amount.distinct_count",
        ),
        ({"row_count": 5, "columns": {"amount": {"min": math.nan}}}, "columns.amount.min"),
        ({"row_count": 5, "columns": {"amount": {"max": [1]}}}, "columns.amount.max"),
        ({"row_count": 5, "columns": {"amount": {"mean": 1}}}, "columns.amount.mean"),
        ({"row_count": 5, "sampled": True}, "sampled"),
    ],
)
def test_invalid_profiles_name_the_field(profile: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        d.record_dataset_profile(registered(), profile, META)
    assert field in fields_of(exc)


def test_dropping_a_column_drops_its_statistics() -> None:
    state = registered()
    stats = {"order_id": {"null_count": 0}, "amount": {"null_count": 1}}
    state = fold(state, d.record_dataset_profile(state, {"row_count": 3, "columns": stats}, META))
    kept = [c for c in state.columns if c["name"] == "order_id"]
    state = fold(state, d.change_dataset_columns(state, kept, META))
    assert state.profile is not None
    assert set(state.profile["columns"]) == {"order_id"}
    assert state.profile["row_count"] == 3


def test_archive_and_unarchive_round_trip() -> None:
    state = registered()
    archived = fold(state, d.archive_dataset(state, META))
    assert archived.status == "archived"
    with pytest.raises(IllegalTransition):
        d.archive_dataset(archived, META)
    active = fold(archived, d.unarchive_dataset(archived, META))
    assert active.status == "active"
    with pytest.raises(IllegalTransition):
        d.unarchive_dataset(active, META)


def test_restore_keeps_the_status_it_had() -> None:
    state = registered()
    state = fold(state, d.archive_dataset(state, META))
    state = fold(state, d.delete_dataset(state, META))
    state = fold(state, d.restore_dataset(state, META))
    assert (state.deleted, state.status, state.aggregate_version) == (False, "archived", 4)


COMMANDS: dict[str, Callable[[d.Dataset], Any]] = {
    "describe": lambda s: d.describe_dataset(s, {"name": "New"}, META),
    "columns": lambda s: d.change_dataset_columns(s, [], META),
    "profile": lambda s: d.record_dataset_profile(s, {"row_count": 1}, META),
    "archive": lambda s: d.archive_dataset(s, META),
    "unarchive": lambda s: d.unarchive_dataset(s, META),
    "delete": lambda s: d.delete_dataset(s, META),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_deleted_dataset_refuses_everything_but_restore(command: str) -> None:
    state = registered()
    deleted = fold(state, d.delete_dataset(state, META))
    with pytest.raises(IllegalTransition, match="deleted"):
        COMMANDS[command](deleted)


def test_restore_needs_a_deleted_dataset() -> None:
    with pytest.raises(IllegalTransition, match="not deleted"):
        d.restore_dataset(registered(), META)


@given(st.lists(st.sampled_from([*sorted(COMMANDS), "restore"]), max_size=12))
def test_any_command_sequence_replays_to_the_folded_state(commands: list[str]) -> None:
    first = d.register_dataset(uuid4(), body(), META)
    events: list[DomainEvent] = [first]
    state = d.evolve(None, first)
    run = {**COMMANDS, "restore": lambda s: d.restore_dataset(s, META)}
    for name in commands:
        try:
            event = run[name](state)
        except IllegalTransition:
            continue
        if event is not None:
            events.append(event)
            state = d.evolve(state, event)
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
    assert d.replay(_stored_and_back(e) for e in events) == state


def test_events_before_registration_are_refused() -> None:
    state = registered()
    with pytest.raises(ValueError, match="before DatasetRegistered"):
        d.evolve(None, d.delete_dataset(state, META))
