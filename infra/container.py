"""The composition root: builds every adapter from settings. Nothing connects at import time."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from psycopg.types.json import set_json_dumps

from commands.ports import CommandDeps
from infra.event_store import LedgerApplication, PostgresEventStore, PostgresIdempotencyStore
from infra.read_side import ReadSide
from infra.redis_client import RedisHandle
from infra.schema import ensure_schema
from infra.secrets import FernetSealer, embedded_master_key
from infra.settings import Settings, SettingsError
from infra.usage import UsageEmitter
from infra.usage_sinks import build_usage_emitter

if TYPE_CHECKING:
    from infra.search_wiring import SearchParts
    from projections.search import Searcher


def utc_now() -> datetime:
    return datetime.now(UTC)


def eventsourcing_env(
    database_url: str, pool_size: int, append_timeout: float = 30.0
) -> dict[str, str]:
    """Translates a postgresql:// URL into the eventsourcing library's settings."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    return {
        "PERSISTENCE_MODULE": "infra.event_store:LedgerFactory",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "CREATE_TABLE": "n",
        "APPEND_TIMEOUT": str(append_timeout),
    }


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
    _keepalive: list[Any] = field(default_factory=list)
    # Shared by copies made with dataclasses.replace (another settings object over the same
    # resources), keyed by the settings search is built from: copies that agree share the one
    # vector index a process may open; a copy with other search settings gets its own parts.
    _search: dict[tuple[Any, ...], SearchParts] = field(default_factory=dict)

    def search_parts(self) -> SearchParts:
        """Search, built on first use: the model and the vector index are opened only by the
        processes that search or index."""
        s = self.settings
        key = (s.vectors, s.qdrant_url, s.data_dir, s.embedding_provider, s.embedding_model)
        if key not in self._search:
            from infra.search_wiring import build_search

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
        for handle in self._keepalive:
            # pgserver stops its server from an atexit hook, which a signal-terminated
            # process never runs; stop it here instead.
            handle._cleanup()
        self._keepalive.clear()


def fast_json_dumps(value: Any) -> bytes:
    # orjson is several times faster (rebuilds write every snapshot) but refuses integers
    # beyond 64 bits, which JSON and the registry allow.
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def build_container(settings: Settings) -> Container:
    set_json_dumps(fast_json_dumps)
    keepalive: list[Any] = []
    database_url = settings.database_url
    if database_url is None:
        from infra.embedded_db import start_embedded_postgres

        database_url, server = start_embedded_postgres(settings.data_dir)
        keepalive.append(server)
    try:
        ensure_schema(database_url, auto_migrate=settings.auto_migrate)
    except SettingsError:
        for handle in keepalive:
            handle._cleanup()
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
        settings, app, store, deps, sealer, read_side, usage, redis, _keepalive=keepalive
    )
