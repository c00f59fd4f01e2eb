"""Properties of the tool write side with the real Postgres event store: through the command
handlers, and through the HTTP API for smaller samples."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from commands import tools as handlers
from commands.common import load
from commands.context import CommandContext
from commands.errors import NotFound
from domain.errors import IllegalTransition, InvalidInput
from tests.ledger_sql import REGISTERED, connect, head, rows_of
from tests.tool_model import (
    ACCEPTED,
    NO_CHANGE,
    REFUSED,
    Outcome,
    ToolModel,
    broken_bodies,
    commands,
    names_field,
    tool_bodies,
)

pytestmark = pytest.mark.usefixtures("container")
DB_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def ctx(n: int = 0) -> CommandContext:
    return CommandContext(actor="property-test", correlation_id=f"prop-{n}", reason="property")


@pytest.fixture(scope="module")
def db(database_url: str):  # type: ignore[no-untyped-def]
    with connect(database_url) as conn:
        yield conn


def numbers(value: Any) -> Any:
    """JSON with every number as a Decimal: the read models keep JSON numbers exactly (jsonb),
    but may write 5.3e+16 as 53000000000000000, which Python reads as an int, not a float."""
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)


def run_handler(deps: Any, tool_id: UUID, name: str, arg: Any, n: int) -> Any:
    ref = str(tool_id)
    if name == "update":
        return handlers.update_tool(deps, ref, arg, ctx(n))
    return getattr(handlers, f"{name}_tool")(deps, ref, ctx(n))


# --- registration round trips -----------------------------------------------------------------


@settings(DB_SETTINGS, max_examples=40)
@given(body=tool_bodies())
def test_any_valid_tool_registers_and_reads_back_equal(deps, db, body) -> None:  # type: ignore[no-untyped-def]
    result = handlers.register_tool(deps, body, ctx())
    assert result.version == 1
    expected = ToolModel.registered(body).fields
    by_id = load(deps, handlers.TOOL, str(result.id))
    by_slug = load(deps, handlers.TOOL, body["slug"])
    assert by_id == by_slug
    assert by_id.fields() == expected
    assert by_id.aggregate_version == 1
    rows = rows_of(db, result.id)
    assert rows == [(1, REGISTERED, result.position)]
    (event,) = deps.store.load(result.id)
    assert (event.actor, event.correlation_id, event.reason) == (
        "property-test",
        "prop-0",
        "property",
    )


@settings(DB_SETTINGS, max_examples=15)
@given(body=tool_bodies())
def test_any_valid_tool_round_trips_through_the_api(client, body) -> None:  # type: ignore[no-untyped-def]
    created = client.post("/api/v1/tools", json=body)
    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer["version"] == 1
    assert created.headers["etag"] == '"1"'
    got = client.get(f"/api/v1/tools/{answer['id']}")
    assert got.status_code == 200, got.text
    assert numbers(got.json()["tool"]) == numbers(ToolModel.registered(body).fields)
    assert (got.json()["version"], got.json()["position"]) == (1, answer["position"])
    assert client.get(f"/api/v1/tools/{body['slug']}").json() == got.json()


# --- command sequences against the model, on the real store -----------------------------------


class StoreToolMachine(RuleBasedStateMachine):
    """Any command sequence through the handlers: one stored event per accepted command with
    versions 1..n, nothing stored for refused or empty commands, replay equals the model."""

    deps: Any = None
    db: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.model: ToolModel | None = None
        self.tool_id: UUID | None = None
        self.n = 0

    @initialize(body=tool_bodies())
    def register(self, body: dict[str, Any]) -> None:
        self.tool_id = handlers.register_tool(self.deps, body, ctx()).id
        self.model = ToolModel.registered(body)

    @rule(command=commands)
    def run(self, command: tuple[str, Any]) -> None:
        assert self.model is not None
        assert self.tool_id is not None
        name, arg = command
        self.n += 1
        before = rows_of(self.db, self.tool_id)
        expected = self.model.apply(name, arg)
        try:
            result = run_handler(self.deps, self.tool_id, name, arg, self.n)
        except InvalidInput as exc:
            got = Outcome(REFUSED, "invalid_input", exc.errors[0].field)
        except IllegalTransition:
            got = Outcome(REFUSED, "illegal_transition")
        else:
            grew = result.version == len(before) + 1
            assert result.version in (len(before), len(before) + 1)
            got = Outcome(ACCEPTED if grew else NO_CHANGE)
        assert got == expected, (name, arg)
        after = rows_of(self.db, self.tool_id)
        added = after[len(before) :]
        assert after[: len(before)] == before
        assert len(added) == (1 if expected.kind == ACCEPTED else 0)
        if added:
            assert (added[0][0], added[0][2]) == (result.version, result.position)
            (event,) = self.deps.store.load_page(self.tool_id, len(before), 10)
            assert event.event.causation_id != ""
            assert event.event.correlation_id == f"prop-{self.n}"

    @invariant()
    def store_replays_to_the_model(self) -> None:
        if self.model is None or self.tool_id is None:
            return
        rows = rows_of(self.db, self.tool_id)
        assert [v for v, _, _ in rows] == list(range(1, self.model.version + 1))
        positions = [p for _, _, p in rows]
        assert positions == sorted(positions)
        tool = load(self.deps, handlers.TOOL, str(self.tool_id))
        assert tool.aggregate_version == self.model.version
        assert tool.fields() == self.model.fields


@pytest.fixture
def store_machine(deps, db):  # type: ignore[no-untyped-def]
    StoreToolMachine.deps, StoreToolMachine.db = deps, db
    return StoreToolMachine


def test_command_sequences_replay_to_the_model(store_machine) -> None:  # type: ignore[no-untyped-def]
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        store_machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# --- invalid input ----------------------------------------------------------------------------


@settings(DB_SETTINGS, max_examples=80)
@given(case=broken_bodies())
def test_invalid_registration_is_rejected_naming_the_field(client, db, case) -> None:  # type: ignore[no-untyped-def]
    field, body = case
    before = head(db)
    answer = client.post("/api/v1/tools", json=body, headers={"X-Request-ID": "bad-input"})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["request_id"] == "bad-input"
    assert names_field(error["details"], field), (field, error["details"])
    assert head(db) == before


BAD_UPDATES = [
    ({"name": "  "}, "name"),
    ({"version": "0.0.1"}, "version"),
    ({"version": "one"}, "version"),
    ({"input_schema": {"type": "nope"}}, "input_schema"),
    ({"output_schema": {"required": 3}}, "output_schema"),
    ({"tags": ["ok", "Not OK"]}, "tags[1]"),
    ({"tags": ["x", "x"]}, "tags"),
    ({"slug": "renamed"}, "slug"),
    ({"status": "active"}, "status"),
    ({"examples": [1]}, "examples"),
    ({"config": []}, "config"),
    ({"name": "n" * 201}, "name"),
]


@pytest.mark.parametrize(("patch", "field"), BAD_UPDATES)
def test_invalid_update_is_rejected_naming_the_field(client, patch, field) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import tool_body

    created = client.post("/api/v1/tools", json=tool_body(version="1.0.0")).json()
    answer = client.patch(f"/api/v1/tools/{created['id']}", json=patch)
    assert answer.status_code == 422, answer.text
    assert names_field(answer.json()["error"]["details"], field), answer.json()
    events = client.get(f"/api/v1/tools/{created['id']}/events").json()["items"]
    assert len(events) == 1


# --- audit trail and time travel --------------------------------------------------------------


def http_command(client: Any, tool_id: str, name: str, arg: Any) -> Any:
    base = f"/api/v1/tools/{tool_id}"
    if name == "update":
        return client.patch(base, json=arg)
    if name == "delete":
        return client.delete(base)
    return client.post(f"{base}/{name}")


@settings(DB_SETTINGS, max_examples=12)
@given(body=tool_bodies(), steps=st.lists(commands, min_size=1, max_size=8))
def test_audit_trail_and_time_travel_match_the_model(client, body, steps) -> None:  # type: ignore[no-untyped-def]
    created = client.post("/api/v1/tools", json=body, headers={"X-Actor": "alice"})
    assert created.status_code == 201, created.text
    tool_id = created.json()["id"]
    model = ToolModel.registered(body)
    for name, arg in steps:
        expected = model.apply(name, arg)
        answer = http_command(client, tool_id, name, arg)
        if expected.kind == REFUSED:
            status = 422 if expected.code == "invalid_input" else 409
            assert answer.status_code == status, (name, arg, answer.text)
            assert answer.json()["error"]["code"] == expected.code
        else:
            assert answer.status_code == 200, (name, arg, answer.text)
            assert answer.json()["version"] == model.version

    page = client.get(f"/api/v1/tools/{tool_id}/events", params={"limit": 1000}).json()
    items = page["items"]
    assert page["next_after_version"] is None
    assert [e["version"] for e in items] == list(range(1, model.version + 1))
    positions = [e["position"] for e in items]
    assert positions == sorted(set(positions))
    times = [datetime.fromisoformat(e["occurred_at"]) for e in items]
    assert times == sorted(times)
    assert items[0]["type"] == "ToolRegistered"
    assert items[0]["actor"] == "alice"

    for n, event in enumerate(items, start=1):
        at_version = client.get(f"/api/v1/tools/{tool_id}", params={"at_version": n}).json()
        assert at_version["version"] == n
        assert at_version["position"] == event["position"]
        assert numbers(at_version["tool"]) == numbers(model.history[n - 1])
        as_of = client.get(f"/api/v1/tools/{tool_id}", params={"as_of": event["occurred_at"]})
        last = max(i for i, t in enumerate(times, start=1) if t <= times[n - 1])
        assert as_of.json()["version"] == last
        assert numbers(as_of.json()["tool"]) == numbers(model.history[last - 1])

    now = client.get(f"/api/v1/tools/{tool_id}").json()
    assert now["version"] == model.version
    assert numbers(now["tool"]) == numbers(model.fields)
    before = (times[0] - timedelta(microseconds=1)).isoformat()
    assert client.get(f"/api/v1/tools/{tool_id}", params={"as_of": before}).status_code == 404
    beyond = client.get(f"/api/v1/tools/{tool_id}", params={"at_version": model.version + 1})
    assert beyond.status_code == 404


def test_events_page_through_in_order(client) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import tool_body

    tool_id = client.post("/api/v1/tools", json=tool_body()).json()["id"]
    for i in range(1, 8):
        assert client.patch(f"/api/v1/tools/{tool_id}", json={"version": f"1.{i}.0"}).is_success
    seen: list[int] = []
    after = 0
    while True:
        page = client.get(
            f"/api/v1/tools/{tool_id}/events", params={"after_version": after, "limit": 3}
        ).json()
        seen += [e["version"] for e in page["items"]]
        if page["next_after_version"] is None:
            break
        after = page["next_after_version"]
    assert seen == list(range(1, 9))


def test_as_of_between_events_is_the_earlier_state(client) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import tool_body

    tool_id = client.post("/api/v1/tools", json=tool_body(version="1.0.0")).json()["id"]
    client.patch(f"/api/v1/tools/{tool_id}", json={"version": "2.0.0"})
    items = client.get(f"/api/v1/tools/{tool_id}/events").json()["items"]
    first, second = (datetime.fromisoformat(e["occurred_at"]) for e in items)
    assert first < second
    middle = first + (second - first) / 2
    got = client.get(f"/api/v1/tools/{tool_id}", params={"as_of": middle.isoformat()}).json()
    assert (got["version"], got["tool"]["version"]) == (1, "1.0.0")


def test_commands_on_unknown_tools_are_not_found(deps, client, db) -> None:  # type: ignore[no-untyped-def]
    before = head(db)
    with pytest.raises(NotFound):
        handlers.activate_tool(deps, "no-such-tool-anywhere", ctx())
    for method, path in [
        ("PATCH", "/api/v1/tools/no-such-tool"),
        ("POST", "/api/v1/tools/no-such-tool/activate"),
        ("POST", "/api/v1/tools/00000000-0000-0000-0000-000000000000/deprecate"),
        ("DELETE", "/api/v1/tools/no-such-tool"),
        ("POST", "/api/v1/tools/no-such-tool/restore"),
        ("GET", "/api/v1/tools/no-such-tool"),
        ("GET", "/api/v1/tools/no-such-tool/events"),
    ]:
        answer = client.request(method, path, json={"name": "x"} if method == "PATCH" else None)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "not_found"
    assert head(db) == before


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", '[1, {"x": NaN}]'])
def test_non_finite_numbers_are_refused_not_stored(client, db, value) -> None:  # type: ignore[no-untyped-def]
    # Python's JSON parser accepts NaN/Infinity; stored, they would make the event log invalid
    # JSON for every other reader (and the API would silently show null).
    from tests.conftest import tool_body

    body = json.dumps(tool_body(config={"v": "PLACEHOLDER"})).replace('"PLACEHOLDER"', value)
    before = head(db)
    answer = client.post(
        "/api/v1/tools", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert names_field(answer.json()["error"]["details"], "config.v")
    assert head(db) == before


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"as_of": "2030-01-01T00:00:00"}, "as_of"),  # no offset: which time zone?
        ({"as_of": "yesterday"}, "as_of"),
        ({"at_version": 0}, "at_version"),
        ({"at_version": 2**63}, "at_version"),
        ({"at_version": 10**30}, "at_version"),
    ],
)
def test_bad_time_travel_parameters_are_refused_by_name(client, params, field) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import tool_body

    tool_id = client.post("/api/v1/tools", json=tool_body()).json()["id"]
    answer = client.get(f"/api/v1/tools/{tool_id}", params=params)
    assert answer.status_code == 422, answer.text
    assert names_field(answer.json()["error"]["details"], field)


def test_as_of_accepts_any_offset(client) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import tool_body

    tool_id = client.post("/api/v1/tools", json=tool_body()).json()["id"]
    (event,) = client.get(f"/api/v1/tools/{tool_id}/events").json()["items"]
    at = datetime.fromisoformat(event["occurred_at"])
    for offset in (timedelta(hours=2), timedelta(hours=-5, minutes=-30)):
        local = at.astimezone(timezone(offset)).isoformat()
        assert (
            client.get(f"/api/v1/tools/{tool_id}", params={"as_of": local}).json()["version"] == 1
        )
    far = client.get(f"/api/v1/tools/{tool_id}", params={"at_version": 2**63 - 1})
    assert far.status_code == 404
