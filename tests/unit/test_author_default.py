"""A tool registered without an author gets who registered it: the key's name, the OIDC
subject, or the actor; one that names its author keeps it."""

from __future__ import annotations

import pytest

from commands import tools
from commands.common import load
from commands.context import CommandContext
from commands.import_tools import import_tools
from commands.inputs import RegisterTool
from commands.ports import CommandDeps, IdempotencyRequest
from tests.unit.fakes import fake_deps

BODY = {
    "slug": "weather",
    "name": "Weather",
    "description": "Current weather",
    "category": "weather",
    "input_schema": {"type": "object"},
    "version": "1.0.0",
}


@pytest.fixture
def deps() -> CommandDeps:
    return fake_deps()


def test_the_acting_name_is_the_author(deps: CommandDeps) -> None:
    ctx = CommandContext(actor="key:k1:ci-bot", correlation_id="c", author="ci-bot")
    tools.register_tool(deps, RegisterTool(**BODY).given(), ctx)
    assert load(deps, tools.TOOL, "weather").author == "ci-bot"


def test_without_a_name_the_actor_is_the_author(deps: CommandDeps) -> None:
    tools.register_tool(deps, BODY, CommandContext(actor="cli-import", correlation_id="c"))
    assert load(deps, tools.TOOL, "weather").author == "cli-import"


def test_a_given_author_is_kept(deps: CommandDeps) -> None:
    ctx = CommandContext(actor="key:k1:ci-bot", correlation_id="c", author="ci-bot")
    tools.register_tool(deps, {**BODY, "author": "platform-team"}, ctx)
    assert load(deps, tools.TOOL, "weather").author == "platform-team"


def test_imports_default_the_author_too(deps: CommandDeps) -> None:
    ctx = CommandContext(
        actor="oidc:u-42:jane",
        correlation_id="c",
        author="u-42",
        idempotency=IdempotencyRequest("k", "h"),
    )
    items = [RegisterTool(**{**BODY, "slug": f"t{i}"}) for i in range(3)]
    outcomes = import_tools(deps, items, ctx, batch_size=2)
    assert [o.error for o in outcomes] == [None, None]
    assert {load(deps, tools.TOOL, f"t{i}").author for i in range(3)} == {"u-42"}
