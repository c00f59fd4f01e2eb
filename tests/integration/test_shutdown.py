"""Graceful shutdown of the real processes: SIGTERM mid-work, then exit 0 within a bound, with
nothing lost and nothing applied twice.

- `mcp-ledger api`: a request still being received when SIGTERM arrives is answered (201) and
  stored; usage events buffered at that moment reach their sink before the process ends.
- `mcp-ledger projector --source log`: the batch in hand is applied and its checkpoint
  committed; a restart continues after it and the read models equal the replayed store.
- `mcp-ledger relay`: the batch in hand is published and its position recorded; a restart
  continues after it, and every event is in Kafka exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.conftest import ROOT, free_port, tool_body
from tests.kafka_pipeline_support import fresh_database, wait_for

GRACE = 20  # seconds: what Kubernetes and compose give each process (30) minus a margin

pytestmark = pytest.mark.slow


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def sigterm_and_wait(proc: subprocess.Popen[bytes], log: Path) -> tuple[int, float]:
    """Sends SIGTERM; returns the exit code and how long the process took to exit."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"no exit {GRACE}s after SIGTERM: {log.read_text()[-3000:]}") from None
    return code, time.monotonic() - started


def base_env(database_url: str, secret_key: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "MCP_LEDGER_SECRET_KEY": secret_key,
        "MCP_LEDGER_DATA_DIR": str(data_dir),
        "MCP_LEDGER_LOG_LEVEL": "info",
        "MCP_LEDGER_LOG_FORMAT": "json",
        "MCP_LEDGER_READ_FEED": "log",
        "MCP_LEDGER_VECTORS": "off",
        "MCP_LEDGER_AUTH": "off",  # access control is tested elsewhere
        "MCP_LEDGER_RATE_LIMIT": "off",
        **extra,
    }


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and parsed.get("event") == event:
            found.append(parsed)
    return found


def scalar(database_url: str, sql: str, *args: object) -> Any:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql, args).fetchone()
    return row[0] if row else None


# --- the API ----------------------------------------------------------------------------------


@pytest.fixture
def api_process(
    database_url: str, secret_key: str, tmp_path: Path, container: Any
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    log = tmp_path / "api.log"
    env = base_env(
        database_url,
        secret_key,
        tmp_path / "data",
        MCP_LEDGER_USAGE_SINK="local",
        MCP_LEDGER_SHUTDOWN_TIMEOUT=str(GRACE - 5),
    )
    proc = spawn(["api", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ready(url, proc, log), "the api to be ready", timeout=60)
    yield proc, url, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    assert proc.poll() is None, log.read_text()[-3000:]
    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_api_drains_a_request_in_flight_and_flushes_usage_then_exits_0(
    api_process: tuple[subprocess.Popen[bytes], str, Path], database_url: str
) -> None:
    proc, url, log = api_process
    slug = f"drain-{uuid.uuid4().hex[:10]}"
    body = orjson.dumps(tool_body(slug))
    half = len(body) // 2
    signalled = threading.Event()
    answer: dict[str, Any] = {}

    def slow_body() -> Iterator[bytes]:
        yield body[:half]
        assert signalled.wait(10)
        time.sleep(1.0)  # well after SIGTERM reached the server
        yield body[half:]

    def send() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            response = http.post(
                "/api/v1/tools", content=slow_body(), headers={"Content-Type": "application/json"}
            )
            answer["status"], answer["json"] = response.status_code, response.json()

    # Usage events buffered in the process when SIGTERM arrives (one per API search).
    seen_before = scalar(database_url, "SELECT count(*) FROM usage_seen")
    for _ in range(5):
        assert httpx.get(f"{url}/api/v1/search", params={"q": "weather"}).status_code == 200

    client = threading.Thread(target=send)
    client.start()
    time.sleep(0.5)  # the request's head and first half are in
    assert proc.poll() is None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    signalled.set()
    client.join(30)
    code = proc.wait(GRACE)
    took = time.monotonic() - started

    assert answer.get("status") == 201, (answer, log.read_text()[-3000:])
    assert code == 0, log.read_text()[-3000:]
    assert took < GRACE
    # What was acknowledged is stored, once.
    stored = scalar(
        database_url,
        "SELECT count(*) FROM ledger_events WHERE originator_id = %s",
        uuid.UUID(answer["json"]["id"]),
    )
    assert stored == 1
    assert log_events(log, "Application shutdown complete.")
    assert log_events(log, "stopped")
    # The usage emitter was flushed on the way out.
    assert scalar(database_url, "SELECT count(*) FROM usage_seen") == seen_before + 5


# --- the log projector --------------------------------------------------------------------------


def seed_tools(database_url: str, secret_key: str, data_dir: Path, count: int) -> int:
    """Registers `count` tools through the bulk import; returns the store's head."""
    from commands.context import CommandContext
    from commands.import_tools import import_tools
    from commands.inputs import RegisterTool
    from infra.container import build_container
    from infra.settings import load_settings

    settings = load_settings(
        database_url=database_url, secret_key=secret_key, data_dir=data_dir, read_feed="log"
    )
    c = build_container(settings)
    try:
        tools = [RegisterTool(**tool_body()) for _ in range(count)]
        ctx = CommandContext(actor="seed", correlation_id="shutdown-test")
        outcomes = import_tools(c.deps, tools, ctx, 500)
        assert not any(o.error for o in outcomes)
        return c.store.head()
    finally:
        c.close()


def log_checkpoint(database_url: str) -> int:
    return int(
        scalar(
            database_url,
            "SELECT coalesce(min(position), 0) FROM projection_checkpoints "
            "WHERE source = 'log' AND projection IN ('current_state', 'history')",
        )
        or 0
    )


def test_log_projector_commits_its_batch_on_sigterm_and_a_restart_resumes(
    secret_key: str, tmp_path: Path
) -> None:
    with fresh_database("shutdown") as db:
        head = seed_tools(db, secret_key, tmp_path / "seed", 3000)
        port = free_port()
        env = base_env(db, secret_key, tmp_path / "data")
        first_log = tmp_path / "projector-1.log"
        proc = spawn(["projector", "--source", "log", "--metrics-port", str(port)], env, first_log)
        try:
            wait_for(lambda: log_checkpoint(db) > 0, "a first batch", timeout=60)
            health = httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5)
            assert health.status_code == 200
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert 'mcp_ledger_projection_lag{projection="history",source="log"}' in metrics
            code, _ = sigterm_and_wait(proc, first_log)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code == 0, first_log.read_text()[-3000:]
        stopped_at = log_checkpoint(db)
        assert 0 < stopped_at < head, "SIGTERM came after the work: not mid-work"
        # Committed together: every read-model row up to the checkpoint, none after it.
        applied = scalar(db, "SELECT count(*) FROM rm_history")
        registered_up_to = scalar(
            db,
            "SELECT count(*) FROM ledger_events WHERE topic = 'domain.tool:ToolRegistered' "
            "AND notification_id <= %s",
            stopped_at,
        )
        assert applied == registered_up_to

        second_log = tmp_path / "projector-2.log"
        proc = spawn(["projector", "--source", "log"], env, second_log)
        try:
            wait_for(lambda: log_checkpoint(db) >= head, "the restart to catch up", timeout=120)
            code, _ = sigterm_and_wait(proc, second_log)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code == 0
        resumed = log_events(second_log, "following_log")
        assert resumed
        assert resumed[0]["position"] == stopped_at  # continued where it stopped
        assert scalar(db, "SELECT count(*) FROM rm_history") == 3000  # each version once
        assert scalar(db, "SELECT count(*) FROM rm_tools") == 3000
        verify = subprocess.run(
            [sys.executable, "-m", "cli.main", "verify"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr


# --- the relay ----------------------------------------------------------------------------------


def test_relay_publishes_its_batch_on_sigterm_and_a_restart_resumes_exactly_once(
    container: Any,
    database_url: str,
    secret_key: str,
    kafka_bootstrap: str,
    kafka_unique_name: str,
    tmp_path: Path,
) -> None:
    from tests.integration.test_relay import (
        RelayProcess,
        assert_delivered,
        checkpoint,
        consume,
        event_topics,
        store_records,
    )

    prefix = f"shutdown-{kafka_unique_name}"
    seed_tools(database_url, secret_key, tmp_path / "seed", 1500)
    head = container.store.head()
    first = RelayProcess(database_url, kafka_bootstrap, prefix, tmp_path / "relay-1.log", 20)
    first.start()
    try:
        wait_for(lambda: checkpoint(database_url, prefix) > 0, "a first batch", timeout=90)
        assert first.proc is not None
        code, _ = sigterm_and_wait(first.proc, first.log_path)
    finally:
        first.ensure_stopped()
    assert code == 0, first.log_path.read_text()[-3000:]
    stopped_at = checkpoint(database_url, prefix)
    assert 0 < stopped_at < head, "SIGTERM came after the work: not mid-work"
    assert first.said("relay.stopped")
    assert first.batches()[-1]["position"] == stopped_at  # the batch in hand was recorded

    second = RelayProcess(database_url, kafka_bootstrap, prefix, tmp_path / "relay-2.log", 500)
    second.start()
    try:
        wait_for(lambda: checkpoint(database_url, prefix) >= head, "the restart", timeout=120)
        assert second.proc is not None
        code, _ = sigterm_and_wait(second.proc, second.log_path)
    finally:
        second.ensure_stopped()
    assert code == 0
    assert second.batches()[0]["first"] > stopped_at  # resumed after the recorded position
    messages = consume(kafka_bootstrap, event_topics(prefix))
    expected = [r for r in store_records(container.app) if r.position <= head]
    assert_delivered(messages, expected, prefix, max_duplicates=0)  # graceful: no re-sends
