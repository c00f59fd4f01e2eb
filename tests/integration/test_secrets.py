"""Sensitive config values: sealed in the store, never in clear in the database, in any API answer,
or in the logs (the live server's log file and in-process structlog output)."""

from __future__ import annotations

import io
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import yaml

from domain.secrets import SEALED
from tests.conftest import LiveServer, tool_body
from tests.ledger_sql import connect


def secret(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex}"


def database_text(database_url: str) -> str:
    """Every row of every table of the database, as text (bytea as its bytes decoded)."""
    parts = []
    with connect(database_url) as db:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        ]
        assert "ledger_events" in tables
        for table in tables:
            for (row,) in db.execute(f'SELECT t::text FROM "{table}" t').fetchall():
                parts.append(row)
        for (state,) in db.execute("SELECT state FROM ledger_events").fetchall():
            parts.append(bytes(state).decode("utf-8", "replace"))
    return "\n".join(parts)


def sealed_config(container: Any, tool_id: str) -> dict[str, Any]:
    from commands.common import load
    from commands.tools import TOOL

    return dict(load(container.deps, TOOL, tool_id).config)


@pytest.fixture
def debug_server(
    database_url: str, secret_key: str, tmp_path: Path, container
) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """The live server logging at debug level, so that anything it might leak is written."""
    server = LiveServer(database_url, secret_key, tmp_path / "api.log")
    server.env["MCP_LEDGER_LOG_LEVEL"] = "debug"
    yield server.start()
    server.stop()


def test_secrets_never_leave_in_clear(debug_server: LiveServer, container, database_url) -> None:  # type: ignore[no-untyped-def]
    token, dsn, header_secret, key_secret, bad_secret = (
        secret("tok"),
        secret("dsn"),
        secret("bearer"),
        secret("xapikey"),
        secret("bad"),
    )
    short = f"pw{uuid.uuid4().hex[:8]}"  # short enough to fit a parser's error excerpt
    clear = [token, dsn, header_secret, key_secret, bad_secret, short]
    seen: list[str] = []  # every answer the API gave
    with httpx.Client(base_url=debug_server.url, timeout=10) as http:

        def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            answer = http.request(method, path, **kwargs)
            seen.append(answer.text + str(answer.headers))
            return answer

        auth = {"Authorization": f"Bearer {header_secret}", "X-Api-Key": key_secret}
        body = tool_body(
            config={"api_token": token, "dsn": f"postgresql://u:{dsn}@db/x", "region": "eu"},
            sensitive_keys=["dsn"],
        )
        created = call(
            "POST", "/api/v1/tools", json=body, headers={**auth, "X-Request-ID": "secret-reg"}
        )
        assert created.status_code == 201, created.text
        tool_id = created.json()["id"]

        container.read_side.follower.catch_up()  # the live server runs no projections
        written = {"min_position": created.json()["position"]}
        got = call("GET", f"/api/v1/tools/{tool_id}", headers=auth, params=written).json()
        assert got["tool"]["config"] == {"api_token": "***", "dsn": "***", "region": "eu"}
        assert got["tool"]["sensitive_keys"] == ["api_token", "dsn"]

        # The redacted placeholder keeps the stored secret; other changes still apply.
        before = sealed_config(container, tool_id)
        kept = call(
            "PATCH",
            f"/api/v1/tools/{tool_id}",
            json={"config": {"api_token": "***", "dsn": "***", "region": "us"}},
            headers=auth,
        )
        assert kept.status_code == 200, kept.text
        after = sealed_config(container, tool_id)
        assert after["api_token"] == before["api_token"]
        assert after["dsn"] == before["dsn"]
        assert after["region"] == "us"

        call("GET", f"/api/v1/tools/{tool_id}/events", headers=auth)
        call("GET", f"/api/v1/tools/{tool_id}", params={"at_version": 1})
        container.read_side.follower.catch_up()
        for path, params in [
            (f"/api/v1/tools/{tool_id}/versions", {"include_snapshot": "true"}),
            (f"/api/v1/tools/{tool_id}/diff", {"from": 1, "to": 2}),
            ("/api/v1/tools", {"tag": body["tags"][0], "include_deleted": "true"}),
        ]:
            assert call("GET", path, params=params).status_code == 200
        # Bad requests carrying secrets: invalid fields, malformed JSON, malformed YAML, a
        # secret in a header of a 404.
        call("POST", "/api/v1/tools", json={**body, "slug": "Bad Slug", "name": bad_secret})
        call("POST", "/api/v1/tools", json={"config": {"password": bad_secret}}, headers=auth)
        call(
            "POST",
            "/api/v1/tools",
            content=f'{{"config": {{"api_token": "{short}", ]'.encode(),
            headers={"Content-Type": "application/json", **auth},
        )
        call(
            "POST",
            "/api/v1/tools:batch",
            content=f"tools:\n- slug: a\n  config:\n    api_token: {short}: x\n".encode(),
            headers={"Content-Type": "application/yaml"},
        )
        call(
            "POST",
            "/api/v1/tools:batch",
            content=yaml.safe_dump({"tools": [{"slug": "x", "api_token": bad_secret}]}).encode(),
            headers={"Content-Type": "application/yaml"},
        )
        call("GET", "/api/v1/tools/no-such-tool", headers=auth)

    debug_server.stop()
    log = Path(debug_server.log_path).read_text()
    assert "secret-reg" in log  # the log was really written at this level
    for value in clear:
        assert value not in log, f"{value} in the server log"
        for answer in seen:
            assert value not in answer, f"{value} in an API answer: {answer[:300]}"
    stored = database_text(database_url)
    assert token not in stored
    assert dsn not in stored
    assert header_secret not in stored
    # The sealed values are really the secrets, encrypted (not dropped or mangled).
    config = sealed_config(container, tool_id)
    assert set(config["api_token"]) == {SEALED}
    assert container.sealer.unseal(uuid.UUID(tool_id), config["api_token"]) == token
    assert container.sealer.unseal(uuid.UUID(tool_id), config["dsn"]) == (
        f"postgresql://u:{dsn}@db/x"
    )


def test_changing_sensitive_keys_keeps_existing_secrets_intact(client, container) -> None:  # type: ignore[no-untyped-def]
    token = secret("tok")
    body = tool_body(config={"api_token": token, "region": "eu"})
    tool_id = client.post("/api/v1/tools", json=body).json()["id"]
    # Declaring another key sensitive must seal it, and leave the already-sealed token as it was.
    answer = client.patch(f"/api/v1/tools/{tool_id}", json={"sensitive_keys": ["region"]})
    assert answer.status_code == 200, answer.text
    config = sealed_config(container, tool_id)
    tool_uuid = uuid.UUID(tool_id)
    assert container.sealer.unseal(tool_uuid, config["region"]) == "eu"
    assert container.sealer.unseal(tool_uuid, config["api_token"]) == token
    got = client.get(f"/api/v1/tools/{tool_id}").json()["tool"]
    assert got["config"] == {"api_token": "***", "region": "***"}
    assert got["sensitive_keys"] == ["api_token", "region"]


def test_a_new_secret_value_replaces_the_old_one(client, container) -> None:  # type: ignore[no-untyped-def]
    old, new = secret("old"), secret("new")
    tool_id = client.post("/api/v1/tools", json=tool_body(config={"password": old})).json()["id"]
    assert client.patch(f"/api/v1/tools/{tool_id}", json={"config": {"password": new}}).is_success
    config = sealed_config(container, tool_id)
    assert container.sealer.unseal(uuid.UUID(tool_id), config["password"]) == new
    events = client.get(f"/api/v1/tools/{tool_id}/events").text
    assert old not in events
    assert new not in events
    assert events.count('"password":"***"') == 2


def test_resending_the_redacted_config_changes_nothing(client) -> None:  # type: ignore[no-untyped-def]
    tool_id = client.post(
        "/api/v1/tools", json=tool_body(config={"api_key": secret("k"), "n": 1})
    ).json()["id"]
    shown = client.get(f"/api/v1/tools/{tool_id}").json()["tool"]["config"]
    answer = client.patch(f"/api/v1/tools/{tool_id}", json={"config": shown})
    assert answer.status_code == 200
    assert answer.json()["version"] == 1


def test_shredding_the_data_key_makes_secrets_unreadable(client, container) -> None:  # type: ignore[no-untyped-def]
    from infra.security.secrets import SecretUnavailable

    tool_id = client.post("/api/v1/tools", json=tool_body(config={"token": secret("t")})).json()[
        "id"
    ]
    config = sealed_config(container, tool_id)
    container.sealer.shred(uuid.UUID(tool_id))
    with pytest.raises(SecretUnavailable):
        container.sealer.unseal(uuid.UUID(tool_id), config["token"])
    # The history itself is intact and still readable.
    assert client.get(f"/api/v1/tools/{tool_id}").json()["tool"]["config"] == {"token": "***"}


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The project's logging configuration (JSON, debug), writing into a buffer; restored after."""
    from infra.observability.logging import configure_logging

    saved = structlog.get_config()
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("debug", "json")
    yield buffer
    structlog.configure(**saved)
    root.handlers, root.level = saved_root[0], saved_root[1]


def test_structlog_output_in_process_has_no_secrets(client, log_output) -> None:  # type: ignore[no-untyped-def]
    token, header, url_password = secret("tok"), secret("hdr"), secret("pw")
    answer = client.post(
        "/api/v1/tools",
        json=tool_body(config={"api_token": token}),
        headers={"Authorization": f"Bearer {header}", "X-Request-ID": "in-process-secret"},
    )
    assert answer.status_code == 201
    client.post("/api/v1/tools", json={"name": token}, headers={"X-Api-Key": header})
    # Whatever a developer passes to the logger is scrubbed: credential-named keys (also nested)
    # and passwords inside Postgres URLs, through structlog and through stdlib logging.
    log = structlog.get_logger("test")
    log.info("calling", api_token=token, headers={"Authorization": header, "accept": "json"})
    log.warning(
        "db", url=f"postgresql://ledger:{url_password}@db:5432/x", items=[{"secret": token}]
    )
    logging.getLogger("uvicorn.error").warning(
        "connect to postgresql://ledger:%s@db/x failed", url_password
    )
    out = log_output.getvalue()
    assert "in-process-secret" in out
    assert '"accept": "json"' in out
    for value in (token, header, url_password):
        assert value not in out
