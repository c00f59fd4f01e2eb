"""API keys: admin data beside the event store (not registry events). Only a hash of each key's
secret is stored.

A key reads `mlk_<id>_<secret>`: `id` (12 hex digits) finds the row, `secret` (256 random bits,
url-safe base64) is checked against the stored SHA-256 with a constant-time comparison. A fast
hash is enough here: the secret is a uniformly random 256-bit token, not a password, so there is
nothing to guess from a leaked hash, while a slow KDF (argon2/scrypt) would cost tens of
milliseconds of CPU on every request and make bad keys a cheap way to load the server."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import psycopg
import structlog

Role = Literal["viewer", "editor", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
RANK = {role: rank for rank, role in enumerate(ROLES)}
PREFIX = "mlk"
TABLE = "ledger_api_keys"
# last_used_at is written at most this often per key (a write per request would cost more
# than the request).
TOUCH_EVERY_SECONDS = 60.0


log = structlog.get_logger("api_keys")
Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


@dataclass(frozen=True)
class Principal:
    """Who makes a request: a key (id, name, role), or the built-in admin when auth is off."""

    id: str | None
    name: str
    role: Role
    kind: str = "key"  # key, or oidc (a verified JWT's subject)

    @property
    def actor(self) -> str:
        """Recorded as the `actor` of every event this principal's commands append."""
        return f"{self.kind}:{self.id}:{self.name}" if self.id else self.name

    def allows(self, needed: Role) -> bool:
        return RANK[self.role] >= RANK[needed]


ANONYMOUS = Principal(None, "anonymous", "admin", "anonymous")


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "created_at": iso(self.created_at),
            "revoked_at": iso(self.revoked_at),
            "last_used_at": iso(self.last_used_at),
        }


class KeyError_(Exception):
    """A key operation was refused (bad role or name, unknown key)."""


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed `mlk_<id>_<secret>`, else None."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != 12 or not secret or len(secret) > 200:
        return None
    if any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id, secret


class ApiKeys:
    def __init__(self, connect: Connect) -> None:
        self.connect = connect
        self._touched: dict[str, float] = {}

    def create(self, name: str, role: str, *, by: str = "cli") -> tuple[KeyInfo, str]:
        """The new key's row and the key itself (shown once; only its hash is kept)."""
        name = name.strip()
        if role not in ROLES:
            raise KeyError_(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        if not name or len(name) > 200 or any(ord(c) < 32 for c in name) or ":" in name:
            raise KeyError_("the name must be 1-200 printable characters without ':'")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self.connect() as conn:
            row = conn.execute(
                "INSERT INTO ledger_api_keys (id, name, role, secret_sha256) "
                "VALUES (%s, %s, %s, %s) RETURNING *",
                (key_id, name, role, _digest(secret)),
            ).fetchone()
        info = _info(row)
        log.info("api_key_created", key_id=key_id, key_name=name, role=role, by=by)
        return info, f"{PREFIX}_{key_id}_{secret}"

    def list(self, *, include_revoked: bool = True) -> list[KeyInfo]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM ledger_api_keys WHERE %s OR revoked_at IS NULL "
                "ORDER BY created_at, id",
                (include_revoked,),
            ).fetchall()
        return [_info(r) for r in rows]

    def revoke(self, key_id: str, *, by: str = "cli") -> KeyInfo:
        """Revokes the key (at once, for every process); revoking twice keeps the first time."""
        with self.connect() as conn:
            row = conn.execute(
                "UPDATE ledger_api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s "
                "RETURNING *",
                (key_id,),
            ).fetchone()
        if row is None:
            raise KeyError_(f"no API key with id {key_id!r}")
        info = _info(row)
        log.info("api_key_revoked", key_id=key_id, key_name=info.name, role=info.role, by=by)
        return info

    def verify(self, token: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown, wrong or revoked key."""
        parsed = parse(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        with self.connect() as conn:
            row = conn.execute(
                "SELECT name, role, secret_sha256, revoked_at FROM ledger_api_keys WHERE id = %s",
                (key_id,),
            ).fetchone()
            if row is None:
                _digest(secret)  # the same work as a known id
                return None
            if not hmac.compare_digest(bytes(row["secret_sha256"]), _digest(secret)):
                return None
            if row["revoked_at"] is not None:
                return None
            self._touch(conn, key_id)
        return Principal(key_id, row["name"], row["role"])

    def _touch(self, conn: psycopg.Connection[Any], key_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(key_id, -TOUCH_EVERY_SECONDS) < TOUCH_EVERY_SECONDS:
            return
        self._touched[key_id] = now
        conn.execute("UPDATE ledger_api_keys SET last_used_at = now() WHERE id = %s", (key_id,))


def _info(row: Any) -> KeyInfo:
    return KeyInfo(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def key_store(read_side: Any) -> ApiKeys:
    """Keys over the read side's connections (dict rows, autocommit, from the store's pool)."""
    return ApiKeys(read_side.connection)
