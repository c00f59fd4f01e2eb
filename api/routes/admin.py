"""/api/v1/admin: API keys, the read side's status and its dead letters (admin role only).

Keys are admin data beside the event store, not registry events; every create and revoke is
logged (without the secret). There is no rebuild route: a rebuild drops and refills the read
models for minutes while the projector keeps writing them; run `mcp-ledger rebuild` as a job
instead (docs/operations.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import Cont
from api.errors import ApiError
from api.security import require
from infra.security.api_keys import KeyError_, Principal, key_store
from projections.read_args import NO_NUL

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require("admin"))])
Admin = Annotated[Principal, Depends(require("admin"))]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="The key's id")]


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="Who or what uses the key")
    role: Literal["viewer", "editor", "admin"]


class KeyOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: str
    revoked_at: str | None
    last_used_at: str | None


class CreatedKey(KeyOut):
    key: str = Field(description="The key itself: shown once, only its hash is stored")


class KeyList(BaseModel):
    items: list[KeyOut]


@router.post("/keys", status_code=201, response_model=CreatedKey)
def create_key(body: NewKey, c: Cont, admin: Admin) -> dict[str, Any]:
    """Creates an API key and answers it once (send it as `Authorization: Bearer <key>`)."""
    try:
        info, key = key_store(c.read_side).create(body.name, body.role, by=admin.actor)
    except KeyError_ as exc:
        raise ApiError(
            422, "invalid_input", str(exc), [{"field": "name", "message": str(exc)}]
        ) from None
    return {**info.to_json(), "key": key}


@router.get("/keys", response_model=KeyList)
def list_keys(
    c: Cont, include_revoked: Annotated[bool, Query(description="Also revoked keys")] = True
) -> dict[str, Any]:
    """Every key's id, name, role and times; never a secret."""
    keys = key_store(c.read_side).list(include_revoked=include_revoked)
    return {"items": [k.to_json() for k in keys]}


@router.delete("/keys/{key_id}", response_model=KeyOut)
def revoke_key(key_id: KeyId, c: Cont, admin: Admin) -> dict[str, Any]:
    """Revokes a key at once for every process (revoking again changes nothing)."""
    try:
        return key_store(c.read_side).revoke(key_id, by=admin.actor).to_json()
    except KeyError_ as exc:
        raise ApiError(404, "not_found", str(exc)) from None


@router.get("/status")
def status(c: Cont) -> dict[str, Any]:
    """Store head, relay position, each projection's position and lag, dead letters, and the
    vector index (as `mcp-ledger status --json`)."""
    with c.read_side.connection() as conn:
        return c.read_side.status(conn)


class RetryOut(BaseModel):
    applied: int
    dead_lettered: int


@router.post("/dlq/retry", response_model=RetryOut)
async def retry_dead_letters(
    c: Cont,
    projection: Annotated[
        str | None,
        Query(max_length=100, pattern=NO_NUL, description="Only this projection's dead letters"),
    ] = None,
) -> dict[str, Any]:
    """Re-applies dead-lettered events (and those parked behind them) in order, as
    `mcp-ledger dlq retry`."""

    def retry() -> Any:
        with c.read_side.connection() as conn:
            return c.read_side.runner.retry_dead_letters(conn, projection)

    outcome = await run_in_threadpool(retry)
    return {"applied": outcome.applied, "dead_lettered": outcome.dead_lettered}
