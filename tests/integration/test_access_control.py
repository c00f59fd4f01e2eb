"""Access control and hygiene against a real Postgres and a real Redis: API keys and roles on
every route (and /mcp), the key as the events' actor, the keys CLI, rate limits (and failing
open without Redis), CORS, security headers, and no secret in logs or answers.

The session's `client` runs with auth off (most tests call the API without keys); the apps
here are built over the same database with auth on."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient

from infra.security.api_keys import ApiKeys, key_store
from tests.conftest import ROOT, free_port, tool_body
from tests.integration.test_datasets_api import dataset_body
from tests.integration.test_documents_api import doc_body

ROLES = ("viewer", "editor", "admin")
RANK = {"none": -1, "viewer": 0, "editor": 1, "admin": 2}
OPEN = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/metrics"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "auth-test", "version": "1"},
    },
}


def build_app(container, **settings: Any):  # type: ignore[no-untyped-def]
    from api.app import create_app

    changed = container.settings.model_copy(update={"auth": "on", **settings})
    # 0.0.0.0: no DNS-rebinding check on /mcp (the TestClient's Host is "testserver").
    return create_app(dataclasses.replace(container, settings=changed), mcp_host="0.0.0.0")


@pytest.fixture(scope="module")
def keys(container) -> ApiKeys:  # type: ignore[no-untyped-def]
    return key_store(container.read_side)


@pytest.fixture(scope="module")
def tokens(keys: ApiKeys) -> dict[str, str]:
    return {role: keys.create(f"matrix-{role}", role)[1] for role in ROLES}


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The project's logging configuration (JSON, debug) writing into a buffer; restored after."""
    from infra.observability.logging import configure_logging

    saved = structlog.get_config()
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("debug", "json")
    yield buffer
    structlog.configure(**saved)
    root.handlers, root.level = saved_root


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def secure(container) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """Auth on, no rate limits."""
    with TestClient(build_app(container, rate_limit="off"), raise_server_exceptions=False) as c:
        yield c


# --- the auth matrix ----------------------------------------------------------------------------


def walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """(path, methods) of every route, through included routers."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from walk(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            methods = sorted(getattr(route, "methods", None) or ["GET", "POST", "DELETE"])
            yield prefix + route.path, [m for m in methods if m != "HEAD"]


def least_role(method: str, path: str) -> str | None:
    """The spec restated: open paths; viewer reads and MCP; editor commands; admin /admin."""
    if path in OPEN or path.startswith("/health/"):
        return None
    if path.startswith("/api/v1/admin/"):
        return "admin"
    if path == "/mcp" or method == "GET":
        return "viewer"
    return "editor"


def test_every_route_by_role(secure: TestClient, tokens: dict[str, str], keys: ApiKeys) -> None:
    admin = bearer(tokens["admin"])
    tool = secure.post("/api/v1/tools", json=tool_body(), headers=admin).json()["id"]
    dataset = secure.post("/api/v1/datasets", json=dataset_body(), headers=admin).json()["id"]
    document = secure.post("/api/v1/documents", json=doc_body(), headers=admin).json()["id"]
    refs = {"tools": tool, "datasets": dataset, "documents": document}
    routes = list(walk(secure.app.routes))  # type: ignore[attr-defined]
    assert ("/mcp", ["DELETE", "GET", "POST"]) in routes
    assert len(routes) > 40
    failures = []
    for path, methods in routes:
        for method in methods:
            for who in ("none", *ROLES):
                victim = keys.create("matrix-victim", "viewer")[0].id  # DELETE revokes it
                kind = path.split("/")[3] if path.startswith("/api/v1/") else ""
                url = path.replace("{ref}", refs.get(kind, "x")).replace("{key_id}", victim)
                headers = bearer(tokens[who]) if who != "none" else {}
                if url == "/mcp":
                    headers |= MCP_HEADERS
                body = INITIALIZE if url == "/mcp" and method == "POST" else None
                status = secure.request(method, url, headers=headers, json=body).status_code
                needed = least_role(method, path)
                if needed is None:
                    ok = status not in (401, 403)
                elif who == "none":
                    ok = status == 401
                elif RANK[who] < RANK[needed]:
                    ok = status == 403
                else:
                    ok = status not in (401, 403) and status < 500
                if not ok:
                    failures.append(f"{method} {url} as {who}: {status} (needs {needed})")
    assert not failures, "\n".join(failures)


def test_401_and_403_answers(secure: TestClient, tokens: dict[str, str], keys: ApiKeys) -> None:
    missing = secure.get("/api/v1/tools", headers={"X-Request-ID": "no-key-1"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.json()["error"]["request_id"] == "no-key-1"
    for bad in ("nonsense", "mlk_0123456789ab_wrong", tokens["viewer"] + "x", "Basic abc"):
        headers = {"Authorization": bad} if bad.startswith("Basic") else bearer(bad)
        answer = secure.get("/api/v1/tools", headers=headers)
        assert answer.status_code == 401, bad
        assert "www-authenticate" in answer.headers
        assert set(answer.json()["error"]) == {"code", "message", "details", "request_id"}
    wrong_role = secure.post("/api/v1/tools", json=tool_body(), headers=bearer(tokens["viewer"]))
    assert wrong_role.status_code == 403
    assert wrong_role.json()["error"]["code"] == "forbidden"
    assert "editor" in wrong_role.json()["error"]["message"]
    # A revoked key stops working at once.
    info, token = keys.create("short-lived", "viewer")
    assert secure.get("/api/v1/tools", headers=bearer(token)).status_code == 200
    keys.revoke(info.id)
    assert secure.get("/api/v1/tools", headers=bearer(token)).status_code == 401


def test_mcp_needs_a_key_unless_turned_off(container, tokens: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    for mcp_auth, anonymous in (("on", 401), ("off", 200)):
        app = build_app(container, rate_limit="off", mcp_auth=mcp_auth)
        with TestClient(app, raise_server_exceptions=False) as c:
            assert c.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS).status_code == anonymous
            keyed = MCP_HEADERS | bearer(tokens["viewer"])
            assert c.post("/mcp", json=INITIALIZE, headers=keyed).status_code == 200
            # The API still needs a key either way.
            assert c.get("/api/v1/tools").status_code == 401


def test_admin_routes(secure: TestClient, tokens: dict[str, str]) -> None:
    admin = bearer(tokens["admin"])
    created = secure.post(
        "/api/v1/admin/keys", json={"name": "ci", "role": "editor"}, headers=admin
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith(f"mlk_{created.json()['id']}_")
    assert secure.post("/api/v1/tools", json=tool_body(), headers=bearer(key)).status_code == 201
    listed = secure.get("/api/v1/admin/keys", headers=admin)
    assert created.json()["id"] in {k["id"] for k in listed.json()["items"]}
    assert key.split("_", 2)[2] not in listed.text
    assert "secret" not in listed.text
    revoked = secure.delete(f"/api/v1/admin/keys/{created.json()['id']}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    assert secure.get("/api/v1/tools", headers=bearer(key)).status_code == 401
    assert secure.delete("/api/v1/admin/keys/0123456789ab", headers=admin).status_code == 404
    bad_role = secure.post("/api/v1/admin/keys", json={"name": "x", "role": "root"}, headers=admin)
    assert bad_role.status_code == 422
    status = secure.get("/api/v1/admin/status", headers=admin).json()
    assert {"head", "relay", "projections", "vectors"} <= set(status)
    retried = secure.post("/api/v1/admin/dlq/retry", headers=admin)
    assert retried.status_code == 200
    assert set(retried.json()) == {"applied", "dead_lettered"}


# --- the actor ----------------------------------------------------------------------------------


def test_the_acting_key_is_the_events_actor(  # type: ignore[no-untyped-def]
    secure: TestClient, keys: ApiKeys, client
) -> None:
    editor, editor_token = keys.create("deploy-bot", "editor")
    admin, admin_token = keys.create("alice", "admin")
    # X-Actor cannot override the key when auth is on.
    headers = bearer(editor_token) | {"X-Actor": "mallory", "X-Reason": "release"}
    created = secure.post("/api/v1/tools", json=tool_body(), headers=headers)
    assert created.status_code == 201
    tool = created.json()["id"]
    assert secure.delete(f"/api/v1/tools/{tool}", headers=bearer(admin_token)).status_code == 200
    events = secure.get(f"/api/v1/tools/{tool}/events", headers=bearer(editor_token)).json()
    actors = [e["actor"] for e in events["items"]]
    assert actors == [f"key:{editor.id}:deploy-bot", f"key:{admin.id}:alice"], events
    assert events["items"][0]["reason"] == "release"
    # With auth off (the session's client) X-Actor is still recorded.
    off = client.post("/api/v1/tools", json=tool_body(), headers={"X-Actor": "bob"}).json()
    assert client.get(f"/api/v1/tools/{off['id']}/events").json()["items"][0]["actor"] == "bob"


# --- the keys CLI -------------------------------------------------------------------------------


def cli(database_url: str, secret_key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "MCP_LEDGER_SECRET_KEY": secret_key}
    env["MCP_LEDGER_VECTORS"] = "off"
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "keys", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_keys_cli_create_list_revoke(  # type: ignore[no-untyped-def]
    database_url: str, secret_key: str, secure: TestClient, container
) -> None:
    name = f"ci-{uuid.uuid4().hex[:6]}"
    created = cli(database_url, secret_key, "create", "--role", "viewer", "--name", name)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert re.fullmatch(r"mlk_[0-9a-f]{12}_[A-Za-z0-9_-]{40,}", token), created.stdout
    key_id, secret = token.split("_", 2)[1:]
    assert "api_key_created" in created.stderr
    assert secret not in created.stderr
    assert secure.get("/api/v1/tools", headers=bearer(token)).status_code == 200

    listed = cli(database_url, secret_key, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert secret not in listed.stdout
    mine = [k for k in json.loads(listed.stdout) if k["id"] == key_id]
    assert len(mine) == 1
    assert mine[0]["name"] == name
    assert mine[0]["role"] == "viewer"
    assert mine[0]["last_used_at"] is not None  # the request above used it
    table = cli(database_url, secret_key, "list")
    assert key_id in table.stdout
    assert secret not in table.stdout
    # Only the hash is stored.
    with container.read_side.connection() as conn:
        row = conn.execute("SELECT * FROM ledger_api_keys WHERE id = %s", (key_id,)).fetchone()
    assert secret not in str(row)
    assert secret.encode() not in bytes(row["secret_sha256"])

    revoked = cli(database_url, secret_key, "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert "api_key_revoked" in revoked.stderr
    assert secure.get("/api/v1/tools", headers=bearer(token)).status_code == 401
    assert cli(database_url, secret_key, "revoke", "0123456789ab").returncode == 1
    bad = cli(database_url, secret_key, "create", "--role", "root", "--name", "x")
    assert bad.returncode == 2
    assert "viewer" in bad.stderr


# --- rate limits --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("no Redis: run with REDIS_URL (scripts/redis starts one)")
    return url


def test_a_burst_over_the_limit_gets_429_and_other_keys_are_unaffected(  # type: ignore[no-untyped-def]
    container, keys: ApiKeys, redis_url: str
) -> None:
    app = build_app(
        container, redis_url=redis_url, rate_limit="on", rate_limit_read="0.5/3",
        rate_limit_write="0.5/2",
    )  # fmt: skip
    first, second = keys.create("burst-1", "editor")[1], keys.create("burst-2", "viewer")[1]
    with TestClient(app, raise_server_exceptions=False) as c:
        answers = [c.get("/api/v1/tools", headers=bearer(first)) for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        limited = answers[3]
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 2  # one token at 0.5/s
        assert limited.headers["x-content-type-options"] == "nosniff"
        # Another key has its own bucket; another route class too.
        assert c.get("/api/v1/tools", headers=bearer(second)).status_code == 200
        assert c.post("/api/v1/tools", json=tool_body(), headers=bearer(first)).status_code == 201
        # Open paths are never limited.
        assert all(c.get("/health/live").status_code == 200 for _ in range(5))


def test_without_auth_the_client_address_is_limited(container, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    import redis

    redis.Redis.from_url(redis_url).delete("mcp-ledger:ratelimit:search:ip:testclient")
    app = build_app(
        container, auth="off", redis_url=redis_url, rate_limit="on", rate_limit_search="0.1/2"
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        codes = [c.get("/api/v1/search", params={"q": "x"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_redis_down_fails_open_and_is_counted(container, tokens: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client import REGISTRY

    name = "mcp_ledger_rate_limit_failures_total"
    before = REGISTRY.get_sample_value(name) or 0.0
    closed = f"redis://127.0.0.1:{free_port()}/0"
    app = build_app(container, redis_url=closed, rate_limit="on", rate_limit_read="0.1/1")
    with TestClient(app, raise_server_exceptions=False) as c:
        viewer = bearer(tokens["viewer"])
        codes = [c.get("/api/v1/tools", headers=viewer).status_code for _ in range(4)]
    assert codes == [200] * 4
    assert (REGISTRY.get_sample_value(name) or 0.0) - before == 4


def test_no_redis_url_means_no_rate_limits(container, tokens: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    app = build_app(container, redis_url=None, rate_limit="on", rate_limit_read="0.1/1")
    with TestClient(app, raise_server_exceptions=False) as c:
        viewer = bearer(tokens["viewer"])
        assert [c.get("/api/v1/tools", headers=viewer).status_code for _ in range(3)] == [200] * 3


# --- hygiene ------------------------------------------------------------------------------------


def test_security_headers_on_every_answer(container, tokens: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    app = build_app(container, rate_limit="off", max_body_bytes=2048, https="on")
    with TestClient(app, raise_server_exceptions=False) as c:
        answers = {
            "ok": c.get("/api/v1/tools", headers=bearer(tokens["viewer"])),
            "401": c.get("/api/v1/tools"),
            "404": c.get("/api/v1/tools/nope", headers=bearer(tokens["viewer"])),
            "413": c.post("/api/v1/tools", content=b"x" * 4096, headers=bearer(tokens["editor"])),
            "health": c.get("/health/live"),
            "docs": c.get("/docs"),
        }
    assert answers["413"].status_code == 413
    assert answers["413"].json()["error"]["code"] == "payload_too_large"
    for what, answer in answers.items():
        h = answer.headers
        assert h["x-content-type-options"] == "nosniff", what
        assert h["x-frame-options"] == "DENY", what
        assert h["referrer-policy"] == "no-referrer", what
        assert h["strict-transport-security"].startswith("max-age="), what
        assert h["cache-control"] == "no-store", what
        if what == "docs":
            assert "content-security-policy" not in h  # Swagger UI loads from a CDN
        else:
            assert "default-src 'none'" in h["content-security-policy"], what
    # HSTS only when https is configured (or the request came over https).
    with TestClient(build_app(container, rate_limit="off")) as c:
        assert "strict-transport-security" not in c.get("/health/live").headers
    with TestClient(build_app(container, rate_limit="off"), base_url="https://testserver") as c:
        assert "strict-transport-security" in c.get("/health/live").headers


def test_cors_allowlist(container, tokens: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    allowed, other = "https://console.example.com", "https://evil.example.net"
    app = build_app(container, rate_limit="off", cors_origins=f"{allowed}, http://localhost:3000")
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as c:
        ok = c.options("/api/v1/tools", headers={"Origin": allowed, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        refused = c.options("/api/v1/tools", headers={"Origin": other, **preflight})
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        simple = c.get("/api/v1/tools", headers={"Origin": allowed, **bearer(tokens["viewer"])})
        assert simple.headers["access-control-allow-origin"] == allowed
        assert "x-ledger-position" in simple.headers["access-control-expose-headers"].lower()
        denied = c.get("/api/v1/tools", headers={"Origin": allowed})  # 401 still readable
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == allowed
        cross = c.get("/api/v1/tools", headers={"Origin": other, **bearer(tokens["viewer"])})
        assert "access-control-allow-origin" not in cross.headers
    # Without the setting there is no CORS at all.
    with TestClient(build_app(container, rate_limit="off")) as c:
        answer = c.options("/api/v1/tools", headers={"Origin": allowed, **preflight})
        assert "access-control-allow-origin" not in answer.headers


def test_no_secret_in_logs_or_answers(  # type: ignore[no-untyped-def]
    container, tokens: dict[str, str], log_output: io.StringIO
) -> None:
    def secret(label: str) -> str:
        return f"{label}-{uuid.uuid4().hex}"

    sealed, api_key_header, cookie, bad_input = (
        secret("cfg"), secret("xapikey"), secret("cookie"), secret("badinput")
    )  # fmt: skip
    forged = f"mlk_0123456789ab_{secret('forged')}"
    editor = tokens["editor"]
    app = build_app(container, rate_limit="off")
    headers = bearer(editor) | {"X-Api-Key": api_key_header, "Cookie": f"session={cookie}"}
    answers = []
    with TestClient(app, raise_server_exceptions=False) as c:
        body = tool_body(config={"api_token": sealed, "password": sealed})
        answers.append(c.post("/api/v1/tools", json=body, headers=headers))
        assert answers[-1].status_code == 201, answers[-1].text
        tool = answers[-1].json()["id"]
        answers.append(c.get(f"/api/v1/tools/{tool}", headers=headers))
        answers.append(c.get(f"/api/v1/tools/{tool}/events", headers=headers))
        # Bad requests whose invalid fields hold secrets: 422s name fields, never values.
        invalid = [
            tool_body(slug="Not A Slug", config={"api_token": bad_input}),
            tool_body(version=bad_input, config={"token": bad_input}),
            tool_body(status=bad_input),
            # (a JSON-Schema error quotes the schema, which holds no secret by design)
            tool_body(input_schema={"type": "nope"}, config={"api_key": bad_input}),
            {**tool_body(), "unknown_field": bad_input},
        ]
        for bad in invalid:
            answers.append(c.post("/api/v1/tools", json=bad, headers=headers))
            assert answers[-1].status_code in (400, 422), answers[-1].text
        answers.append(c.post("/api/v1/tools", content=f'{{"slug": "{bad_input}', headers=headers))
        answers.append(
            c.post("/api/v1/tools:batch", content=f"tools: [{{slug: {bad_input}",
                   headers=headers | {"Content-Type": "application/yaml"})
        )  # fmt: skip
        answers.append(
            c.patch(f"/api/v1/tools/{tool}", json={"version": bad_input}, headers=headers)
        )
        # Bad and forged keys, in the header and in a query string.
        answers.append(c.get("/api/v1/tools", headers=bearer(forged)))
        answers.append(c.get("/api/v1/tools", headers={"Authorization": f"Basic {forged}"}))
        answers.append(c.get("/api/v1/tools", params={"text": "x"}, headers=bearer(forged)))
        answers.append(c.post("/api/v1/tools", json=tool_body(), headers=bearer(tokens["viewer"])))
    logs = log_output.getvalue()
    assert '"request"' in logs  # the capture did capture
    assert "auth_failed" in logs
    editor_secret = editor.split("_", 2)[2]
    viewer_secret = tokens["viewer"].split("_", 2)[2]
    for value in (sealed, api_key_header, cookie, bad_input, forged, editor_secret, viewer_secret):
        assert value not in logs, value
        for answer in answers:
            assert value not in answer.text, (value, answer.request.url, answer.text)
            assert value not in str(answer.headers), value


def test_auth_defaults_and_the_warning(container, capsys) -> None:  # type: ignore[no-untyped-def]
    from infra.settings import load_settings

    embedded = load_settings(database_url=None)
    assert not embedded.auth_enabled
    assert not embedded.mcp_auth_enabled
    server = load_settings(database_url="postgresql://u@h/db")
    assert server.auth_enabled
    assert server.mcp_auth_enabled
    assert not load_settings(database_url="postgresql://u@h/db", auth="off").auth_enabled
    assert load_settings(auth="off", mcp_auth="on").mcp_auth_enabled
    build_app(container, auth="off", rate_limit="off")
    assert "AUTHENTICATION IS OFF" in capsys.readouterr().err
    build_app(container, rate_limit="off")
    assert "AUTHENTICATION IS OFF" not in capsys.readouterr().err


# --- OIDC (optional): JWTs verified against a local JWKS server ---------------------------------


@pytest.fixture(scope="module")
def identity_provider() -> Iterator[dict[str, Any]]:
    """An RSA signing key, its JWKS served over real HTTP, and a token minter."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def mint(signer: Any = key, alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": "https://idp.test", "aud": "mcp-ledger", "sub": "u-1", "iat": now,
                "exp": now + 300, "preferred_username": "jane",
                "realm_access": {"roles": ["ledger-editors"]}, **claims}  # fmt: skip
        return jwt.encode(body, signer, algorithm=alg, headers={"kid": "k1"})

    yield {"url": f"http://127.0.0.1:{server.server_port}/jwks.json", "mint": mint,
           "other": other, "public_pem": key.public_key()}  # fmt: skip
    server.shutdown()


def hmac_token(token: str, secret: bytes) -> str:
    """The token's claims re-signed with HS256 keyed by `secret` (PyJWT refuses to mint it)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    signing_input = f"{header}.{token.split('.')[1]}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_oidc_tokens_map_a_claim_to_roles(  # type: ignore[no-untyped-def]
    container, identity_provider: dict[str, Any], tokens: dict[str, str]
) -> None:
    from cryptography.hazmat.primitives import serialization

    mint = identity_provider["mint"]
    app = build_app(
        container, rate_limit="off", oidc_jwks_url=identity_provider["url"],
        oidc_issuer="https://idp.test", oidc_audience="mcp-ledger",
        oidc_role_claim="realm_access.roles",
        oidc_roles="ledger-readers=viewer, ledger-editors=editor, ledger-admins=admin",
    )  # fmt: skip
    pem = identity_provider["public_pem"].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        editor = bearer(mint())
        created = c.post("/api/v1/tools", json=tool_body(), headers=editor)
        assert created.status_code == 201, created.text
        events = c.get(f"/api/v1/tools/{created.json()['id']}/events", headers=editor).json()
        assert events["items"][0]["actor"] == "oidc:u-1:jane"
        reader = bearer(mint(realm_access={"roles": ["ledger-readers", "unrelated"]}))
        assert c.get("/api/v1/tools", headers=reader).status_code == 200
        assert c.post("/api/v1/tools", json=tool_body(), headers=reader).status_code == 403
        admin = bearer(mint(realm_access={"roles": ["ledger-readers", "ledger-admins"]}))
        assert c.get("/api/v1/admin/keys", headers=admin).status_code == 200
        refused = {
            "no role": mint(realm_access={"roles": ["unrelated"]}),
            "expired": mint(exp=1_000_000_000),
            "audience": mint(aud="someone-else"),
            "issuer": mint(iss="https://evil.test"),
            "signer": mint(signer=identity_provider["other"]),
            "hmac with the public key": hmac_token(mint(), pem),
            "garbage": "a.b.c",
        }
        for what, token in refused.items():
            answer = c.get("/api/v1/tools", headers=bearer(token))
            assert answer.status_code == 401, what
        # API keys keep working beside OIDC.
        assert c.get("/api/v1/tools", headers=bearer(tokens["viewer"])).status_code == 200
