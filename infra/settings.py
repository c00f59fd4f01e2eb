"""Settings from the environment. A bad value stops start-up with the setting's name and form."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EXPECTED_FORMS = {
    "DATABASE_URL": "postgresql://USER:PASSWORD@HOST:PORT/DBNAME "
    "(or unset for the embedded Postgres)",
    "MCP_LEDGER_SECRET_KEY": "a Fernet key: 32 url-safe base64-encoded bytes "
    "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')",
    "MCP_LEDGER_DATA_DIR": "a directory path",
    "MCP_LEDGER_LOG_LEVEL": "one of debug, info, warning, error",
    "MCP_LEDGER_LOG_FORMAT": "auto (console at a terminal, else json), json or console",
    "MCP_LEDGER_DB_POOL_SIZE": "an integer from 1 to 100",
    "MCP_LEDGER_IMPORT_BATCH_SIZE": "an integer from 1 to 10000",
    "MCP_LEDGER_APPEND_TIMEOUT": "seconds, a number from 1 to 600",
    "MCP_LEDGER_AUTO_MIGRATE": "true or false",
    "MCP_LEDGER_MAX_BODY_BYTES": "an integer number of bytes",
    "MCP_LEDGER_READ_WAIT_SECONDS": "seconds, a number from 0 to 300",
    "MCP_LEDGER_READ_FEED": "auto, log or kafka",
    "KAFKA_BOOTSTRAP_SERVERS": "HOST:PORT[,HOST:PORT...] (e.g. 127.0.0.1:9092)",
    "MCP_LEDGER_KAFKA_TOPIC_PREFIX": "letters, digits, '.', '_' or '-' (e.g. mcp-ledger)",
    "MCP_LEDGER_KAFKA_PARTITIONS": "an integer from 1 to 1000",
    "MCP_LEDGER_KAFKA_REPLICATION": "an integer from 1 to 32",
    "MCP_LEDGER_KAFKA_MAX_MESSAGE_BYTES": "an integer number of bytes from 65536 to 104857600",
    "MCP_LEDGER_RELAY_BATCH_SIZE": "an integer from 1 to 10000",
    "MCP_LEDGER_RELAY_POLL_INTERVAL": "seconds, a number above 0 and at most 60",
    "MCP_LEDGER_PROJECTOR_SESSION_TIMEOUT": "seconds, from 6 to 300",
    "MCP_LEDGER_METRICS_PORT": "a TCP port from 1 to 65535 (or unset: no metrics server)",
    "MCP_LEDGER_SHUTDOWN_TIMEOUT": "seconds, an integer from 1 to 600",
    "REDIS_URL": "redis://[:PASSWORD@]HOST:PORT/DB (e.g. redis://127.0.0.1:6379/0)",
    "MCP_LEDGER_USAGE_SINK": "auto, kafka, local or off",
    "MCP_LEDGER_USAGE_BUFFER": "an integer from 100 to 1000000",
    "MCP_LEDGER_USAGE_DURABLE": "true or false",
    "MCP_LEDGER_USAGE_WAIT": "seconds, a number above 0 and at most 60",
    "QDRANT_URL": "http(s)://HOST:PORT of a Qdrant server (or unset for the embedded index)",
    "MCP_LEDGER_VECTORS": "on or off (or true/false)",
    "MCP_LEDGER_EMBEDDING_PROVIDER": "minilm (offline, the default) or openai (an "
    "OpenAI-compatible endpoint)",
    "MCP_LEDGER_EMBEDDING_URL": "the endpoint's base URL, e.g. https://api.openai.com/v1",
    "MCP_LEDGER_EMBEDDING_DIMENSIONS": "an integer from 8 to 8192",
    "MCP_LEDGER_EMBEDDING_BATCH_SIZE": "an integer from 1 to 2048",
    "MCP_LEDGER_EMBEDDING_TIMEOUT": "seconds, a number above 0 and at most 600",
    "MCP_LEDGER_AUTH": "on or off (default: off in the embedded mode, on with DATABASE_URL)",
    "MCP_LEDGER_MCP_AUTH": "on or off (default: MCP_LEDGER_AUTH)",
    "MCP_LEDGER_CORS_ORIGINS": "comma-separated origins, e.g. https://console.example.com",
    "MCP_LEDGER_HTTPS": "on or off (on: clients reach the API over https; sends HSTS)",
    "MCP_LEDGER_RATE_LIMIT": "on or off",
    **{
        f"MCP_LEDGER_RATE_LIMIT_{c}": "RATE/BURST (per second/bucket size), e.g. 20/100"
        for c in ("READ", "WRITE", "SEARCH", "ADMIN", "MCP", "AUTH_FAILURE")
    },
    "MCP_LEDGER_TRUSTED_PROXIES": "comma-separated IP addresses or CIDR networks, e.g. "
    "10.0.0.0/8, 127.0.0.1",
    "MCP_LEDGER_METRICS_AUTH": "true or false",
    "MCP_LEDGER_API_METRICS_PORT": "a TCP port from 1 to 65535 "
    "(or unset: /metrics on the API's port)",
    "MCP_LEDGER_OIDC_JWKS_URL": "the identity provider's JWKS URL, http(s)://...",
    "MCP_LEDGER_OIDC_ISSUER": "the tokens' iss claim, e.g. https://login.example.com/realms/x",
    "MCP_LEDGER_OIDC_AUDIENCE": "the tokens' aud claim, e.g. mcp-ledger",
    "MCP_LEDGER_OIDC_ROLE_CLAIM": "a claim name, dotted for nested ones (realm_access.roles)",
    "MCP_LEDGER_OIDC_ROLES": "VALUE=ROLE[,VALUE=ROLE...] with ROLE viewer, editor or admin",
}
RATE_FORM = r"^\s*\d+(\.\d+)?\s*/\s*0*[1-9]\d*\s*$"
_PAIR = r"\s*[^=,\s][^=,]*=\s*(viewer|editor|admin)\s*"
ROLE_MAP_FORM = rf"^({_PAIR}(,{_PAIR})*)?$"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it and its expected form."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MCP_LEDGER_", extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Path(".mcp-ledger")
    secret_key: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    db_pool_size: int = Field(default=10, ge=1, le=100)
    import_batch_size: int = Field(default=500, ge=1, le=10_000)
    # How long one append may hold the events table before its session is ended (a stalled
    # writer must never freeze the others behind the table lock).
    append_timeout: float = Field(default=30.0, ge=1, le=600)
    # Processes upgrade an older schema at start; off: they refuse and ask for `migrate`.
    auto_migrate: bool = True
    max_body_bytes: int = Field(default=5_000_000, ge=1024)
    # How long a read with `min_position` waits for the projections before answering 503.
    read_wait_seconds: float = Field(default=5.0, ge=0, le=300)
    read_feed: Literal["auto", "log", "kafka"] = "auto"
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    kafka_topic_prefix: str = Field(default="mcp-ledger", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    kafka_partitions: int = Field(default=3, ge=1, le=1000)
    kafka_replication: int = Field(default=1, ge=1, le=32)
    kafka_max_message_bytes: int = Field(default=8_388_608, ge=65_536, le=104_857_600)
    relay_batch_size: int = Field(default=500, ge=1, le=10_000)
    relay_poll_interval: float = Field(default=1.0, gt=0, le=60)
    projector_session_timeout: float = Field(default=10.0, ge=6, le=300)
    # Observability: the relay's and the projector's /metrics and /health/live port (the API
    # serves /metrics itself); how long SIGTERM waits for in-flight requests and batches.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    shutdown_timeout: int = Field(default=20, ge=1, le=600)
    # Usage analytics: Redis caches recent windows (optional); where usage events go (auto:
    # Kafka when the read side is fed by Kafka, else the in-process projection).
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    usage_sink: Literal["auto", "kafka", "local", "off"] = "auto"
    usage_buffer: int = Field(default=10_000, ge=100, le=1_000_000)
    # Answers wait (at most usage_wait seconds) until their usage event is stored, so counts
    # stay exact when a process is killed; off: fire and forget.
    usage_durable: bool = True
    usage_wait: float = Field(default=5.0, gt=0, le=60)
    # Search: the vector index (embedded Qdrant under data_dir/vectors unless QDRANT_URL).
    vectors: bool = True
    qdrant_url: str | None = Field(default=None, validation_alias="QDRANT_URL")
    qdrant_api_key: str | None = Field(default=None, validation_alias="QDRANT_API_KEY")
    embedding_provider: Literal["minilm", "openai"] = "minilm"
    embedding_url: str | None = None
    embedding_model: str | None = None
    embedding_api_key: str | None = None
    embedding_dimensions: int | None = Field(default=None, ge=8, le=8192)
    embedding_batch_size: int = Field(default=32, ge=1, le=2048)
    embedding_timeout: float = Field(default=30.0, gt=0, le=600)
    # Access control and limits (api/security.py). auth/mcp_auth unset: see auth_enabled.
    auth: bool | None = None
    mcp_auth: bool | None = None
    cors_origins: str = ""
    https: bool = False
    rate_limit: bool = True
    rate_limit_read: str = Field(default="50/200", pattern=RATE_FORM)
    rate_limit_write: str = Field(default="10/50", pattern=RATE_FORM)
    rate_limit_search: str = Field(default="10/40", pattern=RATE_FORM)
    rate_limit_admin: str = Field(default="2/20", pattern=RATE_FORM)
    rate_limit_mcp: str = Field(default="20/100", pattern=RATE_FORM)
    # Failed authentications per client address: 10, then one more every 10 s (429 meanwhile).
    rate_limit_auth_failure: str = Field(default="0.1/10", pattern=RATE_FORM)
    # Proxies whose X-Forwarded-For names the client (IPs or CIDRs, comma-separated); from any
    # other peer the header is ignored.
    trusted_proxies: str = ""
    # The API's /metrics: on its own port, open (default); with a key (metrics_auth); or only on
    # a port of its own (api_metrics_port), e.g. one that is not published.
    metrics_auth: bool = False
    api_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Optional OIDC: bearer JWTs verified against the provider's JWKS (api/oidc.py).
    oidc_jwks_url: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_role_claim: str = Field(default="roles", pattern=r"^[A-Za-z0-9_:/.-]{1,200}$")
    oidc_roles: str = Field(default="", pattern=ROLE_MAP_FORM)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
            raise ValueError("not a postgresql:// URL with a database name")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("not a redis:// URL")
        return value

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        from cryptography.fernet import Fernet

        try:
            Fernet(value.encode())
        except (ValueError, TypeError):
            raise ValueError("not a Fernet key") from None
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        for address in value.split(","):
            host, _, port = address.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address.strip()!r} is not HOST:PORT")
        return value

    @field_validator("qdrant_url", "embedding_url", "oidc_jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if value == ":memory:":  # qdrant-client's in-process mode, for tests
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("not an http(s):// URL")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        import ipaddress

        for item in filter(None, (v.strip() for v in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [v.strip() for v in self.trusted_proxies.split(",") if v.strip()]

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in filter(None, (o.strip() for o in value.split(","))):
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ValueError(f"{origin!r} is not an origin like https://host[:port]")
        return value

    @model_validator(mode="after")
    def _openai_needs_endpoint(self) -> Settings:
        endpoint = self.embedding_url and self.embedding_model
        if self.embedding_provider == "openai" and not endpoint:
            raise ValueError(
                "MCP_LEDGER_EMBEDDING_PROVIDER=openai needs MCP_LEDGER_EMBEDDING_URL and "
                "MCP_LEDGER_EMBEDDING_MODEL"
            )
        return self

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Settings:
        """A copy whose changed settings are validated like any setting ("off" is False)."""
        if not update:
            return super().model_copy(deep=deep)
        return type(self).model_validate({**self.model_dump(), **update})

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def auth_enabled(self) -> bool:
        """API keys required: MCP_LEDGER_AUTH, by default off only in the embedded mode."""
        return self.auth if self.auth is not None else not self.embedded

    @property
    def mcp_auth_enabled(self) -> bool:
        return self.mcp_auth if self.mcp_auth is not None else self.auth_enabled

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def oidc_role_map(self) -> dict[str, str]:
        """Claim value → role; empty: the claim's values are role names themselves."""
        pairs = (p.partition("=") for p in self.oidc_roles.split(",") if p.strip())
        return {value.strip(): role.strip() for value, _, role in pairs}

    def rate_of(self, route_class: str) -> tuple[float, int]:
        """(tokens per second, bucket size) of a route class: read, write, search, admin, mcp,
        auth_failure."""
        rate, _, burst = str(getattr(self, f"rate_limit_{route_class}")).partition("/")
        return float(rate), int(burst)


UNPREFIXED = {
    "database_url",
    "qdrant_url",
    "qdrant_api_key",
    "kafka_bootstrap_servers",
    "redis_url",
}


def _env_name(field_name: str) -> str:
    # Unprefixed settings (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS) are reported by their alias.
    if field_name.isupper() or field_name in UNPREFIXED:
        return field_name.upper()
    return f"MCP_LEDGER_{field_name.upper()}"


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if not err["loc"]:  # a rule across settings names them in its message
                lines.append(err["msg"].removeprefix("Value error, "))
                continue
            name = _env_name(str(err["loc"][0]))
            form = EXPECTED_FORMS.get(name, "see docs/configuration.md")
            lines.append(f"{name}: {err['msg']}; expected {form}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
