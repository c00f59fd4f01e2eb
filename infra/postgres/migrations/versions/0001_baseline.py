"""The schema of release 0.1.0: the event store, the project's own tables, the read models.

Written with IF NOT EXISTS, so a database created by 0.1.0 (before migrations were versioned)
upgrades in place with every row kept. Frozen: later changes are later revisions.

Read-model documents (`doc`, `snapshot`, `patch`) are `json`, not `jsonb`: jsonb reorders object
keys and rewrites numbers, and a tool's input schema must come back exactly as registered.
Usage analytics: `usage_stats` holds one row per tumbling window ('1m' or '1h'), tool and client
(exact sum/min/max plus fixed log-spaced bucket counts, so rows add up into longer spans);
`usage_seen` the ids of usage events already counted (dedupe, pruned after the late limit);
`usage_meta` the database's Redis cache namespace, so a fresh database never reads another's
cached windows.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The event store, as eventsourcing 9.5's Postgres recorder creates it (ledger_ prefix).
EVENT_STORE = [
    """CREATE TABLE IF NOT EXISTS ledger_events (
        originator_id uuid NOT NULL,
        originator_version bigint NOT NULL,
        topic text,
        state bytea,
        notification_id bigserial,
        PRIMARY KEY (originator_id, originator_version)
    ) WITH (
        autovacuum_enabled = true,
        autovacuum_vacuum_threshold = 100000000,
        autovacuum_vacuum_scale_factor = 0.5,
        autovacuum_analyze_threshold = 1000,
        autovacuum_analyze_scale_factor = 0.01
    )""",
    """DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                       WHERE t.typname = 'stored_event_uuid' AND n.nspname = 'public') THEN
            CREATE TYPE stored_event_uuid AS (
                originator_id uuid, originator_version bigint, topic text, state bytea
            );
        END IF;
    END $$""",
    """CREATE UNIQUE INDEX IF NOT EXISTS ledger_events_notification_id_idx
        ON ledger_events (notification_id ASC)""",
]

STATEMENTS = [
    """CREATE TABLE IF NOT EXISTS ledger_idempotency (
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
    """CREATE TABLE IF NOT EXISTS rm_tools (
        id uuid PRIMARY KEY,
        slug text NOT NULL UNIQUE,
        name text NOT NULL,
        description text NOT NULL,
        category text NOT NULL,
        tags text[] NOT NULL DEFAULT '{}',
        status text NOT NULL,
        semver text NOT NULL,
        author text NOT NULL,
        aggregate_version int NOT NULL,
        position bigint NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        deleted_at timestamptz,
        doc json NOT NULL,
        search tsvector GENERATED ALWAYS AS (
            to_tsvector('simple', slug || ' ' || name || ' ' || description || ' ' || category)
        ) STORED
    )""",
    "CREATE INDEX IF NOT EXISTS rm_tools_category ON rm_tools (category)",
    "CREATE INDEX IF NOT EXISTS rm_tools_status ON rm_tools (status)",
    "CREATE INDEX IF NOT EXISTS rm_tools_tags ON rm_tools USING gin (tags)",
    "CREATE INDEX IF NOT EXISTS rm_tools_updated ON rm_tools (updated_at, id)",
    "CREATE INDEX IF NOT EXISTS rm_tools_search ON rm_tools USING gin (search)",
    """CREATE TABLE IF NOT EXISTS rm_datasets (
        id uuid PRIMARY KEY,
        slug text NOT NULL UNIQUE,
        name text NOT NULL,
        description text NOT NULL,
        owner text NOT NULL,
        tags text[] NOT NULL DEFAULT '{}',
        status text NOT NULL,
        source_kind text NOT NULL,
        aggregate_version int NOT NULL,
        position bigint NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        deleted_at timestamptz,
        doc json NOT NULL,
        search tsvector GENERATED ALWAYS AS (
            to_tsvector('simple', slug || ' ' || name || ' ' || description)
        ) STORED
    )""",
    "CREATE INDEX IF NOT EXISTS rm_datasets_owner ON rm_datasets (owner)",
    "CREATE INDEX IF NOT EXISTS rm_datasets_status ON rm_datasets (status)",
    "CREATE INDEX IF NOT EXISTS rm_datasets_tags ON rm_datasets USING gin (tags)",
    "CREATE INDEX IF NOT EXISTS rm_datasets_updated ON rm_datasets (updated_at, id)",
    "CREATE INDEX IF NOT EXISTS rm_datasets_search ON rm_datasets USING gin (search)",
    """CREATE TABLE IF NOT EXISTS rm_dataset_columns (
        dataset_id uuid NOT NULL REFERENCES rm_datasets (id) ON DELETE CASCADE,
        ordinal int NOT NULL,
        name text NOT NULL,
        type text NOT NULL,
        nullable boolean NOT NULL,
        description text,
        PRIMARY KEY (dataset_id, ordinal)
    )""",
    """CREATE TABLE IF NOT EXISTS rm_documents (
        id uuid PRIMARY KEY,
        title text NOT NULL,
        content_type text NOT NULL,
        tags text[] NOT NULL DEFAULT '{}',
        link_kind text,
        link_id uuid,
        language text,
        aggregate_version int NOT NULL,
        position bigint NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        deleted_at timestamptz,
        doc json NOT NULL,
        search tsvector GENERATED ALWAYS AS (
            to_tsvector('simple', title || ' ' || (doc ->> 'content'))
        ) STORED
    )""",
    "CREATE INDEX IF NOT EXISTS rm_documents_tags ON rm_documents USING gin (tags)",
    "CREATE INDEX IF NOT EXISTS rm_documents_link ON rm_documents (link_id)",
    "CREATE INDEX IF NOT EXISTS rm_documents_updated ON rm_documents (updated_at, id)",
    "CREATE INDEX IF NOT EXISTS rm_documents_search ON rm_documents USING gin (search)",
    """CREATE TABLE IF NOT EXISTS rm_search (
        kind text NOT NULL,
        id uuid NOT NULL,
        chunk int NOT NULL,
        slug text,
        name text NOT NULL,
        description text,
        heading text,
        body text NOT NULL,
        status text,
        category text,
        tags text[] NOT NULL DEFAULT '{}',
        owner text,
        link_id uuid,
        deleted boolean NOT NULL,
        version int NOT NULL,
        position bigint NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english', coalesce(slug, '') || ' ' || name), 'A')
            || setweight(to_tsvector('english', body), 'B')
        ) STORED,
        PRIMARY KEY (kind, id, chunk)
    )""",
    "CREATE INDEX IF NOT EXISTS rm_search_tsv ON rm_search USING gin (tsv)",
    "CREATE INDEX IF NOT EXISTS rm_search_id ON rm_search (id)",
    """CREATE TABLE IF NOT EXISTS vector_outbox (
        id uuid PRIMARY KEY,
        kind text NOT NULL,
        version int NOT NULL,
        position bigint NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS vector_outbox_position ON vector_outbox (position)",
    """CREATE TABLE IF NOT EXISTS vector_indexes (
        generation text PRIMARY KEY,
        model text NOT NULL,
        dimension int NOT NULL,
        status text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        activated_at timestamptz
    )""",
    "ALTER TABLE vector_indexes ADD COLUMN IF NOT EXISTS owner text",
    "ALTER TABLE vector_indexes ADD COLUMN IF NOT EXISTS owner_seen_at timestamptz",
    """CREATE TABLE IF NOT EXISTS rm_history (
        aggregate_id uuid NOT NULL,
        version int NOT NULL,
        kind text NOT NULL,
        position bigint NOT NULL,
        event_type text NOT NULL,
        snapshot json NOT NULL,
        patch json NOT NULL,
        actor text NOT NULL,
        reason text,
        correlation_id text NOT NULL,
        causation_id text NOT NULL,
        occurred_at timestamptz NOT NULL,
        PRIMARY KEY (aggregate_id, version)
    )""",
    "CREATE INDEX IF NOT EXISTS rm_history_position ON rm_history (position)",
    """CREATE TABLE IF NOT EXISTS projection_versions (
        projection text NOT NULL,
        aggregate_id uuid NOT NULL,
        version int NOT NULL,
        PRIMARY KEY (projection, aggregate_id)
    )""",
    """CREATE TABLE IF NOT EXISTS projection_checkpoints (
        projection text NOT NULL,
        source text NOT NULL,
        position bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (projection, source)
    )""",
    """CREATE TABLE IF NOT EXISTS projection_dead_letters (
        id bigserial PRIMARY KEY,
        projection text NOT NULL,
        aggregate_id uuid NOT NULL,
        version int NOT NULL,
        position bigint NOT NULL,
        event_type text NOT NULL,
        record jsonb NOT NULL,
        error text NOT NULL,
        status text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (projection, aggregate_id, version)
    )""",
    """CREATE INDEX IF NOT EXISTS projection_dead_letters_open
        ON projection_dead_letters (projection, aggregate_id) WHERE status <> 'resolved'""",
    """CREATE TABLE IF NOT EXISTS usage_stats (
        window_size text NOT NULL CHECK (window_size IN ('1m', '1h')),
        window_start timestamptz NOT NULL,
        tool text NOT NULL,
        client text NOT NULL,
        calls bigint NOT NULL,
        errors bigint NOT NULL,
        latency_sum_ms double precision NOT NULL,
        latency_min_ms double precision NOT NULL,
        latency_max_ms double precision NOT NULL,
        buckets bigint[] NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (window_size, window_start, tool, client)
    )""",
    "CREATE INDEX IF NOT EXISTS usage_stats_tool ON usage_stats (window_size, tool, window_start)",
    """CREATE TABLE IF NOT EXISTS usage_seen (
        id text PRIMARY KEY,
        occurred_at timestamptz NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS usage_seen_occurred ON usage_seen (occurred_at)",
    """CREATE TABLE IF NOT EXISTS usage_meta (
        key text PRIMARY KEY,
        value text NOT NULL
    )""",
    """INSERT INTO usage_meta (key, value)
        VALUES ('cache_namespace', gen_random_uuid()::text) ON CONFLICT DO NOTHING""",
    """CREATE TABLE IF NOT EXISTS ledger_api_keys (
        id text PRIMARY KEY,
        name text NOT NULL,
        role text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
        secret_sha256 bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz,
        last_used_at timestamptz
    )""",
]


def upgrade() -> None:
    for statement in [*EVENT_STORE, *STATEMENTS]:
        op.execute(statement)


def downgrade() -> None:
    # Dropping the event store would destroy the registry's only source of truth.
    raise NotImplementedError("0001 is the baseline: there is nothing to downgrade to")
