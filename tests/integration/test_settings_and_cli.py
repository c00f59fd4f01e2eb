"""Start-up settings and the CLI; request ids; the request size limit."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest
import structlog

from tests.conftest import ROOT, LiveServer, tool_body


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def env_with(**values: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LEDGER_")}
    for name, value in values.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:hunter2@db:3306/ledger",
        "not a url at all",
        "postgresql://user:hunter2@db:5432",  # no database name
    ],
)
def test_a_bad_database_url_stops_start_up_with_exit_2(url: str, secret_key: str) -> None:
    done = cli("api", env=env_with(DATABASE_URL=url, MCP_LEDGER_SECRET_KEY=secret_key))
    assert done.returncode == 2, done.stderr
    assert "DATABASE_URL" in done.stderr
    assert "postgresql://USER:PASSWORD@HOST:PORT/DBNAME" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("key", ["short", "x" * 44, "not base64 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"])
def test_a_bad_secret_key_stops_start_up_with_exit_2(key: str, database_url: str) -> None:
    done = cli("api", env=env_with(DATABASE_URL=database_url, MCP_LEDGER_SECRET_KEY=key))
    assert done.returncode == 2, done.stderr
    assert "MCP_LEDGER_SECRET_KEY" in done.stderr
    assert "Fernet key" in done.stderr
    assert "Fernet.generate_key()" in done.stderr  # says how to make one
    assert key not in done.stderr


def test_a_missing_secret_key_with_a_database_url_stops_start_up(database_url: str) -> None:
    done = cli("api", env=env_with(DATABASE_URL=database_url))
    assert done.returncode == 2, done.stderr
    assert "MCP_LEDGER_SECRET_KEY" in done.stderr
    assert "Fernet key" in done.stderr


@pytest.mark.parametrize(
    ("name", "value", "form"),
    [
        ("MCP_LEDGER_LOG_LEVEL", "verbose", "one of debug, info, warning, error"),
        ("MCP_LEDGER_DB_POOL_SIZE", "0", "an integer from 1 to 100"),
        ("MCP_LEDGER_IMPORT_BATCH_SIZE", "many", "an integer from 1 to 10000"),
    ],
)
def test_other_bad_settings_are_named_with_their_form(
    name: str, value: str, form: str, database_url: str, secret_key: str
) -> None:
    env = env_with(DATABASE_URL=database_url, MCP_LEDGER_SECRET_KEY=secret_key, **{name: value})
    done = cli("migrate", env=env)
    assert done.returncode == 2, done.stderr
    assert name in done.stderr
    assert form in done.stderr


def test_every_bad_setting_is_reported_at_once(secret_key: str) -> None:
    done = cli(
        "import",
        "tools.json",
        env=env_with(DATABASE_URL="sqlite:///x.db", MCP_LEDGER_SECRET_KEY="nope"),
    )
    assert done.returncode == 2
    assert "DATABASE_URL" in done.stderr
    assert "MCP_LEDGER_SECRET_KEY" in done.stderr


def test_migrate_is_safe_to_run_again(database_url: str, secret_key: str, container) -> None:  # type: ignore[no-untyped-def]
    env = env_with(DATABASE_URL=database_url, MCP_LEDGER_SECRET_KEY=secret_key)
    for _ in range(2):
        done = cli("migrate", env=env)
        assert done.returncode == 0, done.stderr
        assert "migrated" in done.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ["api", "up", "migrate", "import"]),
        (("up",), ["--host", "--port", "--data-dir"]),
        (("api",), ["--host", "--port", "DATABASE_URL"]),
        (("migrate",), ["Upgrade the database schema", "--to", "--status"]),
        (("import",), ["FILE", "--batch-size", "--actor"]),
    ],
)
def test_help_of_every_command(args: tuple[str, ...], expected: list[str]) -> None:
    done = cli(*args, "--help", env=env_with())
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    for text in expected:
        assert text in done.stdout


def test_an_unknown_command_is_a_usage_error() -> None:
    done = cli("serve-everything", env=env_with())
    assert done.returncode == 2
    assert "serve-everything" in done.stderr


# --- request ids ------------------------------------------------------------------------------


def test_request_id_is_echoed_and_recorded_as_correlation_id(client) -> None:  # type: ignore[no-untyped-def]
    rid = f"req-{uuid.uuid4().hex}"
    created = client.post("/api/v1/tools", json=tool_body(), headers={"X-Request-ID": rid})
    assert created.headers["x-request-id"] == rid
    tool_id = created.json()["id"]
    client.patch(f"/api/v1/tools/{tool_id}", json={"name": "B"}, headers={"X-Request-ID": rid})
    client.post(f"/api/v1/tools/{tool_id}/activate", headers={"X-Request-ID": rid + "-2"})
    events = client.get(f"/api/v1/tools/{tool_id}/events").json()["items"]
    assert [e["correlation_id"] for e in events] == [rid, rid, rid + "-2"]
    # Each command is its own cause, distinct from the request id.
    causes = [e["causation_id"] for e in events]
    assert len(set(causes)) == 3
    assert rid not in causes
    # Errors carry it too, in the header and in the envelope.
    missing = client.get("/api/v1/tools/nope-nope", headers={"X-Request-ID": rid})
    assert missing.headers["x-request-id"] == rid
    assert missing.json()["error"]["request_id"] == rid


@pytest.mark.parametrize("given", [None, "has spaces", "x" * 129, "new\\nline", "semi;colon"])
def test_a_missing_or_unsafe_request_id_is_replaced(client, given) -> None:  # type: ignore[no-untyped-def]
    headers = {} if given is None else {"X-Request-ID": given}
    created = client.post("/api/v1/tools", json=tool_body(), headers=headers)
    rid = created.headers["x-request-id"]
    assert rid != given
    assert uuid.UUID(rid)
    (event,) = client.get(f"/api/v1/tools/{created.json()['id']}/events").json()["items"]
    assert event["correlation_id"] == rid


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The project's logging configuration (JSON, info), writing into a buffer; restored after."""
    from infra.observability.logging import configure_logging

    saved = structlog.get_config()
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("info", "json")
    yield buffer
    structlog.configure(**saved)
    root.handlers, root.level = saved_root[0], saved_root[1]


def test_log_lines_carry_the_request_id(client, log_output) -> None:  # type: ignore[no-untyped-def]
    rid = f"log-{uuid.uuid4().hex}"
    client.post("/api/v1/tools", json=tool_body(), headers={"X-Request-ID": rid})
    lines = [json.loads(line) for line in log_output.getvalue().splitlines() if line.strip()]
    (access,) = [line for line in lines if line.get("request_id") == rid]
    assert access["event"] == "request"
    assert (access["method"], access["path"], access["status"]) == ("POST", "/api/v1/tools", 201)


# --- request size limit -----------------------------------------------------------------------

LIMIT = 4096


@pytest.fixture(scope="module")
def small_client(container):  # type: ignore[no-untyped-def]
    """The app over the same store, with a small body limit."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    settings = container.settings.model_copy(update={"max_body_bytes": LIMIT})
    with TestClient(create_app(dataclasses.replace(container, settings=settings))) as c:
        yield c


def test_an_oversized_body_gets_413_in_the_envelope(small_client) -> None:  # type: ignore[no-untyped-def]
    big = tool_body(long_description="x" * (LIMIT + 1))
    answer = small_client.post("/api/v1/tools", json=big, headers={"X-Request-ID": "too-big"})
    assert answer.status_code == 413
    assert answer.json()["error"] == {
        "code": "payload_too_large",
        "message": f"the request body is larger than {LIMIT} bytes",
        "details": [],
        "request_id": "too-big",
    }
    assert answer.headers["x-request-id"] == "too-big"
    assert small_client.get(f"/api/v1/tools/{big['slug']}").status_code == 404
    # Just under the limit is fine.
    ok = tool_body(long_description="x" * (LIMIT - 600))
    assert small_client.post("/api/v1/tools", json=ok).status_code == 201


@pytest.fixture(scope="module")
def small_server(database_url, secret_key, tmp_path_factory, container) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = LiveServer(database_url, secret_key, tmp_path_factory.mktemp("small") / "api.log")
    server.env["MCP_LEDGER_MAX_BODY_BYTES"] = str(LIMIT)
    yield server.start()
    server.stop()


def chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    body = json.dumps(tool_body(long_description="y" * total)).encode()
    for i in range(0, len(body), size):
        yield body[i : i + size]


@pytest.mark.parametrize("how", ["content-length", "chunked"])
def test_the_live_server_refuses_oversized_bodies(small_server: LiveServer, how: str) -> None:
    url = f"{small_server.url}/api/v1/tools"
    if how == "chunked":
        # No Content-Length: the limit must hold for streamed bodies too.
        answer = httpx.post(url, content=chunks(4 * LIMIT), headers=_json())
    else:
        answer = httpx.post(url, json=tool_body(long_description="y" * (4 * LIMIT)))
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "payload_too_large"
    small = httpx.post(url, content=chunks(100), headers=_json())
    assert small.status_code == 201, small.text


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def test_cli_error_output_is_plain_text() -> None:
    # Settings errors go to stderr, one line per setting, without a traceback.
    done = cli("api", env=env_with(DATABASE_URL="http://x/y", MCP_LEDGER_SECRET_KEY="k"))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[0] == "invalid settings:"
    assert {line.split(":")[0].strip() for line in lines[1:]} == {
        "DATABASE_URL",
        "MCP_LEDGER_SECRET_KEY",
    }
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
