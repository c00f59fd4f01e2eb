"""Request-scoped dependencies: the container's command deps, the command context, and the
bounded wait that lets a read see the caller's own writes (`min_position`)."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from api.errors import ApiError
from commands.context import CommandContext
from commands.ports import CommandDeps, IdempotencyRequest
from infra.container import Container
from infra.postgres.reads import NotReached
from infra.security.api_keys import Principal
from projections.read_args import MAX_INT


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
    principal: Principal | None = getattr(request.state, "principal", None)
    actor, author = x_actor or "anonymous", None
    if principal is not None and principal.id is not None:
        actor = principal.actor
        author = principal.id if principal.kind == "oidc" else principal.name
    return CommandContext(
        actor=actor,
        author=author,
        correlation_id=request.state.request_id,
        reason=x_reason,
        expected_version=_expected_version(if_match, expected_version),
        idempotency=idempotency,
    )


Deps = Annotated[CommandDeps, Depends(command_deps)]
Ctx = Annotated[CommandContext, Depends(command_context)]
Cont = Annotated[Container, Depends(container)]


MAX_POSITION = MAX_INT
MinPosition = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_POSITION,
        description="Wait (bounded) until the read side has reached this store position, e.g. "
        "the `position` of your last write; 503 if it does not in time",
    ),
]


async def wait_for_projections(
    c: Annotated[Container, Depends(container)], min_position: MinPosition = None
) -> None:
    try:
        await c.reads.wait_async(min_position)
    except NotReached as exc:
        message = f"applied position is {exc.reached}"
        details = [{"field": "min_position", "message": message}]
        raise ApiError(503, "projection_behind", exc.message, details) from None


async def wait_for_store(
    c: Annotated[Container, Depends(container)], min_position: MinPosition = None
) -> None:
    """The audit trail reads the event store itself: only a position beyond its head waits."""
    try:
        await c.reads.wait_async(min_position, store=True)
    except NotReached as exc:
        message = f"the store's last position is {exc.reached}"
        details = [{"field": "min_position", "message": message}]
        raise ApiError(503, "position_not_reached", exc.message, details) from None
