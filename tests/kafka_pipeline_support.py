"""Helpers shared by the end-to-end Kafka pipeline tests: `mcp-ledger relay` and
`mcp-ledger projector --source kafka` as real subprocesses (stopped or killed by pid), a database
of their own, request bodies and lifecycles that emit every event type, and readers for the
topics and the consumer group's committed offsets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from tests.conftest import ROOT, _server_url, _with_db, tool_body


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return result


# --- a database of its own ----------------------------------------------------------------------


@contextmanager
def fresh_database(tag: str) -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards): the session one holds
    other tests' events and damage, and a pipeline's read models must hold only its own."""
    server = _server_url()
    name = f"ledger_{tag}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pipeline_env(
    database_url: str, secret_key: str, bootstrap: str, prefix: str, logs: Path, **extra: str
) -> dict[str, str]:
    """The environment of the relay and projector subprocesses."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "MCP_LEDGER_SECRET_KEY": secret_key,
        "MCP_LEDGER_DATA_DIR": str(logs / "data"),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MCP_LEDGER_KAFKA_TOPIC_PREFIX": prefix,
        "MCP_LEDGER_LOG_LEVEL": "info",
        "MCP_LEDGER_LOG_FORMAT": "json",
        **extra,
    }


# --- the services -------------------------------------------------------------------------------


@dataclass
class Service:
    """One `mcp-ledger` command as a subprocess, stopped by its pid."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *self.args],
                cwd=ROOT, env=self.env, stdout=log, stderr=log,
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """kill -9: no handler runs, nothing is flushed or committed."""
        assert self.proc is not None
        assert self.proc.poll() is None, "already dead"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines (others, e.g. library output, are left out)."""
        if not self.log_path.exists():
            return []
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                out.append(parsed)
        return out

    def said(self, event: str) -> bool:
        return any(line.get("event") == event for line in self.lines())

    def batches(self) -> list[dict[str, Any]]:
        """A relay's published batches: first and last store position of each."""
        return [line for line in self.lines() if line.get("event") == "relay.batch"]


@dataclass
class Pipeline:
    database_url: str
    prefix: str
    env: dict[str, str]
    logs: Path
    relay: Service | None = None  # the last relay started
    projector: Service | None = None  # the last projector started
    started: list[Service] = field(default_factory=list)
    stopped: list[int | None] = field(default_factory=list)

    def _start(self, args: list[str], name: str) -> Service:
        service = Service(args, self.env, self.logs / f"{name}.log").start()
        self.started.append(service)
        return service

    def start_relay(self, name: str = "relay") -> Service:
        self.relay = self._start(["relay"], name)
        return self.relay

    def start_projector(self, name: str = "projector") -> Service:
        self.projector = self._start(["projector", "--source", "kafka"], name)
        return self.projector

    def stop_projector(self) -> int | None:
        assert self.projector is not None
        return self.projector.stop()

    def check_alive(self) -> None:
        for service in (self.relay, self.projector):
            assert service is None or service.alive(), service and service.log_tail()

    def stop(self, timeout: float = 30) -> None:
        """Stops every service still running, projectors first; records their exit codes."""
        for service in sorted(self.started, key=lambda s: s.args[0] != "projector"):
            if service.alive():
                self.stopped.append(service.stop(timeout))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    @property
    def event_topics(self) -> list[str]:
        return [self.topic(t) for t in ("tools.v1", "datasets.v1", "documents.v1")]

    @property
    def group(self) -> str:
        return f"{self.prefix}-projector"


# --- the database -------------------------------------------------------------------------------


def query(database_url: str, sql: str, *args: object) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def history_versions(database_url: str, aggregate_id: str) -> list[int]:
    rows = query(
        database_url,
        "SELECT version FROM rm_history WHERE aggregate_id = %s ORDER BY version",
        aggregate_id,
    )
    return [r["version"] for r in rows]


# --- commands through the API -------------------------------------------------------------------


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def dataset_body() -> dict[str, Any]:
    return {
        "slug": f"ds-{uuid.uuid4().hex[:12]}",
        "name": "Sales orders",
        "description": "One row per order",
        "source": {"kind": "postgres_table", "uri": "postgresql://wh/sales?table=orders"},
        "columns": [
            {"name": "order_id", "type": "bigint", "nullable": False},
            {"name": "amount", "type": "numeric", "description": "EUR"},
        ],
        "tags": ["sales"],
        "owner": "data-platform",
    }


def document_body() -> dict[str, Any]:
    return {"title": "How orders are counted", "content": "# Orders\nOne row per order.",
            "content_type": "text/markdown", "tags": ["sales"]}  # fmt: skip


def tool_lifecycle(client: Any) -> dict[str, Any]:
    """Six commands, every tool event type; returns the last write."""
    tool = ok(client.post("/api/v1/tools", json=tool_body(config={"api_token": "s3cr3t"})))
    ref = f"/api/v1/tools/{tool['id']}"
    ok(client.patch(ref, json={"version": "1.1.0", "tags": ["b", "a"]}))
    ok(client.post(f"{ref}/activate"))
    ok(client.post(f"{ref}/deprecate"))
    ok(client.delete(ref))
    return ok(client.post(f"{ref}/restore"))


def dataset_lifecycle(client: Any) -> dict[str, Any]:
    """Eight commands, every dataset event type; returns the last write."""
    dataset = ok(client.post("/api/v1/datasets", json=dataset_body()))
    ref = f"/api/v1/datasets/{dataset['id']}"
    ok(client.patch(ref, json={"description": "One row per order, deduplicated"}))
    columns = [{"name": "order_id", "type": "uuid", "nullable": False},
               {"name": "amount", "type": "numeric"}]  # fmt: skip
    ok(client.put(f"{ref}/columns", json={"columns": columns}))
    ok(
        client.post(
            f"{ref}/profile", json={"row_count": 100, "columns": {"amount": {"null_count": 3}}}
        )
    )
    ok(client.post(f"{ref}/archive"))
    ok(client.post(f"{ref}/unarchive"))
    ok(client.delete(ref))
    return ok(client.post(f"{ref}/restore"))


def document_lifecycle(client: Any) -> dict[str, Any]:
    """Five commands, every document event type; returns the last write."""
    document = ok(client.post("/api/v1/documents", json=document_body()))
    ref = f"/api/v1/documents/{document['id']}"
    ok(client.patch(ref, json={"title": "How orders are counted, revised"}))
    ok(client.put(f"{ref}/tags", json={"tags": ["ops", "sales"]}))
    ok(client.delete(ref))
    return ok(client.post(f"{ref}/restore"))


# --- Kafka --------------------------------------------------------------------------------------


def consume(bootstrap: str, topics: list[str], timeout: float = 60) -> list[Any]:
    """Every message now in the topics (up to their end offsets), in offset order per partition."""
    # Imported here: the repo's kafka/ folder (the broker's pom) makes import sorters and mypy
    # take `kafka` for a first-party package.
    from kafka import KafkaConsumer, TopicPartition  # type: ignore[attr-defined]

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )  # fmt: skip
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, "timed out reading the topics"
            for messages in consumer.poll(timeout_ms=500).values():
                out.extend(
                    m for m in messages if m.offset < end[TopicPartition(m.topic, m.partition)]
                )
        return out
    finally:
        consumer.close()


def committed_positions(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Per partition, the store position of the last message the group has committed."""
    from kafka import KafkaConsumer, TopicPartition  # type: ignore[attr-defined]
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None)
    positions: dict[int, int] = {}
    try:
        for tp, meta in offsets.items():
            if tp.topic != topic or meta.offset <= 0:
                continue
            consumer.assign([TopicPartition(topic, tp.partition)])
            consumer.seek(TopicPartition(topic, tp.partition), meta.offset - 1)
            message = next(m for ms in consumer.poll(timeout_ms=5000).values() for m in ms)
            positions[tp.partition] = int(dict(message.headers)["ce_position"])
    finally:
        consumer.close()
    return positions
