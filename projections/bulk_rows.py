"""Rows sent to Postgres in bulk: a batch travels as one JSON array and Postgres turns it into
typed rows (`json_populate_recordset`), one statement whatever the batch size. `json`, not
`jsonb`, so the key order of a nested document is kept exactly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from psycopg import Cursor


def dumps(value: Any) -> bytes:
    """orjson, several times faster, or the standard library for what orjson refuses: integers
    beyond 64 bits, which JSON and the registry allow. Times and ids as text either way."""
    try:
        return orjson.dumps(value)
    except TypeError:
        text = json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)
        return text.encode()


def to_json(value: Any) -> str:
    return dumps(value).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def insert_json(
    cur: Cursor[Any], table: str, rows: Sequence[dict[str, Any]], on_conflict: str = ""
) -> None:
    """Inserts rows that all have the same keys, in one statement."""
    if not rows:
        return
    names = ", ".join(rows[0])
    cur.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} "  # noqa: S608 - names from the registry
        f"FROM json_populate_recordset(NULL::{table}, %s::json) {on_conflict}",
        (to_json(rows),),
    )


def upsert_json(
    cur: Cursor[Any], table: str, rows: Sequence[dict[str, Any]], keep: Sequence[str] = ("id",)
) -> None:
    """Inserts or updates rows by id (unique within `rows`), leaving the `keep` columns as
    they were on an update."""
    if not rows:
        return
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in rows[0] if c not in keep)
    insert_json(cur, table, rows, f"ON CONFLICT (id) DO UPDATE SET {updates}")
