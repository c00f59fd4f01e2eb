"""Shared fixtures. Integration tests use a real Postgres: each test session gets its own fresh
database on the server named by MCP_LEDGER_TEST_DATABASE_URL (scripts/test provides one)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

pytest_plugins = ["tests.kafka_fixtures", "tests.budget"]

ROOT = Path(__file__).resolve().parent.parent


def _server_url() -> str:
    url = os.environ.get("MCP_LEDGER_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        pytest.exit("no Postgres for the tests: run ./scripts/test (it provides one)", returncode=2)
    return url


def _with_db(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


BACKENDS = ("server", "embedded")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use Postgres run on the server (Debian's PostgreSQL, over TCP); modules
    marked `backends("server", "embedded")` also run on the embedded Postgres exactly as
    `mcp-ledger up` starts it (pgserver's PostgreSQL over its unix socket)."""
    if "database_url" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    backends = marker.args if marker else ("server",)
    assert set(backends) <= set(BACKENDS), backends
    metafunc.parametrize("database_url", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def embedded_postgres() -> Iterator[str]:
    """The quick start's Postgres: started by the same function `mcp-ledger up` uses."""
    from infra.postgres.embedded import start_embedded_postgres, stop_embedded_postgres

    # pgserver runs postgres as its own user, which must reach the data folder (pytest's
    # temporary folders are private to root).
    folder = Path(tempfile.mkdtemp(prefix="mcp-ledger-embedded-"))
    folder.chmod(0o755)
    url, handle = start_embedded_postgres(folder)
    yield url
    stop_embedded_postgres(handle)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test session and backend; dropped afterwards."""
    backend = getattr(request, "param", "server")
    embedded = backend == "embedded"
    server = request.getfixturevalue("embedded_postgres") if embedded else _server_url()
    name = f"ledger_t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_db(server, name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def secret_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture(scope="session")
def settings(database_url: str, secret_key: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from infra.settings import load_settings

    return load_settings(
        database_url=database_url,
        secret_key=secret_key,
        data_dir=tmp_path_factory.mktemp("data"),
        import_batch_size=50,
        read_feed="log",  # these read models are fed by the in-process follower
        # Most tests call the API without keys; tests/integration/test_access_control.py builds
        # its own app with auth and rate limits on.
        auth="off",
        rate_limit="off",
    )


@pytest.fixture(scope="session")
def container(settings):  # type: ignore[no-untyped-def]
    from infra.container import build_container

    c = build_container(settings)
    yield c
    c.close()


@pytest.fixture(scope="session")
def deps(container):  # type: ignore[no-untyped-def]
    return container.deps


def read_your_writes_client(container):  # type: ignore[no-untyped-def]
    """A TestClient whose API reads (GET /api/v1/...) read their own writes: each first lets the
    projections catch up, as a projector would, then asks for `min_position` = the store's last
    position. A read side that does not reach it fails the read (503) instead of going stale."""
    from fastapi.testclient import TestClient
    from starlette import testclient

    from api.app import create_app

    class ReadYourWrites(TestClient):
        def request(self, method, url, *args, params=None, **kwargs):  # type: ignore[no-untyped-def]
            if method.upper() == "GET" and str(url).startswith("/api/v1/"):
                container.read_side.follower.catch_up()
                # The URL type of the HTTP library the TestClient runs on (httpx2 when present).
                target = testclient.httpx.URL(str(url))
                query = target.params.merge(params)  # (httpx would drop the URL's own query)
                if "min_position" not in query:
                    query = query.set("min_position", container.store.head())
                url, params = target.copy_with(params=query), None
            return super().request(method, url, *args, params=params, **kwargs)

    return ReadYourWrites(create_app(container), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def client(container) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """In-process HTTP client over the real app and the real database (reads see prior writes)."""
    with read_your_writes_client(container) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """`mcp-ledger api` in a real subprocess, for concurrency and crash tests."""

    def __init__(self, database_url: str, secret_key: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "MCP_LEDGER_SECRET_KEY": secret_key,
            "MCP_LEDGER_LOG_LEVEL": "warning",
            "MCP_LEDGER_READ_FEED": "log",  # tests catch the read models up from the log
            # The session's own app owns the vector index of this database; a second indexer
            # would drain its outbox into another index.
            "MCP_LEDGER_VECTORS": "off",
            "MCP_LEDGER_DATA_DIR": str(log_path.parent / "data"),
            "MCP_LEDGER_AUTH": "off",  # these tests call the API without keys
            "MCP_LEDGER_RATE_LIMIT": "off",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveServer:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "api", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"api exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("api did not become ready in 30 s")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def live_server(
    database_url: str,
    secret_key: str,
    tmp_path: Path,
    container,  # the schema must exist before the server starts
) -> Iterator[LiveServer]:
    server = LiveServer(database_url, secret_key, tmp_path / "api.log").start()
    yield server
    server.stop()


def tool_body(slug: str | None = None, **overrides: object) -> dict[str, object]:
    """A valid registration body; tests pass overrides for what they care about."""
    body: dict[str, object] = {
        "slug": slug or f"tool-{uuid.uuid4().hex[:12]}",
        "name": "Weather lookup",
        "description": "Current weather for a city",
        "category": "weather",
        "tags": ["weather"],
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        "version": "1.0.0",
        "author": "platform-team",
    }
    body.update(overrides)
    return body
