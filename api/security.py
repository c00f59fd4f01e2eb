"""Access control and hygiene for every HTTP answer: API keys (Authorization: Bearer), roles per
route class, rate limits per key and class, a CORS allowlist and security headers.

Deny by default: every path needs a key except the health probes, the API docs and /metrics
(which needs one too with MCP_LEDGER_METRICS_AUTH). Failed authentications are limited per
client address; X-Forwarded-For names the client only from MCP_LEDGER_TRUSTED_PROXIES.
    viewer  GET/HEAD on /api/v1 (queries, search, analytics) and the MCP endpoint /mcp
    editor  also every other method on /api/v1 (the commands)
    admin   also /api/v1/admin/* (keys, status, dead letters)
With MCP_LEDGER_AUTH=off every request acts as the built-in admin "anonymous"."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.errors import ApiError, error_response
from api.headers import HSTS, SECURITY_HEADERS
from infra.container import Container
from infra.redis_client import RedisHandle
from infra.security.api_keys import ANONYMOUS, PREFIX, ApiKeys, Principal, Role, key_store, parse
from infra.security.rate_limit import Decision, LocalBuckets, RateLimiter
from infra.settings import Settings

log = structlog.get_logger("api.security")

OPEN_PATHS = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MCP_PATH = "/mcp"
ADMIN_PREFIX = "/api/v1/admin"

CORS_HEADERS = [
    "Authorization", "Content-Type", "If-Match", "Idempotency-Key", "X-Request-ID", "X-Reason",
    "X-Actor", "Mcp-Session-Id", "Mcp-Protocol-Version", "Last-Event-ID",
]  # fmt: skip
CORS_EXPOSED = ["ETag", "X-Ledger-Position", "X-Request-ID", "Retry-After", "Mcp-Session-Id"]


def classify(method: str, path: str, metrics_auth: bool = False) -> tuple[str, Role] | None:
    """(route class, least role) of a request, or None for an open path."""
    if path == "/metrics" and metrics_auth:
        return "read", "viewer"
    if path in OPEN_PATHS or path.startswith("/health/"):
        return None
    if path == MCP_PATH or path.startswith(MCP_PATH + "/"):
        return "mcp", "viewer"
    if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
        return "admin", "admin"
    if method in READ_METHODS:
        return ("search", "viewer") if path == "/api/v1/search" else ("read", "viewer")
    return "write", "editor"


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class Guard:
    """Authenticates, authorizes and rate-limits every request; the principal goes to
    `request.state.principal` (the commands record it as the events' actor)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        keys: ApiKeys,
        *,
        limiter: RateLimiter | None,
        verify_jwt: Callable[[str], Principal | None] | None = None,
        failures: FailedAuthentications | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.keys = keys
        self.limiter = limiter
        self.verify_jwt = verify_jwt
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = classify(scope["method"], scope["path"], self.settings.metrics_auth)
        if route is None:
            await self.app(scope, receive, send)
            return
        route_class, needed = route
        required = (
            self.settings.mcp_auth_enabled if route_class == "mcp" else self.settings.auth_enabled
        )
        ip = _client_ip(scope)
        token = _bearer(scope) if required else None
        if required and self.failures is not None:
            blocked = await run_in_threadpool(self.failures.blocked, ip)
            if blocked is not None:
                await _too_many_failures(scope, send, blocked)
                return
        if required and not token:
            what = "malformed" if token == "" else "missing"
            log.info("auth_failed", reason=f"{what} Authorization header", path=scope["path"])
            await self._failed(ip)
            await _deny(scope, send, 401, "unauthorized", _NEED_KEY, _CHALLENGE)
            return
        if token is None and self.limiter is None:  # nothing to look up: stay on the loop
            principal: Principal | None = ANONYMOUS
            decision = None
        else:
            principal, decision = await run_in_threadpool(self._admit, token, route_class, ip)
        if principal is None:
            parsed = parse(token or "")
            log.info("auth_failed", reason="invalid key", key_id=parsed and parsed[0])
            await self._failed(ip)
            await _deny(scope, send, 401, "invalid_credentials", _BAD_KEY, _INVALID_TOKEN)
            return
        if not principal.allows(needed):
            log.info("forbidden", key_id=principal.id, role=principal.role, needed=needed)
            message = f"this route needs the {needed} role; this key is a {principal.role}"
            await _deny(scope, send, 403, "forbidden", message)
            return
        if decision is not None and not decision.allowed:
            await _rate_limited(scope, send, route_class, decision)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def _failed(self, ip: str) -> None:
        if self.failures is not None:
            await run_in_threadpool(self.failures.record, ip)

    def _admit(
        self, token: str | None, route_class: str, ip: str
    ) -> tuple[Principal | None, Decision | None]:
        """Runs in the thread pool: the key lookup (Postgres) and the bucket (Redis)."""
        principal = ANONYMOUS if token is None else self._verify(token)
        if principal is None or self.limiter is None:
            return principal, None
        identity = f"{principal.kind}:{principal.id}" if principal.id else f"ip:{ip}"
        return principal, self.limiter.check(identity, route_class)

    def _verify(self, token: str) -> Principal | None:
        if token.startswith(PREFIX + "_") or self.verify_jwt is None:
            return self.keys.verify(token)
        return self.verify_jwt(token)


_NEED_KEY = "an API key is required: send Authorization: Bearer <key>"
_BAD_KEY = "the API key is not valid (malformed, unknown or revoked)"
_CHALLENGE = 'Bearer realm="mcp-ledger"'
_INVALID_TOKEN = 'Bearer realm="mcp-ledger", error="invalid_token"'  # noqa: S105


async def _deny(  # noqa: PLR0917
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    challenge: str | None = None,
    details: list[dict[str, Any]] | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    headers = {**({"www-authenticate": challenge} if challenge else {}), **(extra or {})}
    request_id = scope.get("state", {}).get("request_id")
    response = error_response(request_id, status, code, message, details, headers)
    await response(scope, _nothing_to_receive, send)


async def _nothing_to_receive() -> Message:
    return {"type": "http.disconnect"}


async def _rate_limited(scope: Scope, send: Send, route_class: str, decision: Decision) -> None:
    log.info("rate_limited", route_class=route_class, retry_after=decision.retry_after)
    await _deny(
        scope,
        send,
        429,
        "rate_limited",
        f"too many {route_class} requests; retry in {decision.retry_after} s",
        details=[{"field": "Retry-After", "message": str(decision.retry_after)}],
        extra={
            "retry-after": str(decision.retry_after),
            "x-ratelimit-limit": str(decision.limit),
            "x-ratelimit-remaining": "0",
        },
    )


class FailedAuthentications:
    """Failed authentications per client address (brute force, key scanning): each one takes a
    token; with none left the address gets 429 before any key is even looked at, until the
    bucket refills. In Redis when configured (shared by every replica); in this process without
    Redis, or while Redis does not answer (this limit never fails open)."""

    ROUTE_CLASS = "auth_failure"

    def __init__(self, shared: RateLimiter | None, local: LocalBuckets) -> None:
        self.shared = shared
        self.local = local

    def _take(self, ip: str, cost: int) -> Decision:
        identity = f"ip:{ip}"
        if self.shared is not None:
            decision = self.shared.check(identity, self.ROUTE_CLASS, cost, fail_open=False)
            if decision is not None:
                return decision
        return self.local.check(identity, self.ROUTE_CLASS, cost)

    def blocked(self, ip: str) -> Decision | None:
        decision = self._take(ip, 0)
        return None if decision.allowed else decision

    def record(self, ip: str) -> None:
        self._take(ip, 1)


async def _too_many_failures(scope: Scope, send: Send, decision: Decision) -> None:
    log.warning("auth_failures_limited", client=_client_ip(scope), retry_after=decision.retry_after)
    await _deny(
        scope,
        send,
        429,
        "too_many_failed_authentications",
        f"too many failed authentications from this address; retry in {decision.retry_after} s",
        details=[{"field": "Authorization", "message": "failed too often from this address"}],
        extra={"retry-after": str(decision.retry_after)},
    )


class SecurityHeaders:
    """Adds the security headers to every answer (those the app set itself are kept)."""

    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = dict(SECURITY_HEADERS)
        if scope["path"] in DOC_PATHS:  # the docs pages load Swagger UI / ReDoc from a CDN
            del wanted["content-security-policy"]
        if self.https or scope.get("scheme") == "https":
            wanted["strict-transport-security"] = HSTS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [
                    (name.encode(), value.encode())
                    for name, value in wanted.items()
                    if name.encode() not in present
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_access_control(app: Any, container: Container) -> None:
    """Adds the Guard and, with MCP_LEDGER_CORS_ORIGINS, the CORS allowlist (outside the Guard:
    a preflight carries no key). Call it before the request-id middleware is added, so that
    middleware runs first."""
    settings: Settings = container.settings
    limiter = None
    failures = None
    if settings.rate_limit and settings.redis_url:
        redis = RedisHandle(settings.redis_url, connect_timeout=0.25, timeout=0.25)
        limiter = RateLimiter(settings, redis)
        failures = FailedAuthentications(limiter, LocalBuckets(settings))
    elif settings.rate_limit:
        log.info("rate_limits_off", reason="no REDIS_URL: requests are not rate limited")
        failures = FailedAuthentications(None, LocalBuckets(settings))
    if not settings.auth_enabled:
        _warn_open(settings)
    verify_jwt = None
    if settings.oidc_jwks_url:
        from api.oidc import JwtVerifier

        verify_jwt = JwtVerifier(settings).verify
    app.add_middleware(
        Guard,
        settings=settings,
        keys=key_store(container.read_side),
        limiter=limiter,
        verify_jwt=verify_jwt,
        failures=failures,
    )
    if settings.trusted_proxy_list:
        # Outside the Guard: the client address it limits by is the one the proxy names.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)
    origins = settings.cors_origin_list
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
            allow_credentials=False,
            max_age=600,
        )


def install_security_headers(app: Any, settings: Settings) -> None:
    """Add it last: the outermost middleware, so every answer (413s included) has them."""
    app.add_middleware(SecurityHeaders, https=settings.https)


def _warn_open(settings: Settings) -> None:
    mcp = " (the MCP endpoint still requires keys)" if settings.mcp_auth_enabled else ""
    message = (
        "AUTHENTICATION IS OFF: anyone who can reach this process acts as an admin"
        f"{mcp}. Set MCP_LEDGER_AUTH=on and create keys with `mcp-ledger keys create` "
        "before exposing it beyond this machine."
    )
    log.warning("auth_disabled", message=message)
    print(f"\n*** WARNING: {message} ***\n", file=sys.stderr, flush=True)


def principal_of(request: Request) -> Principal:
    """The request's principal (set by the Guard); none means the Guard did not run."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise ApiError(401, "unauthorized", _NEED_KEY)
    return principal


def require(role: Role) -> Callable[[Request], Principal]:
    """A dependency that refuses a principal below `role` (defence in depth behind the Guard)."""

    def check(request: Request) -> Principal:
        principal = principal_of(request)
        if not principal.allows(role):
            raise ApiError(403, "forbidden", f"this route needs the {role} role")
        return principal

    return check
