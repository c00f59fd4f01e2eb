"""Queries over the read models (current state and version history). Each takes a psycopg
connection and returns plain dicts; `snapshot` runs several in one consistent read."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Connection, Cursor
from psycopg.rows import dict_row

from domain.errors import InvalidInput, NotFound
from projections.json_diff import json_diff
from projections.kinds import KINDS, ReadKind
from projections.results import (
    Change,
    ChangePage,
    Diff,
    Item,
    ItemPage,
    VersionEntry,
    VersionPage,
)

SELECT = "t.id, t.aggregate_version, t.position, t.created_at, t.updated_at, t.deleted_at, t.doc"
DEFAULT_SORT = "-updated_at"


@dataclass(frozen=True)
class Listing:
    """What every list query shares: sort (a column, '-' first for descending), keyset cursor,
    page size, tags (all must match), full-text words, and whether deleted rows count."""

    sort: str = DEFAULT_SORT
    cursor: str | None = None
    limit: int = 50
    tags: tuple[str, ...] = ()
    text: str | None = None
    include_deleted: bool = False


@contextmanager
def snapshot(conn: Connection[Any]) -> Iterator[Connection[Any]]:
    """One read-only REPEATABLE READ transaction, so rows and the applied position agree."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn


def _cursor(conn: Connection[Any]) -> Cursor[dict[str, Any]]:
    return conn.cursor(row_factory=dict_row)


def _item(kind: str, row: dict[str, Any]) -> Item:
    fields = dict(row["doc"])
    if "columns" in row:
        fields["columns"] = row["columns"]
    return Item(kind, row["id"], row["aggregate_version"], row["position"], row["created_at"],
                row["updated_at"], row["deleted_at"], fields)  # fmt: skip


def _as_uuid(ref: str) -> UUID | None:
    try:
        return UUID(ref)
    except ValueError:
        return None


def _find(
    cur: Cursor[dict[str, Any]], kind: ReadKind, ref: str, columns: str = "t.id"
) -> dict[str, Any]:
    """The row `ref` names: an id first, then a slug (a slug may look like a UUID)."""
    select = f"SELECT {columns} FROM {kind.table.name} t WHERE "  # noqa: S608
    ident = _as_uuid(ref)
    if ident is not None:
        row = cur.execute(select + "t.id = %s", (ident,)).fetchone()
        if row is not None:
            return row
    if kind.has_slug and "\x00" not in ref:
        row = cur.execute(select + "t.slug = %s", (ref,)).fetchone()
        if row is not None:
            return row
    raise NotFound(kind.name, ref, by_slug=kind.has_slug)


def get_current(conn: Connection[Any], kind: str, ref: str) -> Item:
    """The current state of the tool, dataset or document `ref` (id or slug) names."""
    with _cursor(conn) as cur:
        read_kind = KINDS[kind]
        return _item(kind, _find(cur, read_kind, ref, SELECT + read_kind.table.extra))


# --- lists ----------------------------------------------------------------------------------


def _sort_column(kind: ReadKind, sort: str) -> tuple[str, bool]:
    column = sort.removeprefix("-")
    sorts = kind.table.sorts
    if column not in sorts:
        choices = ", ".join(f"{c}, -{c}" for c in sorts)
        raise InvalidInput.one("sort", f"must be one of {choices}")
    return column, sort.startswith("-")


def encode_cursor(sort: str, key: Any, ident: UUID) -> str:
    value = key.isoformat() if isinstance(key, datetime) else key
    raw = json.dumps([sort, value, str(ident)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, column: str) -> tuple[Any, UUID]:
    """The sort key and id a cursor continues after; it must come from a listing in this sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, key, ident = json.loads(raw)
        if cursor_sort != sort or not isinstance(key, str) or "\x00" in key:
            raise ValueError(cursor_sort)
        value = datetime.fromisoformat(key) if column.endswith("_at") else key
        return value, UUID(ident)
    except (ValueError, TypeError, AttributeError):
        message = f"not a next_cursor of a listing sorted by {sort}"
        raise InvalidInput.one("cursor", message) from None


def _shared_filters(listing: Listing) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if not listing.include_deleted:
        where.append("t.deleted_at IS NULL")
    if listing.tags:
        where.append("t.tags @> %s::text[]")
        params.append(list(listing.tags))
    if listing.text:
        where.append("t.search @@ plainto_tsquery('simple', %s)")
        params.append(listing.text)
    return where, params


def _page(
    conn: Connection[Any], kind: ReadKind, listing: Listing, where: list[str], params: list[Any]
) -> ItemPage:
    """One page in keyset order (sort column, then id): stable while rows are added."""
    table = kind.table
    column, descending = _sort_column(kind, listing.sort)
    if listing.cursor:
        key, ident = decode_cursor(listing.cursor, listing.sort, column)
        where.append(f"(t.{column}, t.id) {'<' if descending else '>'} (%s, %s)")
        params += [key, ident]
    order = "DESC" if descending else "ASC"
    sql = (
        f"SELECT {SELECT}{table.extra}, t.{column} AS sort_key FROM {table.name} t "  # noqa: S608
        f"WHERE {' AND '.join(where) or 'true'} "
        f"ORDER BY t.{column} {order}, t.id {order} LIMIT %s"
    )
    with _cursor(conn) as cur:
        rows = cur.execute(sql, [*params, listing.limit + 1]).fetchall()
    next_cursor = None
    if len(rows) > listing.limit:
        rows = rows[: listing.limit]
        next_cursor = encode_cursor(listing.sort, rows[-1]["sort_key"], rows[-1]["id"])
    return ItemPage([_item(kind.name, r) for r in rows], next_cursor)


def _equal(where: list[str], params: list[Any], column: str, value: Any) -> None:
    if value is not None:
        where.append(f"t.{column} = %s")
        params.append(value)


def list_tools(
    conn: Connection[Any],
    listing: Listing,
    *,
    category: str | None = None,
    status: str | None = None,
    include_deprecated: bool = True,
) -> ItemPage:
    """`include_deprecated=False` leaves deprecated tools out unless a status is asked for."""
    where, params = _shared_filters(listing)
    _equal(where, params, "category", category)
    _equal(where, params, "status", status)
    if status is None and not include_deprecated:
        where.append("t.status <> 'deprecated'")
    return _page(conn, KINDS["tool"], listing, where, params)


def list_datasets(
    conn: Connection[Any],
    listing: Listing,
    *,
    owner: str | None = None,
    status: str | None = None,
) -> ItemPage:
    where, params = _shared_filters(listing)
    _equal(where, params, "owner", owner)
    _equal(where, params, "status", status)
    return _page(conn, KINDS["dataset"], listing, where, params)


def list_documents(
    conn: Connection[Any], listing: Listing, *, linked_to: UUID | None = None
) -> ItemPage:
    where, params = _shared_filters(listing)
    _equal(where, params, "link_id", linked_to)
    return _page(conn, KINDS["document"], listing, where, params)


# --- history --------------------------------------------------------------------------------

# The deletion time at a version: when the latest delete at or before it happened.
HISTORIC = """SELECT h.aggregate_id AS id, h.version AS aggregate_version, h.position,
    h.occurred_at AS updated_at, h.snapshot AS doc,
    (SELECT f.occurred_at FROM rm_history f
        WHERE f.aggregate_id = h.aggregate_id AND f.version = 1) AS created_at,
    CASE WHEN (h.snapshot ->> 'deleted')::boolean THEN
        (SELECT d.occurred_at FROM rm_history d
            WHERE d.aggregate_id = h.aggregate_id AND d.version <= h.version
            AND d.event_type = ANY(%(deleting)s)
            ORDER BY d.version DESC LIMIT 1)
    END AS deleted_at
FROM rm_history h
WHERE h.aggregate_id = %(id)s AND h.kind = %(kind)s
    AND (%(version)s::bigint IS NULL OR h.version <= %(version)s::bigint)
    AND (%(as_of)s::timestamptz IS NULL OR h.occurred_at <= %(as_of)s::timestamptz)
ORDER BY h.version DESC LIMIT 1"""


def get_historic(
    conn: Connection[Any],
    kind: str,
    ref: str,
    *,
    as_of: datetime | None = None,
    at_version: int | None = None,
) -> Item:
    """The state as of a time and/or at a version (both inclusive), from the version history."""
    read_kind = KINDS[kind]
    with _cursor(conn) as cur:
        ident = _find(cur, read_kind, ref)["id"]
        args = {"id": ident, "kind": kind, "version": at_version, "as_of": as_of,
                "deleting": list(read_kind.deleted_by)}  # fmt: skip
        row = cur.execute(HISTORIC, args).fetchone()
    by_slug = read_kind.has_slug
    if row is None and as_of is not None:
        raise NotFound(kind, f"{ref} as of {as_of.isoformat()}", by_slug=by_slug)
    if row is None or (at_version is not None and row["aggregate_version"] != at_version):
        raise NotFound(kind, f"{ref} at version {at_version}", by_slug=by_slug)
    return _item(kind, row)


VERSION_FIELDS = (
    "version, event_type, actor, reason, correlation_id, causation_id, occurred_at, position, patch"
)


def list_versions(
    conn: Connection[Any],
    kind: str,
    ref: str,
    *,
    after_version: int = 0,
    limit: int = 50,
    include_snapshot: bool = False,
) -> VersionPage:
    """One page of versions in order, each with its JSON Patch from the one before."""
    fields = VERSION_FIELDS + (", snapshot" if include_snapshot else "")
    with _cursor(conn) as cur:
        ident = _find(cur, KINDS[kind], ref)["id"]
        rows = cur.execute(
            f"SELECT {fields} FROM rm_history WHERE aggregate_id = %s AND version > %s "  # noqa: S608
            "ORDER BY version LIMIT %s",
            (ident, after_version, limit + 1),
        ).fetchall()
    more, rows = len(rows) > limit, rows[:limit]
    next_after = rows[-1]["version"] if more and rows else None
    return VersionPage(ident, [VersionEntry(**r) for r in rows], next_after)


class UnknownVersion(NotFound):
    def __init__(self, kind: str, ref: str, field: str, version: int) -> None:
        NotFound.__init__(self, kind, ref)
        self.message = f"the {kind} '{ref}' has no version {version}"
        self.field = field


def diff_versions(
    conn: Connection[Any], kind: str, ref: str, from_version: int, to_version: int
) -> Diff:
    """The RFC 6902 JSON Patch that turns the `from` version's snapshot into the `to` one's."""
    if from_version > to_version:
        raise InvalidInput.one("from", f"must not be after 'to' ({to_version})")
    with _cursor(conn) as cur:
        ident = _find(cur, KINDS[kind], ref)["id"]
        rows = cur.execute(
            "SELECT version, snapshot FROM rm_history WHERE aggregate_id = %s "
            "AND version = ANY(%s::bigint[])",
            (ident, [from_version, to_version]),
        ).fetchall()
    snapshots = {r["version"]: r["snapshot"] for r in rows}
    for field, version in (("from", from_version), ("to", to_version)):
        if version not in snapshots:
            raise UnknownVersion(kind, ref, field, version)
    patch = json_diff(snapshots[from_version], snapshots[to_version])
    return Diff(ident, from_version, to_version, patch)


# --- the change feed and search details ----------------------------------------------------

CHANGES = """SELECT h.position, h.kind, h.aggregate_id AS id, h.version, h.event_type,
    h.occurred_at, h.actor, h.reason,
    coalesce(h.snapshot ->> 'slug', h.snapshot ->> 'title') AS ref
FROM rm_history h
WHERE h.position > %s AND h.position <= %s
ORDER BY h.position
LIMIT %s"""


def changes_since(conn: Connection[Any], after: int, applied: int, limit: int) -> ChangePage:
    """The version-history rows after store position `after`, in position order, up to the
    applied position (rows beyond it may be in one read model and not yet in another). The
    caller continues from `next_position`; no change is skipped or repeated."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(CHANGES, (after, applied, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_position = int(rows[-1]["position"]) if more else max(after, applied)
    return ChangePage([Change(**r) for r in rows], next_position, more)


def tool_extras(conn: Connection[Any], ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Input schema and semver of the given tools (by id), from the current state."""
    wanted = [UUID(i) for i in ids]
    if not wanted:
        return {}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, doc -> 'input_schema' AS input_schema, doc ->> 'version' AS semver "
            "FROM rm_tools WHERE id = ANY(%s)",
            (wanted,),
        ).fetchall()
    return {str(r["id"]): r for r in rows}
