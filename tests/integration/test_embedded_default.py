"""The quick start's path as a new user takes it: bulk imports of thousands of tools (on the
embedded Postgres and on the server), and `mcp-ledger up` with no settings at all — the
embedded Postgres, the embedded vector index, the real model — killed with -9 in the middle of
an import and started again on the same data folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
import psycopg
import pytest
from mcp.client import Client

from tests.conftest import ROOT, free_port
from tests.ledger_sql import connect, registrations_by_slug

TOOLS = 5_000


def catalogue(prefix: str, n: int) -> list[dict[str, Any]]:
    """Tools shaped like a public catalogue's: a few described parameters each."""
    verbs = ["fetch", "create", "list", "update", "convert", "search", "send", "translate"]
    nouns = ["invoice", "weather report", "calendar event", "repository", "image", "ticket"]
    out = []
    for i in range(n):
        verb, noun = verbs[i % len(verbs)], nouns[(i // len(verbs)) % len(nouns)]
        params = {
            f"param_{j}": {"type": "string", "description": f"The {noun}'s field number {j}."}
            for j in range(1 + i % 5)
        }
        out.append(
            {
                "slug": f"{prefix}-{i:05d}",
                "name": f"{verb.title()} {noun} #{i}",
                "description": f"{verb.title()}s a {noun} through the provider's public API.",
                "category": noun.split()[0],
                "tags": [verb, noun.split()[0]],
                "input_schema": {"type": "object", "properties": params, "required": ["param_0"]},
                "version": "1.0.0",
                "author": "catalogue",
            }
        )
    return out


# --- bulk import, on both Postgres servers ----------------------------------------------------


@pytest.fixture
def fresh_store(database_url: str, secret_key: str, tmp_path: Path) -> Iterator[Any]:
    """A container over a database of its own: the catch-up below is this import's alone, and
    the session's vector indexer does not embed thousands of tools for the rest of the suite
    (embedding at scale is measured in bench/search.py)."""
    from infra.container import build_container
    from infra.settings import load_settings

    server = psycopg_url_of(database_url)
    name = f"bulk_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server, name)
    settings = load_settings(
        database_url=url,
        secret_key=secret_key,
        data_dir=tmp_path,
        vectors="off",
        read_feed="log",
        auth="off",
        rate_limit="off",
    )
    container = build_container(settings)
    yield container
    container.close()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def psycopg_url_of(database_url: str) -> str:
    return with_database(database_url, "postgres")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.mark.backends("server", "embedded")
@pytest.mark.parametrize("batch", [500, 1_000])
def test_the_cli_imports_5000_tools(fresh_store, secret_key, tmp_path, batch) -> None:  # type: ignore[no-untyped-def]
    url = fresh_store.settings.database_url
    prefix = f"bulk-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(catalogue(prefix, TOOLS)))
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "MCP_LEDGER_SECRET_KEY": secret_key,
        "MCP_LEDGER_IMPORT_BATCH_SIZE": str(batch),
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "import", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"imported {TOOLS} tools in {TOOLS // batch} batches" in done.stdout
    with connect(url) as conn:
        found = registrations_by_slug(conn, prefix + "-")
    assert len(found) == TOOLS
    assert all(len(ids) == 1 for ids in found.values())


@pytest.mark.backends("server", "embedded")
def test_the_batch_route_takes_1000_tools_per_request(fresh_store) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import read_your_writes_client

    prefix = f"route-{uuid.uuid4().hex[:6]}"
    items = catalogue(prefix, TOOLS)
    with read_your_writes_client(fresh_store) as client:
        for start in range(0, TOOLS, 1_000):
            chunk = {"tools": items[start : start + 1_000]}
            answer = client.post("/api/v1/tools:batch", json=chunk)
            assert answer.status_code == 200, answer.text[:500]
            assert answer.json()["committed"] == 1_000
        last = client.get(f"/api/v1/tools/{prefix}-04999")  # reads after the catch-up
        assert last.json()["tool"]["slug"] == f"{prefix}-04999"
    with connect(fresh_store.settings.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM rm_tools WHERE slug LIKE %s", (prefix + "-%",))
        assert row.fetchone() == (TOOLS,)
    with connect(fresh_store.settings.database_url) as conn:
        assert len(registrations_by_slug(conn, prefix + "-")) == TOOLS


# --- `mcp-ledger up` with nothing configured, killed and restarted -----------------------------


class Up:
    """`mcp-ledger up` exactly as the quick start runs it: no DATABASE_URL, no keys."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MCP_LEDGER_") and k not in ("DATABASE_URL", "QDRANT_URL")
        }
        self.env["MCP_LEDGER_DATA_DIR"] = str(data_dir)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Up:
        with (self.data_dir.parent / "up.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "up", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, (self.data_dir.parent / "up.log").read_text()[-3000:]
            time.sleep(0.2)
        raise AssertionError("up did not become ready in 90 s")

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()


def stop_leftover_postgres(pgdata: Path) -> None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    with contextlib.suppress(ProcessLookupError, ValueError):
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)  # raises once it is gone
            time.sleep(0.1)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # pgserver runs postgres as its own user: the folder must be reachable by it.
    root = Path(tempfile.mkdtemp(prefix="mcp-ledger-up-"))
    root.chmod(0o755)
    yield root / "data"
    stop_leftover_postgres(root / "data" / "pg")
    shutil.rmtree(root, ignore_errors=True)


def mcp_get_tool(url: str, slug: str, position: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with Client(f"{url}/mcp", read_timeout_seconds=30) as client:
            result = await client.call_tool("get_tool", {"slug": slug, "min_position": position})
            assert not result.is_error, result
            return dict(result.structured_content or {})

    return anyio.run(main)


def read_when_caught_up(url: str, path: str, position: int) -> dict[str, Any]:
    """A read at `min_position`, retried while the restarted process catches up."""
    deadline = time.monotonic() + 180
    while True:
        answer = httpx.get(f"{url}{path}", params={"min_position": position}, timeout=30)
        if answer.status_code != 503 or time.monotonic() > deadline:
            assert answer.status_code == 200, answer.text
            return dict(answer.json())
        time.sleep(0.5)


def unique(prefix: str) -> dict[str, Any]:
    tool = catalogue(prefix, 1)[0]
    tool.update(name="Tide tables", description="High and low tide times for a harbour.")
    return tool


def search_finds(url: str, query: str, slug: str, position: int) -> bool:
    answer = httpx.get(
        f"{url}/api/v1/search",
        params={"q": query, "limit": 10, "min_position": position},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return slug in [hit["slug"] for hit in answer.json()["items"]]


@pytest.mark.slow
def test_up_survives_kill_9_mid_import_and_restarts_on_its_data(data_dir: Path) -> None:
    up = Up(data_dir).start()
    try:
        one = httpx.post(f"{up.url}/api/v1/tools", json=catalogue("first", 1)[0], timeout=30).json()
        batch = httpx.post(
            f"{up.url}/api/v1/tools:batch", json={"tools": catalogue("http", 500)}, timeout=120
        )
        assert batch.status_code == 200, batch.text[:500]
        assert batch.json()["items"][-1]["position"] > one["position"]
        assert search_finds(up.url, "tide tables for a harbour", "first-00000", one["position"])
        assert mcp_get_tool(up.url, "first-00000", one["position"])["tool"]["slug"] == "first-00000"

        # A second process joins the same embedded server, as `mcp-ledger import` does.
        path = data_dir.parent / "tools.json"
        path.write_text(json.dumps(catalogue("cli", 2_000)))
        imported = up.cli("import", str(path))
        assert imported.returncode == 0, imported.stderr[-2000:]

        # kill -9 while another import is being written over HTTP.
        late = catalogue("late", 3_000)
        with httpx.Client(base_url=up.url, timeout=120) as http:
            acked: list[int] = []

            def send() -> None:
                for start in range(0, len(late), 500):
                    chunk = late[start : start + 500]
                    answer = http.post("/api/v1/tools:batch", json={"tools": chunk})
                    assert answer.status_code == 200, answer.text[:300]
                    acked.append(len(chunk))

            sender = threading.Thread(target=lambda: _quietly(send))
            sender.start()
            deadline = time.monotonic() + 60
            while not acked and time.monotonic() < deadline:
                time.sleep(0.05)
            up.kill9()
            sender.join(60)
        stored_before_restart = sum(acked)
        assert stored_before_restart >= 500
    finally:
        up.stop()

    again = Up(data_dir).start()
    try:
        tools = again.cli("status")
        assert tools.returncode == 0, tools.stderr
        head = httpx.get(f"{again.url}/health/ready", timeout=10).json()["position"]
        # Every acknowledged tool is there, and the read models agree with a replay.
        slugs = ("first-00000", "http-00499", "cli-01999", f"late-{stored_before_restart - 1:05d}")
        for slug in slugs:
            assert read_when_caught_up(again.url, f"/api/v1/tools/{slug}", head)
        verified = again.cli("verify")
        assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
        # It keeps working: a new write is readable, searchable and served over MCP.
        new = httpx.post(f"{again.url}/api/v1/tools", json=unique("after"), timeout=30).json()
        assert search_finds(again.url, "tide tables for a harbour", "after-00000", new["position"])
        assert (
            mcp_get_tool(again.url, "after-00000", new["position"])["tool"]["slug"] == "after-00000"
        )
        assert one["version"] == 1
    finally:
        again.stop()


def _quietly(work: Any) -> None:
    try:
        work()
    except (httpx.HTTPError, AssertionError):
        return  # the server was killed under it
