"""Tables the project owns beside the event store's own. Idempotent: run on every start."""

from __future__ import annotations

from infra.api_keys import DDL as API_KEY_TABLES
from infra.event_store import IDEMPOTENCY_TABLE, LedgerApplication
from projections.analytics_tables import ANALYTICS as ANALYTICS_TABLES
from projections.tables import ALL as READ_MODEL_TABLES

STATEMENTS = [
    f"""CREATE TABLE IF NOT EXISTS {IDEMPOTENCY_TABLE} (
        key text PRIMARY KEY,
        request_hash text NOT NULL,
        results jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_data_keys (
        aggregate_id uuid PRIMARY KEY,
        wrapped_key bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    # The relay's checkpoint (one row per topic prefix) and, per Kafka partition, the last
    # store position published there: the read side measures its catch-up against it.
    """CREATE TABLE IF NOT EXISTS relay_checkpoints (
        name text PRIMARY KEY,
        position bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS relay_partitions (
        topic text NOT NULL,
        partition integer NOT NULL,
        position bigint NOT NULL,
        kafka_offset bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (topic, partition)
    )""",
]


def migrate(app: LedgerApplication) -> None:
    """Creates the event store's tables (via the recorder) and ours."""
    recorder = app.recorder
    recorder.create_table()  # type: ignore[attr-defined]
    with recorder.datastore.transaction(commit=True) as curs:  # type: ignore[attr-defined]
        # Concurrent first starts would race on CREATE TABLE; serialise them.
        curs.execute("SELECT pg_advisory_xact_lock(7362841)")
        for statement in [*STATEMENTS, *READ_MODEL_TABLES, *ANALYTICS_TABLES, *API_KEY_TABLES]:
            curs.execute(statement)
