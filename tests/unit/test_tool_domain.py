"""Pure properties of the Tool aggregate: no I/O, no framework, just decisions and replay."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain import tool as domain
from domain.errors import DomainError, IllegalTransition, InvalidInput
from domain.events import EventMeta
from domain.secrets import (
    REDACTED,
    SEALED,
    check_sealed,
    secret_paths,
    sensitive_keys_of,
    with_value,
)
from domain.validation import check_json_schema, check_slug
from tests.budget import examples
from tests.tool_model import (
    ACCEPTED,
    NO_CHANGE,
    REFUSED,
    Outcome,
    ToolModel,
    broken_bodies,
    commands,
    json_schemas,
    json_values,
    semvers,
    slug_core,
    tool_bodies,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def meta(n: int = 0, reason: str | None = None) -> EventMeta:
    return EventMeta(
        actor="tester",
        correlation_id=f"corr-{n}",
        causation_id=f"cmd-{n}",
        occurred_at=T0.replace(microsecond=n % 1_000_000),
        reason=reason,
    )


def registered(**overrides: Any) -> domain.Tool:
    body = {
        "slug": "weather",
        "name": "Weather",
        "description": "Weather for a city",
        "category": "weather",
        "input_schema": {"type": "object"},
        "version": "1.0.0",
        "author": "team",
        **overrides,
    }
    tool = domain.replay([domain.register_tool(uuid4(), body, meta())])
    assert tool is not None
    return tool


def decide(state: domain.Tool, name: str, arg: Any, m: EventMeta) -> Any:
    if name == "update":
        return domain.update_tool(state, arg, m)
    return {
        "activate": domain.activate_tool,
        "deprecate": domain.deprecate_tool,
        "delete": domain.delete_tool,
        "restore": domain.restore_tool,
    }[name](state, m)


# --- registration -----------------------------------------------------------------------------


@settings(max_examples=examples(150))
@given(body=tool_bodies(slugs=slug_core))
def test_any_valid_tool_registers_and_replays_to_its_input(body: dict[str, Any]) -> None:
    tool_id = uuid4()
    event = domain.register_tool(tool_id, body, meta(1, reason="new"))
    assert isinstance(event, domain.ToolRegistered)
    assert (event.originator_id, event.originator_version) == (tool_id, 1)
    assert (event.actor, event.correlation_id, event.causation_id, event.reason) == (
        "tester",
        "corr-1",
        "cmd-1",
        "new",
    )
    tool = domain.replay([event])
    assert tool is not None
    assert tool.id == tool_id
    assert tool.aggregate_version == 1
    assert tool.fields() == ToolModel.registered(body).fields


REQUIRED = {"slug", "name", "description", "category", "input_schema", "version", "author"}
# Missing and unknown fields are the input layer's job (pydantic), not the domain's.
domain_level_breaks = broken_bodies().filter(
    lambda case: case[0] != "no_such_field" and not (case[0] in REQUIRED and case[0] not in case[1])
)


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(case=domain_level_breaks)
def test_invalid_registration_names_the_offending_field(case: tuple[str, dict[str, Any]]) -> None:
    field, body = case
    with pytest.raises(InvalidInput) as caught:
        domain.register_tool(uuid4(), body, meta())
    assert field in [e.field for e in caught.value.errors], caught.value.errors


@given(value=st.text(alphabet=string.ascii_letters + string.digits + "-_ ./\n", max_size=70))
def test_slug_rule_matches_its_specification(value: str) -> None:
    allowed = set(string.ascii_lowercase + string.digits + "-")
    valid = 1 <= len(value) <= 63 and set(value) <= allowed and not value.startswith("-")
    assert (check_slug(value) == []) is valid


@settings(max_examples=examples(300))
@given(schema=st.dictionaries(st.text(max_size=12), json_values, max_size=4), where=json_values)
def test_json_schema_check_never_crashes(schema: dict[str, Any], where: Any) -> None:
    # Any JSON object, including ones with a non-string "$schema", is either accepted or refused
    # with a field error; never an exception (which would be a 500 at the API).
    for candidate in (schema, {**schema, "$schema": where}):
        errors = check_json_schema(candidate, "input_schema")
        assert all(e.field == "input_schema" for e in errors)


@settings(max_examples=examples(50))
@given(schema=json_schemas())
def test_generated_schemas_are_valid(schema: dict[str, Any]) -> None:
    # Guards the generators: a strategy that produced invalid schemas would make the round-trip
    # properties vacuous (every registration refused).
    assert check_json_schema(schema, "input_schema") == []


@pytest.mark.parametrize("bad", [{"$schema": []}, {"$schema": 5}, {"$schema": {"a": 1}}])
def test_non_string_dollar_schema_is_a_field_error(bad: dict[str, Any]) -> None:
    assert [e.field for e in check_json_schema(bad, "output_schema")] == ["output_schema"]


def test_a_new_tool_is_draft_or_active_only() -> None:
    with pytest.raises(InvalidInput) as caught:
        registered(status="deprecated")
    assert [e.field for e in caught.value.errors] == ["status"]
    assert registered(status="active").status == "active"
    assert registered().status == "draft"


# --- versions ---------------------------------------------------------------------------------


@settings(max_examples=examples(200))
@given(old=semvers, new=semvers)
def test_version_only_moves_forward(old: str, new: str) -> None:
    import semver

    tool = registered(version=old)
    forward = semver.Version.parse(new) > semver.Version.parse(old)
    if new == old:
        assert domain.update_tool(tool, {"version": new}, meta()) is None
    elif forward:
        event = domain.update_tool(tool, {"version": new}, meta())
        assert event is not None
        assert event.changes == {"version": new}
    else:
        with pytest.raises(InvalidInput) as caught:
            domain.update_tool(tool, {"version": new}, meta())
        assert [e.field for e in caught.value.errors] == ["version"]


# --- command sequences against the model ------------------------------------------------------


class PureToolMachine(RuleBasedStateMachine):
    """Any command sequence: each accepted command is exactly one event with the next version,
    refused or empty commands are none, and replay equals the model."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []
        self.model: ToolModel | None = None
        self.tool_id: UUID = uuid4()
        self.n = 0

    @initialize(body=tool_bodies(slugs=slug_core))
    def register(self, body: dict[str, Any]) -> None:
        self.events = [domain.register_tool(self.tool_id, body, meta())]
        self.model = ToolModel.registered(body)

    @rule(command=commands)
    def run(self, command: tuple[str, Any]) -> None:
        assert self.model is not None
        name, arg = command
        self.n += 1
        expected = self.model.apply(name, arg)
        state = domain.replay(self.events)
        assert state is not None
        try:
            event = decide(state, name, arg, meta(self.n))
        except InvalidInput as exc:
            got = Outcome(REFUSED, "invalid_input", exc.errors[0].field)
        except IllegalTransition:
            got = Outcome(REFUSED, "illegal_transition")
        else:
            got = Outcome(ACCEPTED if event is not None else NO_CHANGE)
            if event is not None:
                assert event.originator_id == self.tool_id
                assert event.originator_version == len(self.events) + 1
                assert event.causation_id == f"cmd-{self.n}"
                self.events.append(event)
        assert got == expected, (name, arg)

    @invariant()
    def replay_equals_model(self) -> None:
        if self.model is None:
            return
        tool = domain.replay(self.events)
        assert tool is not None
        assert [e.originator_version for e in self.events] == list(range(1, len(self.events) + 1))
        assert tool.aggregate_version == self.model.version == len(self.events)
        assert tool.fields() == self.model.fields


PureToolMachine.TestCase.settings = settings(
    max_examples=examples(60), stateful_step_count=25, deadline=None
)
test_command_sequences_replay_to_the_model = PureToolMachine.TestCase


# --- lifecycle --------------------------------------------------------------------------------

TRANSITIONS = [
    # (status, deleted, command, allowed)
    ("draft", False, "activate", True),
    ("draft", False, "deprecate", False),
    ("active", False, "activate", False),
    ("active", False, "deprecate", True),
    ("deprecated", False, "activate", True),
    ("deprecated", False, "deprecate", False),
    ("draft", False, "delete", True),
    ("active", False, "delete", True),
    ("deprecated", False, "delete", True),
    ("draft", False, "restore", False),
    ("active", True, "activate", False),
    ("active", True, "deprecate", False),
    ("active", True, "delete", False),
    ("active", True, "restore", True),
]


@pytest.mark.parametrize(("status", "deleted", "command", "allowed"), TRANSITIONS)
def test_status_transitions(status: str, deleted: bool, command: str, allowed: bool) -> None:
    from dataclasses import replace

    tool = replace(registered(), status=status, deleted=deleted)
    if allowed:
        event = decide(tool, command, None, meta())
        after = domain.evolve(tool, event)
        assert after.aggregate_version == tool.aggregate_version + 1
    else:
        with pytest.raises(IllegalTransition):
            decide(tool, command, None, meta())


def test_a_deleted_tool_refuses_updates_until_restored() -> None:
    tool = registered()
    tool = domain.evolve(tool, domain.delete_tool(tool, meta()))
    with pytest.raises(IllegalTransition):
        domain.update_tool(tool, {"name": "New"}, meta())
    tool = domain.evolve(tool, domain.restore_tool(tool, meta()))
    event = domain.update_tool(tool, {"name": "New"}, meta())
    assert event is not None
    assert domain.evolve(tool, event).name == "New"


def test_replay_refuses_a_history_that_does_not_start_with_registration() -> None:
    tool = registered()
    deleted = domain.delete_tool(tool, meta())
    with pytest.raises(ValueError):
        domain.replay([deleted])


# --- updates ----------------------------------------------------------------------------------


def test_slug_never_changes() -> None:
    tool = registered()
    assert domain.update_tool(tool, {"slug": tool.slug}, meta()) is None
    with pytest.raises(InvalidInput) as caught:
        domain.update_tool(tool, {"slug": "other"}, meta())
    assert [e.field for e in caught.value.errors] == ["slug"]


def test_unknown_fields_are_refused_by_name() -> None:
    with pytest.raises(InvalidInput) as caught:
        domain.update_tool(registered(), {"status": "active", "colour": "red"}, meta())
    assert sorted(e.field for e in caught.value.errors) == ["colour", "status"]


def test_update_tag_errors_name_the_callers_index() -> None:
    # The bad tag is the caller's tags[1]; normalising (sorting) must not move the blame.
    with pytest.raises(InvalidInput) as caught:
        domain.update_tool(registered(), {"tags": ["zeta", "Bad Tag"]}, meta())
    assert [e.field for e in caught.value.errors] == ["tags[1]"]


def test_update_refuses_repeated_tags_like_registration_does() -> None:
    with pytest.raises(InvalidInput) as on_register:
        registered(tags=["a", "a"])
    with pytest.raises(InvalidInput) as on_update:
        domain.update_tool(registered(), {"tags": ["b", "b"]}, meta())
    assert [e.field for e in on_register.value.errors] == ["tags"]
    assert [e.field for e in on_update.value.errors] == ["tags"]


def test_tag_order_alone_is_no_change() -> None:
    tool = registered(tags=["b", "a"])
    assert tool.tags == ["a", "b"]
    assert domain.update_tool(tool, {"tags": ["b", "a"]}, meta()) is None


def test_optional_fields_can_be_cleared() -> None:
    tool = registered(long_description="long", output_schema={"type": "object"})
    event = domain.update_tool(tool, {"long_description": None, "output_schema": None}, meta())
    assert event is not None
    after = domain.evolve(tool, event)
    assert (after.long_description, after.output_schema) == (None, None)


def test_invalid_update_names_every_bad_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        domain.update_tool(
            registered(),
            {"name": " ", "input_schema": {"type": 1}, "version": "0.9.0"},
            meta(),
        )
    assert sorted(e.field for e in caught.value.errors) == ["input_schema", "name", "version"]


def test_domain_errors_carry_a_code() -> None:
    assert issubclass(InvalidInput, DomainError)
    assert InvalidInput.code == "invalid_input"
    assert IllegalTransition.code == "illegal_transition"


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_pass",
        "client_secret",
        "api_token",
        "API-KEY",
        "apikey",
        "private_key",
        "credentials",
        "AccessToken",
    ],
)
def test_credential_like_keys_are_sensitive_without_being_declared(key: str) -> None:
    assert sensitive_keys_of({key: "x", "url": "https://example.org"}, []) == [key]


def test_declared_keys_are_sensitive_too() -> None:
    assert sensitive_keys_of({"dsn": "x", "api_token": "y"}, ["dsn"]) == ["api_token", "dsn"]


def test_the_domain_never_accepts_a_clear_secret() -> None:
    sealed = {SEALED: "v1:cipher"}
    assert check_sealed({"dsn": sealed}, ["dsn"]) == []
    assert [e.field for e in check_sealed({"dsn": "clear"}, ["dsn"])] == ["config.dsn"]
    with pytest.raises(InvalidInput) as caught:
        registered(config={"api_token": "clear"})
    assert [e.field for e in caught.value.errors] == ["config.api_token"]
    tool = registered(config={"api_token": sealed})
    assert tool.sensitive_keys == ["api_token"]
    with pytest.raises(InvalidInput) as caught:
        domain.update_tool(
            tool, {"config": {"api_token": sealed, "dsn": "x"}, "sensitive_keys": ["dsn"]}, meta()
        )
    assert [e.field for e in caught.value.errors] == ["config.dsn"]


def test_secret_paths_find_declared_and_nested_credentials() -> None:
    config = {
        "dsn": "postgres://x",
        "auth": {"token": "t", "user": "u"},
        "servers": [{"password": "p"}, {"host": "h"}],
        "sealed": {"password": {SEALED: "v1:x"}},
    }
    assert secret_paths(config, ["dsn"]) == [
        ("dsn",), ("auth", "token"), ("servers", 0, "password"), ("sealed", "password"),
    ]  # fmt: skip
    updated = with_value(config, ("servers", 0, "password"), REDACTED)
    assert updated["servers"][0] == {"password": REDACTED}
    assert config["servers"][0] == {"password": "p"}  # the original is not changed
    assert check_sealed(config, ["dsn"])[1].field == "config.auth.token"
