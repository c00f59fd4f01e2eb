"""Hardening of the HTTP edge: failed authentications limited per client address (with Redis
and without), X-Forwarded-For honoured only from trusted proxies, /metrics behind a key or on a
port of its own, and a stalled append answered 503 with Retry-After."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from commands.errors import AppendTimedOut, StoreBusy
from infra.security.api_keys import key_store
from tests.conftest import free_port, tool_body

BAD = "mlk_nosuchkey_" + "x" * 32


def build_app(container, **settings: Any):  # type: ignore[no-untyped-def]
    from api.app import create_app

    changed = container.settings.model_copy(update={"auth": "on", **settings})
    return create_app(dataclasses.replace(container, settings=changed))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def viewer(container) -> str:  # type: ignore[no-untyped-def]
    return key_store(container.read_side).create(f"hardening-{uuid.uuid4().hex[:6]}", "viewer")[1]


@pytest.mark.parametrize("store", ["redis", "memory"])
def test_failed_authentications_are_limited_per_address(container, viewer, store) -> None:  # type: ignore[no-untyped-def]
    import os

    redis_url = os.environ.get("REDIS_URL") if store == "redis" else None
    if store == "redis" and not redis_url:
        pytest.skip("no REDIS_URL")
    app = build_app(
        container, rate_limit="on", redis_url=redis_url, rate_limit_auth_failure="0.01/3"
    )
    attacker = (f"198.51.100.{uuid.uuid4().int % 250 + 1}", 40000)
    with TestClient(app, client=attacker) as c:
        codes = [c.get("/api/v1/tools", headers=bearer(BAD)).status_code for _ in range(3)]
        assert codes == [401, 401, 401]
        limited = c.get("/api/v1/tools", headers=bearer(BAD))
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "too_many_failed_authentications"
        assert int(limited.headers["retry-after"]) >= 1
        # Blocked before any key is looked at: a valid key from there waits too...
        assert c.get("/api/v1/tools", headers=bearer(viewer)).status_code == 429
        assert c.get("/api/v1/tools").status_code == 429  # ...and so does no key at all
    # ...while another address is not affected.
    with TestClient(app, client=("203.0.113.9", 40000)) as other:
        assert other.get("/api/v1/tools", headers=bearer(viewer)).status_code == 200


def test_successful_requests_never_count_as_failures(container, viewer) -> None:  # type: ignore[no-untyped-def]
    app = build_app(container, rate_limit="on", redis_url=None, rate_limit_auth_failure="0.01/2")
    with TestClient(app, client=("192.0.2.77", 40000)) as c:
        for _ in range(10):
            assert c.get("/api/v1/tools", headers=bearer(viewer)).status_code == 200


def test_x_forwarded_for_is_honoured_only_from_trusted_proxies(container, viewer) -> None:  # type: ignore[no-untyped-def]
    settings = {"rate_limit": "on", "redis_url": None, "rate_limit_auth_failure": "0.01/2"}
    untrusted = build_app(container, **settings)
    with TestClient(untrusted, client=("192.0.2.10", 40000)) as c:
        # Rotating X-Forwarded-For does not help: the peer's own address is limited.
        for i in range(2):
            spoofed = {**bearer(BAD), "X-Forwarded-For": f"10.9.9.{i}"}
            assert c.get("/api/v1/tools", headers=spoofed).status_code == 401
        spoofed = {**bearer(BAD), "X-Forwarded-For": "10.9.9.99"}
        assert c.get("/api/v1/tools", headers=spoofed).status_code == 429

    behind_proxy = build_app(container, **settings, trusted_proxies="192.0.2.0/24")
    with TestClient(behind_proxy, client=("192.0.2.10", 40000)) as proxy:
        for _ in range(2):
            sent = {**bearer(BAD), "X-Forwarded-For": "198.18.0.1"}
            assert proxy.get("/api/v1/tools", headers=sent).status_code == 401
        sent = {**bearer(BAD), "X-Forwarded-For": "198.18.0.1"}
        assert proxy.get("/api/v1/tools", headers=sent).status_code == 429
        # The same proxy forwarding another client: that client is not limited.
        other = {**bearer(viewer), "X-Forwarded-For": "198.18.0.2"}
        assert proxy.get("/api/v1/tools", headers=other).status_code == 200


def test_a_bad_trusted_proxy_setting_is_named() -> None:
    from infra.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="MCP_LEDGER_TRUSTED_PROXIES"):
        load_settings(trusted_proxies="10.0.0.0/8, not-an-address")


def test_metrics_behind_a_key(container, viewer) -> None:  # type: ignore[no-untyped-def]
    with TestClient(build_app(container, rate_limit="off", metrics_auth=True)) as c:
        assert c.get("/metrics").status_code == 401
        answer = c.get("/metrics", headers=bearer(viewer))
        assert answer.status_code == 200
        assert "mcp_ledger_" in answer.text
    with TestClient(build_app(container, rate_limit="off")) as c:
        assert c.get("/metrics").status_code == 200  # the default: open, like the probes


def test_metrics_on_a_port_of_its_own(container) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    with TestClient(build_app(container, rate_limit="off", api_metrics_port=port)) as c:
        assert c.get("/metrics").status_code == 404
        deadline = time.monotonic() + 10
        while True:
            try:
                apart = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert apart.status_code == 200
        assert "mcp_ledger_http_requests" in apart.text
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)  # stopped with the app


@pytest.mark.parametrize("error", [AppendTimedOut("took too long"), StoreBusy("held")])
def test_a_store_that_cannot_take_the_append_answers_503_with_retry_after(
    container, monkeypatch, error
) -> None:  # type: ignore[no-untyped-def]
    def refuse(*_: Any, **__: Any) -> Any:
        raise error

    monkeypatch.setattr(container.deps.store, "append", refuse)
    with TestClient(build_app(container, auth="off", rate_limit="off")) as c:
        answer = c.post("/api/v1/tools", json=tool_body())
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == error.code
    assert answer.headers["retry-after"] == "1"


def test_a_tool_registered_without_an_author_is_authored_by_the_key(container) -> None:  # type: ignore[no-untyped-def]
    from commands.common import load
    from commands.tools import TOOL

    name = f"ci-bot-{uuid.uuid4().hex[:6]}"
    token = key_store(container.read_side).create(name, "editor")[1]
    body = tool_body()
    del body["author"]
    with TestClient(build_app(container, rate_limit="off")) as c:
        answer = c.post("/api/v1/tools", json=body, headers=bearer(token))
    assert answer.status_code == 201, answer.text
    assert load(container.deps, TOOL, str(body["slug"])).author == name
