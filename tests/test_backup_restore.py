"""Backup and restore against the real Postgres: register through the API, back up with
`mcp-ledger backup`, restore into a new database with `mcp-ledger restore` (which rebuilds the
read models), and find every read model, event and data key as it was."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import ROOT, _server_url, _with_db, tool_body
from tests.kafka_pipeline_support import dataset_lifecycle, document_lifecycle, tool_lifecycle

# Tables the backup carries over unchanged (created_at stamps included).
STORE_TABLES = {
    "ledger_events": "notification_id",
    "ledger_data_keys": "aggregate_id",
    "ledger_idempotency": "key",
}


def cli(args: list[str], database_url: str, secret_key: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MCP_LEDGER_SECRET_KEY": secret_key,
        "MCP_LEDGER_READ_FEED": "log",
        "MCP_LEDGER_LOG_LEVEL": "warning",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def read_model_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Every read-model table (rm_*), whichever projections this version has."""
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename LIKE 'rm\\_%' ORDER BY tablename"
    ).fetchall()
    return [r[0] for r in rows]


def dump(conn: psycopg.Connection[Any], table: str) -> list[tuple[Any, ...]]:
    """All rows of `table` in a stable order (every column, as text)."""
    query = sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(sql.Identifier(table))
    return conn.execute(query).fetchall()


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        tables = read_model_tables(conn)
        return {t: dump(conn, t) for t in [*tables, *STORE_TABLES]}


@pytest.fixture
def restore_db() -> Iterator[str]:
    server = _server_url()
    name = f"ledger_restore_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_db(server, name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def populate(client: Any) -> None:
    """Every event type of tools (one with a sealed secret), datasets and documents, and a
    write under an Idempotency-Key."""
    tool_lifecycle(client)
    dataset_lifecycle(client)
    document_lifecycle(client)
    tag = uuid.uuid4().hex[:8]
    keyed = client.post(
        "/api/v1/tools",
        json=tool_body(f"weather-{tag}", config={"region": "eu", "api_token": "s3cr3t"}),
        headers={"Idempotency-Key": f"backup-{tag}", "X-Reason": "backup test"},
    )
    assert keyed.status_code == 201, keyed.text
    # Reads catch the session's read models up to the store's head.
    assert client.get("/api/v1/tools?include_deleted=true").status_code == 200


def test_backup_wipe_restore_rebuild_gives_the_same_read_models(
    client: Any, container: Any, database_url: str, secret_key: str, restore_db: str, tmp_path: Path
) -> None:
    populate(client)
    container.read_side.follower.catch_up()
    before = snapshot(database_url)
    assert before["ledger_events"], "nothing to back up"
    assert before["rm_tools"], "no read model to compare"
    assert before["ledger_data_keys"], "no sealed secret"

    backup = tmp_path / "ledger.dump"
    done = cli(["backup", str(backup)], database_url, secret_key)
    assert done.returncode == 0, done.stderr
    assert f"backed up {len(before['ledger_events'])} events" in done.stdout
    assert backup.stat().st_size > 0

    # Restore into a new, empty database: the event store comes back, the read models are
    # rebuilt from it and verified by the command itself.
    done = cli(["restore", str(backup)], restore_db, secret_key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified equal to the replayed store" in done.stdout
    assert "warning" not in done.stderr
    after = snapshot(restore_db)
    assert after.keys() == before.keys()
    for table in before:
        assert after[table] == before[table], table

    # The position sequence came back too: the next event continues after the restored head.
    with psycopg.connect(restore_db) as conn:
        head = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()[0]
        assert (
            conn.execute("SELECT nextval('ledger_events_notification_id_seq')").fetchone()[0] > head
        )

    # A database that holds events is not overwritten by accident ...
    refused = cli(["restore", str(backup)], restore_db, secret_key)
    assert refused.returncode == 1
    assert "already holds" in refused.stderr
    # ... and --force wipes it and restores again, to the same read models.
    with psycopg.connect(restore_db) as conn:
        conn.execute("DELETE FROM rm_tools")  # damage a read model: the rebuild repairs it
    done = cli(["restore", "--force", str(backup)], restore_db, secret_key)
    assert done.returncode == 0, done.stdout + done.stderr
    again = snapshot(restore_db)
    for table in before:
        assert again[table] == before[table], table


def test_restore_warns_when_the_master_key_does_not_fit(
    client: Any, database_url: str, secret_key: str, restore_db: str, tmp_path: Path
) -> None:
    from cryptography.fernet import Fernet

    populate(client)
    backup = tmp_path / "ledger.dump"
    assert cli(["backup", str(backup)], database_url, secret_key).returncode == 0
    other_key = Fernet.generate_key().decode()
    done = cli(["restore", "--no-rebuild", str(backup)], restore_db, other_key)
    assert done.returncode == 0, done.stderr
    assert "does not open the restored data keys" in done.stderr


def test_restore_rejects_what_is_not_a_backup(
    restore_db: str, secret_key: str, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.dump"
    junk.write_text("not a dump")
    done = cli(["restore", str(junk)], restore_db, secret_key)
    assert done.returncode == 1
    assert "not a pg_dump archive" in done.stderr
    done = cli(["restore", str(tmp_path / "missing.dump")], restore_db, secret_key)
    assert done.returncode == 2


def test_backup_needs_a_postgres_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["MCP_LEDGER_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "backup", str(tmp_path / "x.dump")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "DATABASE_URL" in done.stderr
