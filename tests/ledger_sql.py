"""Direct reads of the event store's table, for tests that check what was really stored."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

REGISTERED = "domain.tool:ToolRegistered"
SLUG_CLAIMED = "domain.slug_index:SlugClaimed"


def connect(database_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(database_url, autocommit=True)


def rows_of(conn: psycopg.Connection[Any], aggregate_id: UUID | str) -> list[tuple[int, str, int]]:
    """(version, topic, position) of every stored event of one aggregate, in version order."""
    rows = conn.execute(
        "SELECT originator_version, topic, notification_id FROM ledger_events "
        "WHERE originator_id = %s ORDER BY originator_version",
        (UUID(str(aggregate_id)),),
    ).fetchall()
    return [(int(v), str(t), int(p)) for v, t, p in rows]


def count_topic_with_slug(conn: psycopg.Connection[Any], topic: str, slug: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic = %s "
        "AND convert_from(state, 'UTF8')::jsonb ->> 'slug' = %s",
        (topic, slug),
    ).fetchone()
    assert row is not None
    return int(row[0])


def registrations_by_slug(conn: psycopg.Connection[Any], prefix: str) -> dict[str, list[UUID]]:
    """Every stored ToolRegistered whose slug starts with `prefix`: slug → tool ids."""
    rows = conn.execute(
        "SELECT convert_from(state, 'UTF8')::jsonb ->> 'slug', originator_id FROM ledger_events "
        "WHERE topic = %s AND convert_from(state, 'UTF8')::jsonb ->> 'slug' LIKE %s",
        (REGISTERED, prefix + "%"),
    ).fetchall()
    out: dict[str, list[UUID]] = {}
    for slug, tool_id in rows:
        out.setdefault(slug, []).append(tool_id)
    return out


def head(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
    assert row is not None
    return int(row[0])


def event_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
    assert row is not None
    return int(row[0])
