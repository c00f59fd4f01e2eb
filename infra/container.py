"""The composition root: builds every adapter from settings. Nothing connects at import time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.json import set_json_dumps

from commands.ports import CommandDeps
from infra.postgres.embedded import open_database
from infra.postgres.event_store import (
    LedgerApplication,
    PostgresEventStore,
    PostgresIdempotencyStore,
    eventsourcing_env,
)
from infra.postgres.read_side import ReadSide
from infra.postgres.reads import Reads
from infra.postgres.schema import ensure_schema
from infra.redis_client import RedisHandle
from infra.security.secrets import FernetSealer, embedded_master_key
from infra.settings import Settings, SettingsError
from infra.usage.emitter import UsageEmitter
from infra.usage.sinks import build_usage_emitter
from projections import bulk_rows

if TYPE_CHECKING:
    from infra.search.wiring import SearchParts
    from projections.search import Searcher


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Container:
    settings: Settings
    app: LedgerApplication
    store: PostgresEventStore
    deps: CommandDeps
    sealer: FernetSealer
    read_side: ReadSide
    # Usage events of MCP calls and API searches; the sink is wired by the usage analytics.
    usage: UsageEmitter = field(default_factory=lambda: UsageEmitter(None))
    # Redis (REDIS_URL) for hot analytics reads; connects on first use, None without a URL.
    redis: RedisHandle = field(default_factory=lambda: RedisHandle(None))
    # What leaves the embedded Postgres (nothing with DATABASE_URL), run at close.
    _leave_database: Callable[[], None] = field(default=lambda: None)
    # Shared by copies made with dataclasses.replace (another settings object over the same
    # resources), keyed by the settings search is built from: copies that agree share the one
    # vector index a process may open; a copy with other search settings gets its own parts.
    _search: dict[tuple[Any, ...], SearchParts] = field(default_factory=dict)

    @property
    def reads(self) -> Reads:
        """The read layer the API and the MCP server share (waits, snapshots)."""
        return Reads(self.read_side, self.settings.read_wait_seconds)

    def search_parts(self) -> SearchParts:
        """Search, built on first use: the model and the vector index are opened only by the
        processes that search or index."""
        s = self.settings
        key = (s.vectors, s.qdrant_url, s.data_dir, s.embedding_provider, s.embedding_model)
        if key not in self._search:
            from infra.search.wiring import build_search

            self._search[key] = build_search(s, self.read_side.connection)
        return self._search[key]

    @property
    def searcher(self) -> Searcher:
        return self.search_parts().searcher

    def close(self) -> None:
        while self._search:
            self._search.popitem()[1].close()
        self.usage.close()
        self.redis.close()
        self.read_side.close()
        self.app.close()
        leave, self._leave_database = self._leave_database, lambda: None
        leave()


def build_container(settings: Settings) -> Container:
    set_json_dumps(bulk_rows.dumps)  # every Json value (snapshots, docs) the fast way
    database_url, leave = open_database(settings.database_url, settings.data_dir)
    try:
        ensure_schema(database_url, auto_migrate=settings.auto_migrate)
    except SettingsError:
        leave()
        raise
    master_key = settings.secret_key
    if master_key is None:
        if not settings.embedded:
            raise SettingsError(
                "MCP_LEDGER_SECRET_KEY: missing; required with DATABASE_URL, expected a Fernet key"
            )
        master_key = embedded_master_key(settings.data_dir)
    app = LedgerApplication(
        env=eventsourcing_env(database_url, settings.db_pool_size, settings.append_timeout)
    )
    store = PostgresEventStore(app)
    sealer = FernetSealer(store.datastore, master_key)
    deps = CommandDeps(
        store=store,
        idempotency=PostgresIdempotencyStore(app),
        sealer=sealer,
        clock=utc_now,
    )
    kafka_feed = settings.read_feed == "kafka" or (
        settings.read_feed == "auto" and settings.kafka_bootstrap_servers is not None
    )
    feed = settings.kafka_topic_prefix if kafka_feed else None
    read_side = ReadSide(store, feed)
    redis = RedisHandle(settings.redis_url)
    usage = build_usage_emitter(settings, read_side, redis, kafka_feed=kafka_feed)
    return Container(
        settings, app, store, deps, sealer, read_side, usage, redis, _leave_database=leave
    )
