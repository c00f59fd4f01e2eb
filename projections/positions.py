"""How far the read models have got: the event-store position every read projection has applied.
Reads wait on it for `min_position` and report it as `X-Ledger-Position`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row

READ_MODELS = ("current_state", "history")
LOG_SOURCE = "log"


def applied_position(conn: Connection[Any], kafka_prefix: str | None = None) -> int:
    """The event-store position every read model has applied. The feed is configuration, not a
    guess: with `kafka_prefix` the projections consume that relay's topics, otherwise they
    follow the log."""
    if kafka_prefix is not None:
        return kafka_applied_position(conn, kafka_prefix)
    return log_position(conn, READ_MODELS)


def log_position(conn: Connection[Any], projections: Sequence[str]) -> int:
    """The lowest 'log' checkpoint of the given projections (0 if one has none)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT projection, position FROM projection_checkpoints "
            "WHERE source = %s AND projection = ANY(%s)",
            (LOG_SOURCE, list(projections)),
        ).fetchall()
    reached = {r["projection"]: int(r["position"]) for r in rows}
    return min((reached.get(name, 0) for name in projections), default=0)


# The relay's topics the read models consume, after '<prefix>.'; must match
# infra.kafka.topics.KIND_TOPICS (a test checks). The dead-letter topic is not consumed.
PROJECTED_TOPICS = ("tools.v1", "datasets.v1", "documents.v1")

# One statement, so the relay's checkpoint and its per-partition positions are one snapshot
# (they are written in one transaction). The relay row is the given prefix's, else the one
# written last: the active relay's.
_KAFKA_PROGRESS = """
WITH relay AS (
    SELECT name, position FROM relay_checkpoints
    WHERE %(prefix)s::text IS NULL OR name = %(prefix)s
    ORDER BY updated_at DESC LIMIT 1
)
SELECT relay.position AS relay, m.projection, p.position AS published, c.position AS applied
FROM relay
CROSS JOIN unnest(%(models)s::text[]) AS m (projection)
LEFT JOIN relay_partitions AS p
    ON p.topic IN (SELECT relay.name || '.' || t FROM unnest(%(topics)s::text[]) AS t)
LEFT JOIN projection_checkpoints AS c
    ON c.projection = m.projection AND c.source = p.topic || ':' || p.partition
"""


def kafka_applied_position(conn: Connection[Any], prefix: str | None = None) -> int:
    """The applied position when the projections consume Kafka. The relay has published every
    event up to R; within a partition events arrive in position order, so a projection whose
    checkpoint there is below the last position published there has applied everything up to
    that checkpoint, and one at or above it has applied all the partition holds:
    W = min(R, checkpoints of the partitions not caught up), the lowest over the read models."""
    with conn.cursor(row_factory=dict_row) as cur:
        exists = cur.execute("SELECT to_regclass('relay_partitions') IS NOT NULL AS t").fetchone()
        if not exists or not exists["t"]:
            return 0
        rows = cur.execute(
            _KAFKA_PROGRESS,
            {"prefix": prefix, "models": list(READ_MODELS), "topics": list(PROJECTED_TOPICS)},
        ).fetchall()
    if not rows:
        return 0  # nothing relayed yet
    behind = [
        int(r["applied"] or 0)
        for r in rows
        if r["published"] is not None and int(r["applied"] or 0) < int(r["published"])
    ]
    return min([int(rows[0]["relay"]), *behind])
