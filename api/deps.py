"""Request-scoped dependencies: the container's command deps, the command context, and the
bounded wait that lets a read see the caller's own writes (`min_position`)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from commands.context import CommandContext
from commands.ports import CommandDeps, IdempotencyRequest
from infra.container import Container


# Plain `def` dependencies run in the thread pool; these are trivial, so `async def` keeps
# them on the event loop and saves two thread hand-offs per request.
async def container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


async def command_deps(c: Annotated[Container, Depends(container)]) -> CommandDeps:
    return c.deps


def _expected_version(if_match: str | None, query_value: int | None) -> int | None:
    if if_match is None:
        return query_value
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ApiError(
            400,
            "invalid_header",
            'If-Match must be the version number, e.g. If-Match: "3"',
            [{"field": "If-Match", "message": "not a version number"}],
        )
    return int(value)


async def command_context(  # noqa: PLR0917 - FastAPI reads the signature
    request: Request,
    if_match: Annotated[str | None, Header(description="Expected version; stale → 412")] = None,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Retries with this key return the first result"),
    ] = None,
    x_reason: Annotated[
        str | None, Header(max_length=2000, description="Why the change is made (audit)")
    ] = None,
    x_actor: Annotated[
        str | None,
        Header(max_length=200, description="Who makes the change (only when auth is off)"),
    ] = None,
    expected_version: Annotated[
        int | None, Query(ge=0, description="Expected version; mismatch → 409")
    ] = None,
) -> CommandContext:
    idempotency = None
    if idempotency_key:
        body = await request.body()
        digest = hashlib.sha256(
            request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
        ).hexdigest()
        idempotency = IdempotencyRequest(idempotency_key, digest)
    # The acting key is the actor; X-Actor is honoured only when auth is off (no key).
    principal = getattr(request.state, "principal", None)
    return CommandContext(
        actor=principal.actor if principal and principal.id else x_actor or "anonymous",
        correlation_id=request.state.request_id,
        reason=x_reason,
        expected_version=_expected_version(if_match, expected_version),
        idempotency=idempotency,
    )


Deps = Annotated[CommandDeps, Depends(command_deps)]
Ctx = Annotated[CommandContext, Depends(command_context)]
Cont = Annotated[Container, Depends(container)]


POLL_SECONDS = 0.02
# Positions are Postgres bigints; a larger number is refused as input, not a database error.
MAX_POSITION = 2**63 - 1
MinPosition = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_POSITION,
        description="Wait (bounded) until the read side has reached this store position, e.g. "
        "the `position` of your last write; 503 if it does not in time",
    ),
]


async def _wait_for(reached: Callable[[], int], wanted: int, timeout: float) -> int:
    """Polls `reached` off the event loop (no connection is held while sleeping)."""
    deadline = time.monotonic() + timeout
    while True:
        position = await run_in_threadpool(reached)
        if position >= wanted or time.monotonic() >= deadline:
            return position
        await asyncio.sleep(POLL_SECONDS)


def projections_position(c: Container) -> int:
    with c.read_side.connection() as conn:
        return c.read_side.applied_position(conn)


async def wait_for_projections(
    c: Annotated[Container, Depends(container)], min_position: MinPosition = None
) -> None:
    if min_position is None:
        return
    timeout = c.settings.read_wait_seconds
    applied = await _wait_for(lambda: projections_position(c), min_position, timeout)
    if applied < min_position:
        raise ApiError(
            503,
            "projection_behind",
            f"the read models have applied position {applied}, not yet the asked "
            f"min_position {min_position} (waited {timeout:g} s); retry shortly",
            [{"field": "min_position", "message": f"applied position is {applied}"}],
        )


async def wait_for_store(
    c: Annotated[Container, Depends(container)], min_position: MinPosition = None
) -> None:
    """The audit trail reads the event store itself: only a position beyond its head waits."""
    if min_position is None:
        return
    timeout = c.settings.read_wait_seconds
    head = await _wait_for(c.store.head, min_position, timeout)
    if head < min_position:
        raise ApiError(
            503,
            "position_not_reached",
            f"the event store's last position is {head}, not yet the asked min_position "
            f"{min_position} (waited {timeout:g} s)",
            [{"field": "min_position", "message": f"the store's last position is {head}"}],
        )
