"""The usage analytics tables (Postgres is the truth; Redis only caches recent windows).

- `usage_stats`: one row per tumbling window ('1m' or '1h'), tool and client: calls, errors and
  the latency distribution (exact sum/min/max plus the fixed log-spaced bucket counts of
  projections/usage_histogram.py, so rows add up exactly into longer spans).
- `usage_seen`: the ids of the usage events already counted (dedupe; pruned after the late
  limit), written in the same transaction as the counters.
- `usage_meta`: this database's cache namespace: Redis keys are prefixed with it, so a fresh or
  reset database never reads another one's cached windows."""

from __future__ import annotations

ANALYTICS = [
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
]
