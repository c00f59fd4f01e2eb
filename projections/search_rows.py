"""Keeps `rm_search` (the lexical index) and the vector outbox in step with the current state.
Called by the current-state writers inside their transaction, so search can never see a state
the current-state tables do not have, and the vector indexer is told of every change exactly
when it commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Cursor

from projections.bulk_rows import to_json
from projections.kinds import KINDS
from projections.kinds.base import Written

# One round trip for a batch of items: upsert their units, drop chunks past each item's new
# count, and mark each for the vector indexer. The rows travel as JSON arrays (bulk_rows).
_WRITE = """
WITH items AS (
    SELECT * FROM json_to_recordset(%(items)s::json)
        AS i (kind text, id uuid, version int, position bigint, count int)
), units AS (
    INSERT INTO rm_search (kind, id, chunk, slug, name, description, heading, body, status,
        category, tags, owner, link_id, deleted, version, position)
    SELECT kind, id, chunk, slug, name, description, heading, body, status, category, tags,
        owner, link_id, deleted, version, position
    FROM json_populate_recordset(NULL::rm_search, %(units)s::json)
    ON CONFLICT (kind, id, chunk) DO UPDATE SET slug = EXCLUDED.slug, name = EXCLUDED.name,
        description = EXCLUDED.description, heading = EXCLUDED.heading, body = EXCLUDED.body,
        status = EXCLUDED.status, category = EXCLUDED.category, tags = EXCLUDED.tags,
        owner = EXCLUDED.owner, link_id = EXCLUDED.link_id, deleted = EXCLUDED.deleted,
        version = EXCLUDED.version, position = EXCLUDED.position
), stale AS (
    DELETE FROM rm_search s USING items i
    WHERE s.kind = i.kind AND s.id = i.id AND s.chunk >= i.count
)
INSERT INTO vector_outbox (id, kind, version, position)
SELECT id, kind, version, position FROM items
ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, position = EXCLUDED.position"""


def write_search_rows(cur: Cursor[Any], kind: str, written: Sequence[Written]) -> None:
    """The search units of each written aggregate of `kind` (ids unique), in one statement."""
    read_kind = KINDS[kind]
    items: list[dict[str, Any]] = []
    units: list[dict[str, Any]] = []
    for w in written:
        state = w.state
        doc = {"slug": getattr(state, "slug", None), **state.fields()}
        item = {**read_kind.search_fields(doc), "kind": kind, "id": state.id,
                "tags": list(doc.get("tags") or []), "deleted": w.deleted is not None,
                "version": state.aggregate_version, "position": w.applied.position}  # fmt: skip
        chunks = read_kind.units(doc)
        units.extend({**item, "chunk": u.chunk, "heading": u.heading, "body": u.text}
                     for u in chunks)  # fmt: skip
        items.append({"kind": kind, "id": state.id, "version": item["version"],
                      "position": item["position"], "count": len(chunks)})  # fmt: skip
    if items:
        cur.execute(_WRITE, {"items": to_json(items), "units": to_json(units)})
