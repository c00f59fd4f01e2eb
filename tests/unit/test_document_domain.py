"""The Document aggregate's decisions and fold, without I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import Mapper
from hypothesis import given
from hypothesis import strategies as st

from domain import document as doc
from domain.errors import IllegalTransition, InvalidInput
from domain.events import DomainEvent, EventMeta
from domain.validation import TAG_RE
from infra.postgres.event_store import LedgerTranscoder

META = EventMeta("alice", "req-1", "cmd-1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), None)

texts = st.text(min_size=1, max_size=60).filter(lambda s: s.strip() != "")
links = st.none() | st.fixed_dictionaries(
    {"kind": st.sampled_from(doc.LINK_KINDS), "id": st.uuids().map(str)}
)
valid_documents = st.fixed_dictionaries(
    {
        "title": texts,
        "content": texts,
        "content_type": st.sampled_from(doc.CONTENT_TYPES),
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "source": texts,
                "author": texts,
                "language": st.from_regex(doc.LANGUAGE_RE, fullmatch=True).filter(
                    lambda s: len(s) <= 35
                ),
            },
        ),
        "tags": st.lists(st.from_regex(TAG_RE, fullmatch=True), unique=True, max_size=5).map(
            sorted
        ),
        "link": links,
    }
)


def added(**overrides: Any) -> doc.Document:
    data: dict[str, Any] = {"title": "How orders are counted", "content": "# Orders\n", **overrides}
    state = doc.replay([doc.add_document(uuid4(), data, META)])
    assert state is not None
    return state


def fold(state: doc.Document, event: DomainEvent | None) -> doc.Document:
    assert event is not None
    return doc.evolve(state, event)


def fields_of(exc: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [e.field for e in exc.value.errors]


def _stored_and_back(event: DomainEvent) -> DomainEvent:
    mapper: Mapper[Any] = Mapper(transcoder=LedgerTranscoder())
    return mapper.to_domain_event(mapper.to_stored_event(event))  # type: ignore[return-value]


@given(valid_documents)
def test_any_valid_document_is_added_and_replays_to_its_input(data: dict[str, Any]) -> None:
    document_id = uuid4()
    state = doc.replay([_stored_and_back(doc.add_document(document_id, data, META))])
    assert state is not None
    assert (state.id, state.aggregate_version) == (document_id, 1)
    assert state.fields() == {**data, "deleted": False}


BREAKERS: list[tuple[str, dict[str, Any]]] = [
    ("title", {"title": "  "}),
    ("title", {"title": "t" * 501}),
    ("content", {"content": ""}),
    ("content", {"content": "x" * 1_000_001}),
    ("content_type", {"content_type": "text/html"}),
    ("metadata.author", {"metadata": {"author": 42}}),
    ("metadata.language", {"metadata": {"language": "english please"}}),
    ("metadata.licence", {"metadata": {"licence": "MIT"}}),
    ("link.kind", {"link": {"kind": "document", "id": str(uuid4())}}),
    ("link.id", {"link": {"kind": "tool", "id": "weather-lookup"}}),
    ("link.extra", {"link": {"kind": "tool", "id": str(uuid4()), "extra": 1}}),
    ("link", {"link": "tool"}),
    ("tags[0]", {"tags": ["Not A Tag"]}),
    ("slug", {"slug": "documents-have-no-slug"}),
]


@given(valid_documents, st.sampled_from(BREAKERS))
def test_invalid_input_is_rejected_naming_the_field(
    data: dict[str, Any], breaker: tuple[str, dict[str, Any]]
) -> None:
    field, override = breaker
    with pytest.raises(InvalidInput) as exc:
        doc.add_document(uuid4(), {**data, **override}, META)
    assert field in fields_of(exc)


def test_content_of_exactly_the_limit_is_accepted() -> None:
    assert len(added(content="x" * doc.MAX_CONTENT).content) == doc.MAX_CONTENT


def test_defaults_are_plain_text_without_metadata_tags_or_link() -> None:
    state = added()
    assert (state.content_type, state.metadata, state.tags, state.link) == (
        "text/plain",
        {},
        [],
        None,
    )


def test_link_ids_are_stored_canonically_and_absent_metadata_dropped() -> None:
    target = uuid4()
    state = added(
        link={"kind": "dataset", "id": str(target).upper()},
        metadata={"author": "jane", "source": None},
    )
    assert state.link == {"kind": "dataset", "id": str(target)}
    assert state.metadata == {"author": "jane"}


def test_revise_changes_only_what_differs() -> None:
    state = added()
    event = doc.revise_document(
        state, {"title": state.title, "content": "new", "content_type": "text/markdown"}, META
    )
    assert isinstance(event, doc.DocumentRevised)
    assert event.changes == {"content": "new", "content_type": "text/markdown"}
    after = fold(state, event)
    assert (after.content, after.content_type, after.aggregate_version) == (
        "new",
        "text/markdown",
        2,
    )


def test_revise_with_nothing_new_is_a_no_op() -> None:
    state = added(metadata={"author": "jane"})
    assert doc.revise_document(state, {"title": state.title, "link": None}, META) is None
    assert doc.revise_document(state, {"metadata": {"author": "jane"}}, META) is None


def test_revise_replaces_metadata_whole_and_a_null_link_unlinks() -> None:
    state = added(metadata={"author": "jane"}, link={"kind": "tool", "id": str(uuid4())})
    event = doc.revise_document(state, {"metadata": {"language": "en"}, "link": None}, META)
    after = fold(state, event)
    assert (after.metadata, after.link) == ({"language": "en"}, None)


@pytest.mark.parametrize(
    ("data", "field"),
    [({"tags": ["a"]}, "tags"), ({"deleted": True}, "deleted"), ({"title": ""}, "title")],
)
def test_revise_refuses_what_it_cannot_change(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        doc.revise_document(added(), data, META)
    assert fields_of(exc) == [field]


def test_retag_normalises_and_same_tags_are_a_no_op() -> None:
    state = added()
    after = fold(state, doc.retag_document(state, ["b", "a"], META))
    assert after.tags == ["a", "b"]
    assert doc.retag_document(after, ["a", "b"], META) is None


def test_retag_rejects_bad_tags_by_position() -> None:
    with pytest.raises(InvalidInput) as exc:
        doc.retag_document(added(), ["ok", "Not OK"], META)
    assert fields_of(exc) == ["tags[1]"]


COMMANDS: dict[str, Callable[[doc.Document], Any]] = {
    "revise": lambda s: doc.revise_document(s, {"title": "Other"}, META),
    "retag": lambda s: doc.retag_document(s, ["x"], META),
    "remove": lambda s: doc.remove_document(s, META),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_removed_document_refuses_everything_but_restore(command: str) -> None:
    state = added()
    removed = fold(state, doc.remove_document(state, META))
    assert removed.deleted
    with pytest.raises(IllegalTransition, match="removed"):
        COMMANDS[command](removed)


def test_restore_brings_a_removed_document_back_unchanged() -> None:
    state = added(tags=["a"])
    removed = fold(state, doc.remove_document(state, META))
    restored = fold(removed, doc.restore_document(removed, META))
    assert restored.fields() == state.fields()
    assert restored.aggregate_version == 3
    with pytest.raises(IllegalTransition, match="not removed"):
        doc.restore_document(restored, META)


@given(st.lists(st.sampled_from([*sorted(COMMANDS), "restore"]), max_size=12))
def test_any_command_sequence_replays_to_the_folded_state(commands: list[str]) -> None:
    first = doc.add_document(uuid4(), {"title": "T", "content": "C"}, META)
    events: list[DomainEvent] = [first]
    state = doc.evolve(None, first)
    run = {**COMMANDS, "restore": lambda s: doc.restore_document(s, META)}
    for name in commands:
        try:
            event = run[name](state)
        except IllegalTransition:
            continue
        if event is not None:
            events.append(event)
            state = doc.evolve(state, event)
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
    assert doc.replay(_stored_and_back(e) for e in events) == state


def test_a_foreign_event_is_refused() -> None:
    state = added()
    foreign = DomainEvent(
        originator_id=state.id,
        originator_version=2,
        occurred_at=META.occurred_at,
        actor="a",
        correlation_id="c",
        causation_id="c",
        reason=None,
    )
    with pytest.raises(TypeError, match="not a document event"):
        doc.evolve(state, foreign)
