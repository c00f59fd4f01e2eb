"""The command handlers (commands/) run for real against in-memory fakes of their ports.

No services: tests/unit/fakes.py holds the fakes. What the API adds on top (HTTP, request hashes,
If-Match) is the integration tier's job; here each handler's own promises are checked: what it
stores, what it answers, and what it refuses without storing anything.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from commands import datasets, documents, tools
from commands.common import load, resolve_id
from commands.context import CommandContext
from commands.errors import IdempotencyKeyReused, NotFound, SlugTaken, VersionConflict
from commands.import_tools import BatchOutcome, import_tools
from commands.inputs import RegisterTool
from commands.ports import Appended, CommandDeps, IdempotencyRequest
from domain import dataset as dataset_domain
from domain import document as document_domain
from domain import tool as tool_domain
from domain.errors import IllegalTransition, InvalidInput
from domain.secrets import REDACTED, SEALED, is_sealed
from domain.slug_index import SlugClaimed, slug_index_id
from tests.budget import examples
from tests.tool_model import (
    ACCEPTED,
    NO_CHANGE,
    REFUSED,
    Outcome,
    ToolModel,
    commands,
    slug_core,
    tool_bodies,
)
from tests.unit.fakes import (
    FakeClock,
    fake_deps,
    idempotency_of,
    sealer_of,
    store_of,
)

# --- helpers ----------------------------------------------------------------------------------


def ctx(
    key: str | None = None,
    request_hash: str = "hash-1",
    *,
    expected_version: int | None = None,
    reason: str | None = None,
) -> CommandContext:
    return CommandContext(
        actor="tester",
        correlation_id="corr-1",
        reason=reason,
        expected_version=expected_version,
        idempotency=IdempotencyRequest(key, request_hash) if key else None,
    )


def tool_body(slug: str = "weather", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "slug": slug,
        "name": "Weather lookup",
        "description": "Current weather for a city",
        "category": "weather",
        "tags": ["weather"],
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        "version": "1.0.0",
        "author": "platform-team",
    }
    body.update(overrides)
    return body


def dataset_body(slug: str = "sales-orders", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "slug": slug,
        "name": "Sales orders",
        "description": "One row per order",
        "source": {"kind": "postgres_table", "uri": "postgresql://warehouse/sales?table=orders"},
        "columns": [{"name": "order_id", "type": "bigint", "nullable": False}],
        "tags": ["sales"],
        "owner": "data-platform",
    }
    body.update(overrides)
    return body


def tool_of(deps: CommandDeps, ref: str) -> tool_domain.Tool:
    return load(deps, tools.TOOL, ref)


def versions(deps: CommandDeps, aggregate_id: UUID) -> list[int]:
    return [e.originator_version for e in deps.store.load(aggregate_id)]


@pytest.fixture
def deps() -> CommandDeps:
    return fake_deps()


# --- tools: registration ----------------------------------------------------------------------


def test_register_stores_the_tool_and_its_slug_claim(deps: CommandDeps) -> None:
    store = store_of(deps)
    result = tools.register_tool(deps, tool_body(), ctx(reason="new tool"))

    assert result.version == 1
    stored = store.all_events()
    assert [type(s.event) for s in stored] == [tool_domain.ToolRegistered, SlugClaimed]
    registered, claim = (s.event for s in stored)
    assert (registered.originator_id, registered.originator_version) == (result.id, 1)
    assert stored[0].position == result.position
    assert stored[1].position > stored[0].position
    assert isinstance(claim, SlugClaimed)
    assert claim.originator_id == slug_index_id("tool", "weather")
    assert (claim.kind, claim.slug, claim.owner_id) == ("tool", "weather", result.id)
    # The command's metadata is on both events.
    for stored_event in (registered, claim):
        assert (stored_event.actor, stored_event.correlation_id, stored_event.reason) == (
            "tester",
            "corr-1",
            "new tool",
        )
    assert registered.causation_id == claim.causation_id
    assert registered.occurred_at == FakeClock()()


def test_register_refuses_invalid_input_by_field_and_stores_nothing(deps: CommandDeps) -> None:
    with pytest.raises(InvalidInput) as caught:
        tools.register_tool(deps, tool_body(slug="Not A Slug", version="one"), ctx())
    assert {e.field for e in caught.value.errors} == {"slug", "version"}
    assert store_of(deps).event_count() == 0


def test_a_taken_slug_is_refused_and_stores_nothing(deps: CommandDeps) -> None:
    first = tools.register_tool(deps, tool_body(), ctx())
    count = store_of(deps).event_count()
    with pytest.raises(SlugTaken) as caught:
        tools.register_tool(deps, tool_body(name="Another"), ctx())
    assert caught.value.slug == "weather"
    assert store_of(deps).event_count() == count
    assert tool_of(deps, "weather").id == first.id


def test_a_deleted_tool_keeps_its_slug(deps: CommandDeps) -> None:
    tools.register_tool(deps, tool_body(), ctx())
    tools.delete_tool(deps, "weather", ctx())
    with pytest.raises(SlugTaken):
        tools.register_tool(deps, tool_body(), ctx())


def test_slugs_are_unique_per_kind(deps: CommandDeps) -> None:
    tool = tools.register_tool(deps, tool_body(slug="orders"), ctx())
    dataset = datasets.register_dataset(deps, dataset_body(slug="orders"), ctx())
    assert tool_of(deps, "orders").id == tool.id
    assert load(deps, datasets.DATASET, "orders").id == dataset.id


# --- tools: resolving -------------------------------------------------------------------------


def test_a_tool_resolves_by_id_and_by_slug(deps: CommandDeps) -> None:
    result = tools.register_tool(deps, tool_body(), ctx())
    assert resolve_id(deps, tools.TOOL, str(result.id)) == result.id
    assert resolve_id(deps, tools.TOOL, "weather") == result.id
    assert tool_of(deps, str(result.id)) == tool_of(deps, "weather")
    assert tool_of(deps, "weather").aggregate_version == 1


@pytest.mark.parametrize("ref", ["no-such-tool", str(uuid4())])
def test_unknown_refs_are_not_found(deps: CommandDeps, ref: str) -> None:
    tools.register_tool(deps, tool_body(), ctx())
    with pytest.raises(NotFound) as caught:
        resolve_id(deps, tools.TOOL, ref)
    assert caught.value.ref == ref
    assert "id or slug" in caught.value.message
    with pytest.raises(NotFound):
        tools.activate_tool(deps, ref, ctx())


def test_an_id_of_another_kind_is_not_found(deps: CommandDeps) -> None:
    dataset = datasets.register_dataset(deps, dataset_body(), ctx())
    slug_claim = slug_index_id("tool", "weather")
    tools.register_tool(deps, tool_body(), ctx())
    for ref in (str(dataset.id), str(slug_claim)):
        with pytest.raises(NotFound):
            resolve_id(deps, tools.TOOL, ref)
        with pytest.raises(NotFound):
            tools.update_tool(deps, ref, {"name": "x"}, ctx())


def test_a_slug_that_looks_like_a_uuid_resolves_to_its_tool(deps: CommandDeps) -> None:
    uuid_slug = str(uuid4())
    result = tools.register_tool(deps, tool_body(slug=uuid_slug), ctx())
    assert result.id != UUID(uuid_slug)
    assert resolve_id(deps, tools.TOOL, uuid_slug) == result.id
    assert tools.activate_tool(deps, uuid_slug, ctx()).version == 2


# --- tools: changes -------------------------------------------------------------------------


def test_update_appends_only_what_changed(deps: CommandDeps) -> None:
    result = tools.register_tool(deps, tool_body(), ctx())
    updated = tools.update_tool(
        deps, "weather", {"name": "Weather lookup", "description": "New text"}, ctx()
    )
    assert (updated.id, updated.version) == (result.id, 2)
    last = deps.store.load(result.id)[-1]
    assert isinstance(last, tool_domain.ToolUpdated)
    assert last.changes == {"description": "New text"}
    assert store_of(deps).position_of(result.id, 2) == updated.position > result.position
    assert tool_of(deps, "weather").description == "New text"


def test_lifecycle_through_the_handlers(deps: CommandDeps) -> None:
    tool_id = tools.register_tool(deps, tool_body(), ctx()).id
    ref = str(tool_id)
    steps = [
        (tools.activate_tool, "active", False),
        (tools.deprecate_tool, "deprecated", False),
        (tools.activate_tool, "active", False),
        (tools.delete_tool, "active", True),
        (tools.restore_tool, "active", False),
    ]
    for version, (handler, status, deleted) in enumerate(steps, start=2):
        result = handler(deps, ref, ctx())
        assert result.version == version
        tool = tool_of(deps, ref)
        assert (tool.status, tool.deleted, tool.aggregate_version) == (status, deleted, version)
    assert versions(deps, tool_id) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("prepare", "command"),
    [
        ([], tools.deprecate_tool),  # a draft is activated or deleted
        ([], tools.restore_tool),  # not deleted
        ([tools.activate_tool], tools.activate_tool),  # already active
        ([tools.delete_tool], tools.activate_tool),  # deleted
        ([tools.delete_tool], tools.delete_tool),
    ],
)
def test_illegal_transitions_store_nothing(deps: CommandDeps, prepare: Any, command: Any) -> None:
    tool_id = tools.register_tool(deps, tool_body(), ctx()).id
    for step in prepare:
        step(deps, "weather", ctx())
    count = store_of(deps).event_count()
    with pytest.raises(IllegalTransition):
        command(deps, "weather", ctx())
    assert store_of(deps).event_count() == count
    assert versions(deps, tool_id) == list(range(1, len(prepare) + 2))


def test_a_deleted_tool_refuses_updates(deps: CommandDeps) -> None:
    tools.register_tool(deps, tool_body(), ctx())
    tools.delete_tool(deps, "weather", ctx())
    with pytest.raises(IllegalTransition):
        tools.update_tool(deps, "weather", {"name": "New"}, ctx())


def test_an_update_that_changes_nothing_appends_nothing(deps: CommandDeps) -> None:
    first = tools.register_tool(deps, tool_body(), ctx())
    before = store_of(deps).event_count()
    same = tools.update_tool(
        deps, "weather", {"name": "Weather lookup", "tags": ["weather"]}, ctx()
    )
    assert (same.id, same.version, same.position) == (first.id, 1, first.position)
    assert store_of(deps).event_count() == before


def test_expected_version_must_match(deps: CommandDeps) -> None:
    tool_id = tools.register_tool(deps, tool_body(), ctx()).id
    tools.update_tool(deps, "weather", {"name": "Two"}, ctx(expected_version=1))
    with pytest.raises(VersionConflict) as caught:
        tools.update_tool(deps, "weather", {"name": "Three"}, ctx(expected_version=1))
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    with pytest.raises(VersionConflict):
        tools.activate_tool(deps, "weather", ctx(expected_version=3))
    assert versions(deps, tool_id) == [1, 2]
    assert tools.activate_tool(deps, "weather", ctx(expected_version=2)).version == 3


def test_expected_version_is_checked_even_when_nothing_changes(deps: CommandDeps) -> None:
    tools.register_tool(deps, tool_body(), ctx())
    with pytest.raises(VersionConflict):
        tools.update_tool(deps, "weather", {"name": "Weather lookup"}, ctx(expected_version=7))


def test_a_writer_that_wins_meanwhile_is_a_version_conflict(deps: CommandDeps) -> None:
    tool_id = tools.register_tool(deps, tool_body(), ctx()).id
    store = store_of(deps)
    # Another process activates the tool between this command's load and its append.
    store.before_next_append(lambda: tools.activate_tool(deps, "weather", ctx()))
    with pytest.raises(VersionConflict) as caught:
        tools.update_tool(deps, "weather", {"name": "Mine"}, ctx())
    assert caught.value.expected is None
    assert versions(deps, tool_id) == [1, 2]
    assert tool_of(deps, "weather").name == "Weather lookup"


def test_a_lost_race_with_an_expected_version_names_no_bogus_version(deps: CommandDeps) -> None:
    tools.register_tool(deps, tool_body(), ctx())
    store_of(deps).before_next_append(lambda: tools.activate_tool(deps, "weather", ctx()))
    with pytest.raises(VersionConflict) as caught:
        tools.update_tool(deps, "weather", {"name": "Mine"}, ctx(expected_version=1))
    assert "None" not in caught.value.message


def test_a_slug_registered_meanwhile_is_slug_taken(deps: CommandDeps) -> None:
    store = store_of(deps)
    store.before_next_append(lambda: tools.register_tool(deps, tool_body(name="Other"), ctx()))
    with pytest.raises(SlugTaken):
        tools.register_tool(deps, tool_body(), ctx())
    assert tool_of(deps, "weather").name == "Other"
    assert store.event_count() == 2


# --- idempotency --------------------------------------------------------------------------------


def test_a_retried_registration_returns_the_first_result_and_appends_nothing(
    deps: CommandDeps,
) -> None:
    store = store_of(deps)
    first = tools.register_tool(deps, tool_body(), ctx("k1"))
    count, calls = store.event_count(), len(sealer_of(deps).calls)
    for _ in range(3):
        assert tools.register_tool(deps, tool_body(), ctx("k1")) == first
    assert store.event_count() == count
    assert len(sealer_of(deps).calls) == calls
    # Without the key the same body is a second registration of the slug.
    with pytest.raises(SlugTaken):
        tools.register_tool(deps, tool_body(), ctx())


def test_the_key_is_bound_in_the_same_append(deps: CommandDeps) -> None:
    result = tools.register_tool(deps, tool_body(), ctx("k1", "h1"))
    hit = idempotency_of(deps).lookup("k1")
    assert hit is not None
    request_hash, results = hit
    assert request_hash == "h1"
    # Every appended event: the tool (the answer), then its slug claim.
    assert results == [
        Appended(s.event.originator_id, s.event.originator_version, s.position)
        for s in store_of(deps).all_events()
    ]
    assert results[0] == Appended(result.id, result.version, result.position)


def test_a_key_reused_for_another_request_is_refused(deps: CommandDeps) -> None:
    tools.register_tool(deps, tool_body(), ctx("k1", "h1"))
    count = store_of(deps).event_count()
    with pytest.raises(IdempotencyKeyReused) as caught:
        tools.register_tool(deps, tool_body(slug="other"), ctx("k1", "h2"))
    assert caught.value.key == "k1"
    with pytest.raises(IdempotencyKeyReused):
        tools.activate_tool(deps, "weather", ctx("k1", "h3"))
    assert store_of(deps).event_count() == count
    with pytest.raises(NotFound):
        tool_of(deps, "other")


# (command, what the repeat without the key does once the first one is stored)
RETRIED: dict[str, Any] = {
    "update": lambda deps, c: tools.update_tool(deps, "weather", {"version": "2.0.0"}, c),
    "activate": lambda deps, c: tools.activate_tool(deps, "weather", c),
    "deprecate": lambda deps, c: tools.deprecate_tool(deps, "weather", c),
    "delete": lambda deps, c: tools.delete_tool(deps, "weather", c),
    "restore": lambda deps, c: tools.restore_tool(deps, "weather", c),
}


@pytest.mark.parametrize("command", sorted(RETRIED))
def test_retried_changes_return_the_first_result_after_later_changes(
    deps: CommandDeps, command: str
) -> None:
    tool_id = tools.register_tool(deps, tool_body(status="active"), ctx()).id
    if command == "activate":
        tools.deprecate_tool(deps, "weather", ctx())
    if command == "restore":
        tools.delete_tool(deps, "weather", ctx())
    send = RETRIED[command]
    first = send(deps, ctx("k1"))
    # Someone else changes the tool; the retry must not apply the command again on top.
    if command == "delete":
        tools.restore_tool(deps, "weather", ctx())
    else:
        tools.update_tool(deps, "weather", {"description": "someone else"}, ctx())
    stored = versions(deps, tool_id)
    assert stored[-1] == first.version + 1
    for _ in range(2):
        assert send(deps, ctx("k1")) == first
    assert versions(deps, tool_id) == stored


@pytest.mark.parametrize("command", ["activate", "deprecate", "delete", "restore"])
def test_a_retried_status_command_answers_where_a_repeat_is_illegal(
    deps: CommandDeps, command: str
) -> None:
    tools.register_tool(deps, tool_body(status="active"), ctx())
    if command == "activate":
        tools.deprecate_tool(deps, "weather", ctx())
    if command == "restore":
        tools.delete_tool(deps, "weather", ctx())
    send = RETRIED[command]
    first = send(deps, ctx("k1"))
    with pytest.raises(IllegalTransition):
        send(deps, ctx())
    assert send(deps, ctx("k1")) == first


def test_a_no_op_still_binds_its_key(deps: CommandDeps) -> None:
    tool_id = tools.register_tool(deps, tool_body(name="Same"), ctx()).id
    noop = tools.update_tool(deps, "weather", {"name": "Same"}, ctx("k1", "h1"))
    assert noop.version == 1
    assert idempotency_of(deps).lookup("k1") == ("h1", [Appended(noop.id, 1, noop.position)])
    tools.update_tool(deps, "weather", {"name": "Changed"}, ctx())
    # The retry of the no-op gets the no-op's answer, not the later state ...
    assert tools.update_tool(deps, "weather", {"name": "Same"}, ctx("k1", "h1")) == noop
    # ... and the key cannot be reused for another change.
    with pytest.raises(IdempotencyKeyReused):
        tools.update_tool(deps, "weather", {"name": "Other"}, ctx("k1", "h2"))
    assert versions(deps, tool_id) == [1, 2]
    assert tool_of(deps, "weather").name == "Changed"


def test_a_refused_command_does_not_use_up_its_key(deps: CommandDeps) -> None:
    tools.register_tool(deps, tool_body(), ctx())
    with pytest.raises(IllegalTransition):
        tools.deprecate_tool(deps, "weather", ctx("k1", "h1"))
    assert idempotency_of(deps).lookup("k1") is None
    assert tools.activate_tool(deps, "weather", ctx("k1", "h2")).version == 2


def test_a_concurrent_request_with_the_same_key_wins_and_its_result_is_returned(
    deps: CommandDeps,
) -> None:
    store = store_of(deps)
    winner: list[Any] = []
    # Both requests looked the key up and found nothing; the other one commits first.
    store.before_next_append(
        lambda: winner.append(tools.register_tool(deps, tool_body(), ctx("k1", "h1")))
    )
    answer = tools.register_tool(deps, tool_body(), ctx("k1", "h1"))
    assert answer == winner[0]
    assert store.event_count() == 2


def test_a_concurrent_request_with_the_same_key_and_another_body_is_reused(
    deps: CommandDeps,
) -> None:
    store = store_of(deps)
    store.before_next_append(
        lambda: tools.register_tool(deps, tool_body(slug="first"), ctx("k1", "h1"))
    )
    with pytest.raises(IdempotencyKeyReused):
        tools.register_tool(deps, tool_body(slug="second"), ctx("k1", "h2"))
    with pytest.raises(NotFound):
        tool_of(deps, "second")


def test_a_concurrent_change_with_the_same_key_wins(deps: CommandDeps) -> None:
    tool_id = tools.register_tool(deps, tool_body(), ctx()).id
    winner: list[Any] = []
    store_of(deps).before_next_append(
        lambda: winner.append(tools.activate_tool(deps, "weather", ctx("k1", "h1")))
    )
    assert tools.activate_tool(deps, "weather", ctx("k1", "h1")) == winner[0]
    assert versions(deps, tool_id) == [1, 2]


def test_a_no_op_racing_a_request_with_the_same_key_answers_with_the_winner(
    deps: CommandDeps,
) -> None:
    tools.register_tool(deps, tool_body(), ctx())
    winner: list[Any] = []
    idempotency_of(deps).before_next_remember(
        lambda: winner.append(tools.update_tool(deps, "weather", {"name": "New"}, ctx("k1", "h1")))
    )
    answer = tools.update_tool(deps, "weather", {"name": "Weather lookup"}, ctx("k1", "h1"))
    assert answer == winner[0]
    assert answer.version == 2


# --- secrets ----------------------------------------------------------------------------------

TOKEN, PASSWORD, REGION = "tok-3f9a1c7d", "pw-8b2e4410", "eu-west-1"


def secret_config() -> dict[str, Any]:
    return {
        "api_token": TOKEN,
        "region": REGION,
        "auth": {"user": "svc", "password": PASSWORD},
        "retries": 3,
    }


def assert_not_in_clear(deps: CommandDeps, *secrets: str) -> None:
    text = store_of(deps).stored_text()
    idem = json.dumps([r.request_hash for r in idempotency_of(deps).keys.rows.values()])
    for secret in secrets:
        assert secret not in text
        assert secret not in idem


def test_secrets_are_sealed_before_they_are_stored(deps: CommandDeps) -> None:
    result = tools.register_tool(deps, tool_body(config=secret_config()), ctx())
    assert_not_in_clear(deps, TOKEN, PASSWORD)
    tool = tool_of(deps, "weather")
    sealer = sealer_of(deps)
    assert is_sealed(tool.config["api_token"])
    assert is_sealed(tool.config["auth"]["password"])
    assert tool.config["auth"]["user"] == "svc"
    assert (tool.config["region"], tool.config["retries"]) == (REGION, 3)
    assert sealer.unseal(result.id, tool.config["api_token"]) == TOKEN
    assert sealer.unseal(result.id, tool.config["auth"]["password"]) == PASSWORD
    assert tool.sensitive_keys == ["api_token"]
    assert {aggregate for aggregate, _ in sealer.calls} == {result.id}


def test_declared_sensitive_keys_are_sealed_too(deps: CommandDeps) -> None:
    result = tools.register_tool(
        deps, tool_body(config=secret_config(), sensitive_keys=["region"]), ctx()
    )
    tool = tool_of(deps, "weather")
    assert tool.sensitive_keys == ["api_token", "region"]
    assert sealer_of(deps).unseal(result.id, tool.config["region"]) == REGION
    assert_not_in_clear(deps, TOKEN, PASSWORD, REGION)


def redacted(config: Any) -> Any:
    """The config as the read side shows it: every sealed value replaced by the placeholder."""
    if is_sealed(config):
        return REDACTED
    if isinstance(config, dict):
        return {k: redacted(v) for k, v in config.items()}
    if isinstance(config, list):
        return [redacted(v) for v in config]
    return config


def test_resending_the_redacted_config_keeps_the_stored_secrets(deps: CommandDeps) -> None:
    tools.register_tool(deps, tool_body(config=secret_config()), ctx())
    stored = tool_of(deps, "weather").config
    calls = len(sealer_of(deps).calls)
    shown = redacted(stored)
    assert shown["api_token"] == REDACTED
    assert shown["auth"]["password"] == REDACTED

    same = tools.update_tool(deps, "weather", {"config": shown}, ctx())
    assert same.version == 1
    assert len(sealer_of(deps).calls) == calls
    # Resending the sealed values themselves is no change either (they are not sealed again).
    assert tools.update_tool(deps, "weather", {"config": stored}, ctx()).version == 1
    assert len(sealer_of(deps).calls) == calls


def test_a_placeholder_beside_a_real_change_keeps_the_stored_secret(deps: CommandDeps) -> None:
    result = tools.register_tool(deps, tool_body(config=secret_config()), ctx())
    stored = tool_of(deps, "weather").config
    shown = redacted(stored)
    shown["auth"]["user"] = "svc-2"
    shown["retries"] = 5
    updated = tools.update_tool(deps, "weather", {"config": shown}, ctx())
    assert updated.version == 2
    config = tool_of(deps, "weather").config
    assert config["api_token"] == stored["api_token"]
    assert config["auth"]["password"] == stored["auth"]["password"]
    assert (config["auth"]["user"], config["retries"]) == ("svc-2", 5)
    assert sealer_of(deps).unseal(result.id, config["api_token"]) == TOKEN
    assert_not_in_clear(deps, TOKEN, PASSWORD)


def test_a_new_secret_value_replaces_the_old_one(deps: CommandDeps) -> None:
    result = tools.register_tool(deps, tool_body(config=secret_config()), ctx())
    new_token = "tok-new-77d0e1"
    shown = redacted(tool_of(deps, "weather").config)
    updated = tools.update_tool(
        deps, "weather", {"config": {**shown, "api_token": new_token}}, ctx()
    )
    assert updated.version == 2
    config = tool_of(deps, "weather").config
    assert sealer_of(deps).unseal(result.id, config["api_token"]) == new_token
    assert_not_in_clear(deps, TOKEN, PASSWORD, new_token)


def test_declaring_another_key_sensitive_seals_it_and_keeps_the_others(deps: CommandDeps) -> None:
    result = tools.register_tool(deps, tool_body(config=secret_config()), ctx())
    before = tool_of(deps, "weather").config
    updated = tools.update_tool(deps, "weather", {"sensitive_keys": ["region"]}, ctx())
    assert updated.version == 2
    tool = tool_of(deps, "weather")
    assert tool.sensitive_keys == ["api_token", "region"]
    assert tool.config["api_token"] == before["api_token"]  # not sealed a second time
    assert sealer_of(deps).unseal(result.id, tool.config["region"]) == REGION
    assert_not_in_clear(deps, TOKEN, PASSWORD)


def test_a_forged_sealed_value_is_sealed_like_any_other(deps: CommandDeps) -> None:
    forged = {SEALED: "v1:not-a-real-token"}
    result = tools.register_tool(deps, tool_body(config={"api_token": forged}), ctx())
    config = tool_of(deps, "weather").config
    assert is_sealed(config["api_token"])
    assert config["api_token"] != forged
    assert sealer_of(deps).unseal(result.id, config["api_token"]) == forged


def test_declaring_a_parent_key_sensitive_keeps_its_redacted_nested_secret(
    deps: CommandDeps,
) -> None:
    result = tools.register_tool(deps, tool_body(config=secret_config()), ctx())
    shown = redacted(tool_of(deps, "weather").config)
    assert shown["auth"] == {"user": "svc", "password": REDACTED}
    # The client resends what it was shown, declaring "auth" sensitive as a whole.
    tools.update_tool(deps, "weather", {"config": shown, "sensitive_keys": ["auth"]}, ctx())
    sealed_auth = tool_of(deps, "weather").config["auth"]
    assert sealer_of(deps).unseal(result.id, sealed_auth) == {"user": "svc", "password": PASSWORD}


def test_a_retried_registration_with_secrets_seals_nothing_again(deps: CommandDeps) -> None:
    tools.register_tool(deps, tool_body(config=secret_config()), ctx("k1"))
    calls = len(sealer_of(deps).calls)
    tools.register_tool(deps, tool_body(config=secret_config()), ctx("k1"))
    assert len(sealer_of(deps).calls) == calls


# --- datasets -------------------------------------------------------------------------------------


def dataset_of(deps: CommandDeps, ref: str) -> dataset_domain.Dataset:
    return load(deps, datasets.DATASET, ref)


def test_dataset_main_path(deps: CommandDeps) -> None:
    result = datasets.register_dataset(deps, dataset_body(), ctx())
    assert result.version == 1
    claim = deps.store.load(slug_index_id("dataset", "sales-orders"))
    assert isinstance(claim[0], SlugClaimed)
    assert claim[0].owner_id == result.id
    assert resolve_id(deps, datasets.DATASET, "sales-orders") == result.id

    ref = "sales-orders"
    assert datasets.describe_dataset(deps, ref, {"description": "Orders"}, ctx()).version == 2
    assert datasets.describe_dataset(deps, ref, {"description": "Orders"}, ctx()).version == 2
    columns: list[dict[str, Any]] = [
        {"name": "order_id", "type": "bigint", "nullable": False},
        {"name": "amount", "type": "numeric"},
    ]
    assert datasets.change_dataset_columns(deps, ref, columns, ctx()).version == 3
    assert datasets.change_dataset_columns(deps, ref, columns, ctx()).version == 3  # the same
    profile = {"row_count": 10, "columns": {"amount": {"null_count": 1, "min": 0, "max": 9}}}
    assert datasets.record_dataset_profile(deps, ref, profile, ctx()).version == 4
    # Profiling again is a new observation, even with the same numbers.
    assert datasets.record_dataset_profile(deps, ref, profile, ctx()).version == 5
    assert datasets.archive_dataset(deps, ref, ctx()).version == 6
    assert datasets.unarchive_dataset(deps, ref, ctx()).version == 7
    assert datasets.delete_dataset(deps, ref, ctx()).version == 8
    assert datasets.restore_dataset(deps, str(result.id), ctx()).version == 9

    dataset = dataset_of(deps, ref)
    assert dataset.aggregate_version == 9
    assert dataset.description == "Orders"
    assert [c["name"] for c in dataset.columns] == ["order_id", "amount"]
    assert dataset.profile is not None
    assert dataset.profile["row_count"] == 10
    assert (dataset.status, dataset.deleted) == ("active", False)
    assert versions(deps, result.id) == list(range(1, 10))
    assert dataset_domain.replay(deps.store.load(result.id)) == dataset


def test_dataset_refusals_store_nothing(deps: CommandDeps) -> None:
    datasets.register_dataset(deps, dataset_body(), ctx())
    count = store_of(deps).event_count()
    with pytest.raises(SlugTaken):
        datasets.register_dataset(deps, dataset_body(), ctx())
    with pytest.raises(InvalidInput) as caught:
        datasets.register_dataset(
            deps,
            dataset_body(slug="leaky", source={"kind": "csv", "uri": "https://u:pw@host/x.csv"}),
            ctx(),
        )
    assert [e.field for e in caught.value.errors] == ["source.uri"]
    with pytest.raises(IllegalTransition):
        datasets.unarchive_dataset(deps, "sales-orders", ctx())
    with pytest.raises(InvalidInput):
        datasets.record_dataset_profile(
            deps, "sales-orders", {"row_count": 1, "columns": {"nope": {}}}, ctx()
        )
    with pytest.raises(VersionConflict):
        datasets.archive_dataset(deps, "sales-orders", ctx(expected_version=2))
    with pytest.raises(NotFound):
        datasets.archive_dataset(deps, "no-such-dataset", ctx())
    assert store_of(deps).event_count() == count


def test_a_retried_dataset_command_returns_the_first_result(deps: CommandDeps) -> None:
    first = datasets.register_dataset(deps, dataset_body(), ctx("k1"))
    assert datasets.register_dataset(deps, dataset_body(), ctx("k1")) == first
    archived = datasets.archive_dataset(deps, "sales-orders", ctx("k2"))
    assert datasets.archive_dataset(deps, "sales-orders", ctx("k2")) == archived
    assert versions(deps, first.id) == [1, 2]


# --- documents ----------------------------------------------------------------------------------


def document_of(deps: CommandDeps, ref: str) -> document_domain.Document:
    return load(deps, documents.DOCUMENT, ref)


def test_document_main_path(deps: CommandDeps) -> None:
    dataset_id = datasets.register_dataset(deps, dataset_body(), ctx()).id
    before = store_of(deps).event_count()
    link = {"kind": "dataset", "id": str(dataset_id).upper()}
    result = documents.add_document(
        deps, {"title": "How orders count", "content": "One row per order.", "link": link}, ctx()
    )
    assert result.version == 1
    assert store_of(deps).event_count() == before + 1  # documents have no slug claim
    ref = str(result.id)
    assert document_of(deps, ref).link == {"kind": "dataset", "id": str(dataset_id)}

    assert documents.revise_document(deps, ref, {"title": "Orders"}, ctx()).version == 2
    assert documents.revise_document(deps, ref, {"title": "Orders"}, ctx()).version == 2
    assert documents.retag_document(deps, ref, ["sales", "how-to"], ctx()).version == 3
    assert documents.retag_document(deps, ref, ["how-to", "sales"], ctx()).version == 3
    assert documents.revise_document(deps, ref, {"link": None}, ctx()).version == 4
    assert documents.remove_document(deps, ref, ctx()).version == 5
    assert documents.restore_document(deps, ref, ctx()).version == 6

    document = document_of(deps, ref)
    assert (document.title, document.tags, document.link) == ("Orders", ["how-to", "sales"], None)
    assert document_domain.replay(deps.store.load(result.id)) == document


def test_documents_are_found_by_id_only(deps: CommandDeps) -> None:
    with pytest.raises(NotFound) as caught:
        documents.remove_document(deps, "some-title", ctx())
    assert "slug" not in caught.value.message


def test_a_link_must_name_a_live_tool_or_dataset_by_id(deps: CommandDeps) -> None:
    tool_id = tools.register_tool(deps, tool_body(), ctx()).id
    dataset_id = datasets.register_dataset(deps, dataset_body(), ctx()).id
    uuid_slug = str(uuid4())
    tools.register_tool(deps, tool_body(slug=uuid_slug), ctx())
    count = store_of(deps).event_count()
    bad_links = [
        {"kind": "tool", "id": str(uuid4())},  # nothing
        {"kind": "tool", "id": str(dataset_id)},  # a dataset, not a tool
        {"kind": "dataset", "id": str(tool_id)},
        {"kind": "tool", "id": uuid_slug},  # a tool's slug, not its id
    ]
    for link in bad_links:
        with pytest.raises(InvalidInput) as caught:
            documents.add_document(deps, {"title": "T", "content": "C", "link": link}, ctx())
        assert [e.field for e in caught.value.errors] == ["link.id"], link
    tools.delete_tool(deps, str(tool_id), ctx())
    count += 1
    with pytest.raises(InvalidInput) as caught:
        documents.add_document(
            deps,
            {"title": "T", "content": "C", "link": {"kind": "tool", "id": str(tool_id)}},
            ctx(),
        )
    assert "deleted" in caught.value.errors[0].message
    assert store_of(deps).event_count() == count


def test_revising_the_link_checks_the_new_target(deps: CommandDeps) -> None:
    doc_id = documents.add_document(deps, {"title": "T", "content": "C"}, ctx()).id
    with pytest.raises(InvalidInput):
        documents.revise_document(
            deps, str(doc_id), {"link": {"kind": "tool", "id": str(uuid4())}}, ctx()
        )
    tool_id = tools.register_tool(deps, tool_body(), ctx()).id
    link = {"kind": "tool", "id": str(tool_id)}
    assert documents.revise_document(deps, str(doc_id), {"link": link}, ctx()).version == 2
    assert versions(deps, doc_id) == [1, 2]


# --- bulk import ----------------------------------------------------------------------------------


def items(n: int, prefix: str = "bulk", **overrides: Any) -> list[RegisterTool]:
    return [RegisterTool(**tool_body(slug=f"{prefix}-{i}", **overrides)) for i in range(n)]


def imported_slugs(deps: CommandDeps) -> list[str]:
    return [
        s.event.slug
        for s in store_of(deps).all_events()
        if isinstance(s.event, tool_domain.ToolRegistered)
    ]


def test_import_stores_every_batch(deps: CommandDeps) -> None:
    seen: list[BatchOutcome] = []
    outcomes = import_tools(deps, items(7), ctx(), batch_size=3, on_batch=seen.append)
    assert seen == outcomes
    assert [(o.index, o.size, o.error) for o in outcomes] == [
        (0, 3, None),
        (1, 3, None),
        (2, 1, None),
    ]
    results = [r for o in outcomes for r in o.results]
    assert [r.version for r in results] == [1] * 7
    positions = [r.position for r in results]
    assert positions == sorted(set(positions))
    for i, r in enumerate(results):
        assert tool_of(deps, f"bulk-{i}").id == r.id  # the tool, not its slug claim
    assert imported_slugs(deps) == [f"bulk-{i}" for i in range(7)]


def test_a_bad_item_stops_the_import_at_its_batch(deps: CommandDeps) -> None:
    batch = items(9)
    batch[4] = RegisterTool(**tool_body(slug="bulk-4", input_schema={"type": "no-such-type"}))
    outcomes = import_tools(deps, batch, ctx(), batch_size=3)
    assert [o.index for o in outcomes] == [0, 1]  # batch 2 is never tried
    assert outcomes[0].error is None
    error = outcomes[1].error
    assert isinstance(error, InvalidInput)
    assert [e.field for e in error.errors] == ["tools[4].input_schema"]
    assert outcomes[1].results == []
    assert imported_slugs(deps) == ["bulk-0", "bulk-1", "bulk-2"]


def test_a_bad_item_in_the_first_batch_stores_nothing(deps: CommandDeps) -> None:
    batch = items(5)
    batch[2] = RegisterTool(**tool_body(slug="Bad Slug"))
    outcomes = import_tools(deps, batch, ctx(), batch_size=10)
    assert len(outcomes) == 1
    assert isinstance(outcomes[0].error, InvalidInput)
    assert [e.field for e in outcomes[0].error.errors] == ["tools[2].slug"]
    assert store_of(deps).event_count() == 0


def test_duplicate_slugs_in_a_batch_are_refused_by_field(deps: CommandDeps) -> None:
    batch = items(8)
    batch[6] = RegisterTool(**tool_body(slug="bulk-4"))
    outcomes = import_tools(deps, batch, ctx(), batch_size=4)
    assert outcomes[0].error is None
    error = outcomes[1].error
    assert isinstance(error, InvalidInput)
    assert [(e.field, e.message) for e in error.errors] == [
        ("tools[6].slug", "repeats tools[4].slug")
    ]
    assert imported_slugs(deps) == ["bulk-0", "bulk-1", "bulk-2", "bulk-3"]


def test_a_slug_repeated_in_a_later_batch_or_already_registered_is_taken(
    deps: CommandDeps,
) -> None:
    tools.register_tool(deps, tool_body(slug="existing"), ctx())
    batch = items(6)
    batch[4] = RegisterTool(**tool_body(slug="bulk-1"))
    outcomes = import_tools(deps, batch, ctx(), batch_size=3)
    assert isinstance(outcomes[1].error, SlugTaken)
    assert "bulk-1" in outcomes[1].error.message
    assert imported_slugs(deps) == ["existing", "bulk-0", "bulk-1", "bulk-2"]

    again = import_tools(deps, [RegisterTool(**tool_body(slug="existing"))], ctx(), batch_size=3)
    assert isinstance(again[0].error, SlugTaken)


def test_a_slug_registered_meanwhile_refuses_the_whole_batch(deps: CommandDeps) -> None:
    store = store_of(deps)
    store.before_next_append(lambda: tools.register_tool(deps, tool_body(slug="bulk-1"), ctx()))
    outcomes = import_tools(deps, items(3), ctx(), batch_size=3)
    assert isinstance(outcomes[0].error, SlugTaken)
    assert imported_slugs(deps) == ["bulk-1"]


def test_a_retried_import_returns_the_first_results_and_appends_nothing(
    deps: CommandDeps,
) -> None:
    first = import_tools(deps, items(5), ctx("imp", "h1"), batch_size=2)
    count = store_of(deps).event_count()
    again = import_tools(deps, items(5), ctx("imp", "h1"), batch_size=2)
    assert [o.results for o in again] == [o.results for o in first]
    assert store_of(deps).event_count() == count
    assert {f"imp#batch-{i}" for i in range(3)} <= set(idempotency_of(deps).keys.rows)
    # The key of a whole import is the key of each of its batches: another request is refused.
    with pytest.raises(IdempotencyKeyReused):
        import_tools(deps, items(5, prefix="other"), ctx("imp", "h2"), batch_size=2)
    assert store_of(deps).event_count() == count


def test_imported_secrets_are_sealed(deps: CommandDeps) -> None:
    outcomes = import_tools(deps, items(2, config={"api_token": TOKEN}), ctx(), batch_size=5)
    assert_not_in_clear(deps, TOKEN)
    for result in outcomes[0].results:
        sealed = load(deps, tools.TOOL, str(result.id)).config["api_token"]
        assert sealer_of(deps).unseal(result.id, sealed) == TOKEN


# --- any sequence of tool commands --------------------------------------------------------------


def _run(deps: CommandDeps, name: str, ref: str, arg: Any, context: CommandContext) -> Any:
    if name == "update":
        return tools.update_tool(deps, ref, arg, context)
    handler = {
        "activate": tools.activate_tool,
        "deprecate": tools.deprecate_tool,
        "delete": tools.delete_tool,
        "restore": tools.restore_tool,
    }[name]
    return handler(deps, ref, context)


MODES = ["by_id", "by_slug", "with_key", "stale"]


@settings(
    max_examples=examples(50),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    body=tool_bodies(slugs=slug_core),
    steps=st.lists(st.tuples(commands, st.sampled_from(MODES)), max_size=12),
)
def test_any_command_sequence_replays_to_what_the_handlers_reported(
    body: dict[str, Any], steps: list[tuple[tuple[str, Any], str]]
) -> None:
    deps = fake_deps()
    store = store_of(deps)
    model = ToolModel.registered(body)
    registered = tools.register_tool(deps, body, ctx())
    tool_id, reported = registered.id, registered.version

    for n, ((name, arg), mode) in enumerate(steps):
        ref = body["slug"] if mode == "by_slug" else str(tool_id)
        count = store.event_count()
        if mode == "stale":
            with pytest.raises(VersionConflict):
                _run(deps, name, ref, arg, ctx(expected_version=model.version + 1))
            assert store.event_count() == count
            continue
        context = ctx(f"key-{n}", f"hash-{n}") if mode == "with_key" else ctx()
        expected = model.apply(name, arg)
        try:
            result = _run(deps, name, ref, arg, context)
        except InvalidInput as exc:
            got = Outcome(REFUSED, "invalid_input", exc.errors[0].field)
        except IllegalTransition:
            got = Outcome(REFUSED, "illegal_transition")
        else:
            got = Outcome(ACCEPTED if result.version > reported else NO_CHANGE)
            assert result.id == tool_id
            assert result.version == model.version
            assert result.position == store.position_of(tool_id, result.version)
            reported = result.version
            if mode == "with_key":  # the retry answers the same and stores nothing
                assert _run(deps, name, ref, arg, context) == result
        assert got == expected, (name, arg)
        event(f"{name}: {got.kind}")
        assert store.event_count() == count + (1 if got.kind == ACCEPTED else 0)

    events = store.load(tool_id)
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
    positions = [store.position_of(tool_id, e.originator_version) or 0 for e in events]
    assert 0 not in positions
    assert positions == sorted(set(positions))
    state = tool_domain.replay(events)
    assert state is not None
    assert state.aggregate_version == reported == model.version == len(events)
    assert state.fields() == model.fields
    assert tool_of(deps, body["slug"]) == state
