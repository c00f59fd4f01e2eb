"""Read-model tables and the projections' own bookkeeping. Created idempotently at start.

Documents (`doc`, `snapshot`, `patch`) are `json`, not `jsonb`: jsonb reorders object keys and
rewrites numbers, and a tool's input schema must come back exactly as it was registered."""

from __future__ import annotations

CURRENT_STATE = [
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
]

# What search reads: one row per searchable unit (a tool, a dataset, a document chunk), written
# with the current state; and the vector index's outbox of items whose vectors are out of date.
SEARCH = [
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
    # Which vector index generation (model and dimension) is live, and which is being built.
    """CREATE TABLE IF NOT EXISTS vector_indexes (
        generation text PRIMARY KEY,
        model text NOT NULL,
        dimension int NOT NULL,
        status text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        activated_at timestamptz
    )""",
    # The store (process) that keeps the live index, and when it last said so: one indexer per
    # database, so two embedded indexes never split the outbox between them.
    "ALTER TABLE vector_indexes ADD COLUMN IF NOT EXISTS owner text",
    "ALTER TABLE vector_indexes ADD COLUMN IF NOT EXISTS owner_seen_at timestamptz",
]

HISTORY = [
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
]

BOOKKEEPING = [
    # The version each projection has applied per aggregate: the exactly-once guard.
    """CREATE TABLE IF NOT EXISTS projection_versions (
        projection text NOT NULL,
        aggregate_id uuid NOT NULL,
        version int NOT NULL,
        PRIMARY KEY (projection, aggregate_id)
    )""",
    # How far each projection has read each source ('log', or 'topic:partition' under Kafka).
    """CREATE TABLE IF NOT EXISTS projection_checkpoints (
        projection text NOT NULL,
        source text NOT NULL,
        position bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (projection, source)
    )""",
    # Poison events and the events of the same aggregate parked behind them.
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
]

ALL = [*CURRENT_STATE, *SEARCH, *HISTORY, *BOOKKEEPING]
