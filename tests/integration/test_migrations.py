"""Versioned migrations: a database made by release 0.1.0 (before versioning) upgrades with every
row kept; revisions apply in order and downgrade where they can; a revision that fails half-way
leaves the schema as it was; a process refuses a schema newer than it knows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from infra.postgres.event_store import LedgerApplication, eventsourcing_env
from infra.postgres.schema import (
    MIGRATIONS,
    SchemaError,
    current_revision,
    ensure_schema,
    head,
    migrate_to,
)
from tests.conftest import ROOT, _with_db

pytestmark = pytest.mark.backends("server", "embedded")

# State that cannot be rebuilt from the log, as 0.1.0 stored it.
PRECIOUS = (
    "ledger_events",
    "ledger_idempotency",
    "ledger_data_keys",
    "ledger_api_keys",
    "usage_stats",
    "usage_seen",
    "usage_meta",
    "vector_indexes",
    "relay_checkpoints",
)


@pytest.fixture
def empty_db(database_url: str) -> Iterator[str]:
    server = _with_db(database_url, "postgres")
    name = f"ledger_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_db(database_url, name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def baseline_statements() -> list[str]:
    import importlib.util

    path = MIGRATIONS / "versions" / "0001_baseline.py"
    spec = importlib.util.spec_from_file_location("baseline_0001", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.STATEMENTS)


def make_release_0_1_0(url: str) -> None:
    """What 0.1.0 did at start: the library creates the event store, then our tables."""
    app = LedgerApplication(env={**eventsourcing_env(url, 1), "CREATE_TABLE": "y"})
    app.close()
    with psycopg.connect(url) as conn:
        for statement in baseline_statements():
            conn.execute(statement)


def fill(url: str) -> None:
    app = LedgerApplication(env=eventsourcing_env(url, 1))
    events = [StoredEvent(uuid.uuid4(), 1, "tests.mig:Probe", b'{"n":%d}' % i) for i in range(50)]
    app.recorder.insert_events(events)
    app.close()
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO ledger_idempotency (key, request_hash, results) VALUES "
            '(\'k1\', \'h\', \'[{"id": "x", "version": 1, "position": 1}]\')'
        )
        conn.execute(
            "INSERT INTO ledger_data_keys (aggregate_id, wrapped_key) VALUES (%s, %s)",
            (uuid.uuid4(), b"wrapped"),
        )
        conn.execute(
            "INSERT INTO ledger_api_keys (id, name, role, secret_sha256) "
            "VALUES ('abc', 'ci', 'editor', %s)",
            (b"\x01" * 32,),
        )
        conn.execute(
            "INSERT INTO usage_stats (window_size, window_start, tool, client, calls, errors, "
            "latency_sum_ms, latency_min_ms, latency_max_ms, buckets) "
            "VALUES ('1m', now(), 'get_tool', 'c', 7, 1, 12.5, 0.5, 4.0, '{1,2,4}')"
        )
        conn.execute("INSERT INTO usage_seen (id, occurred_at) VALUES ('u1', now())")
        conn.execute(
            "INSERT INTO vector_indexes (generation, model, dimension, status, owner) "
            "VALUES ('g1', 'minilm', 384, 'live', 'node-a')"
        )
        conn.execute("INSERT INTO relay_checkpoints (name, position) VALUES ('mcp-ledger', 42)")


# The columns of release 0.1.0: later revisions may add columns, never lose these values.
BASE_COLUMNS: dict[str, list[str]] = {}


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with psycopg.connect(url) as conn:
        for table in PRECIOUS:
            columns = BASE_COLUMNS.setdefault(table, _columns_of(conn, table))
            rows = conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
            out[table] = sorted(rows, key=repr)
    return out


def _columns_of(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def columns(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return _columns_of(conn, table)


def table_exists(url: str, table: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
    return row is not None and row[0] is not None


def cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_database_of_release_0_1_0_upgrades_with_nothing_lost(empty_db: str) -> None:
    make_release_0_1_0(empty_db)
    fill(empty_db)
    before = snapshot(empty_db)
    assert all(before[t] for t in PRECIOUS), {t: len(r) for t, r in before.items()}
    assert current_revision(empty_db) is None

    done = cli(empty_db, "migrate")
    assert done.returncode == 0, done.stderr
    assert f"none -> {head()}" in done.stdout
    assert current_revision(empty_db) == head()
    assert snapshot(empty_db) == before
    with psycopg.connect(empty_db) as conn:  # the generations of 0.1.0 were dense-only
        assert conn.execute("SELECT layout FROM vector_indexes").fetchall() == [("dense",)]

    again = cli(empty_db, "migrate")
    assert "unchanged" in again.stdout
    # The upgraded store takes appends (the composite type 0.1.0 made is the one used).
    app = LedgerApplication(env=eventsourcing_env(empty_db, 1))
    ids = app.recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "tests.mig:Probe", b"{}")])
    app.close()
    assert ids == [51]


def test_a_new_database_gets_the_whole_schema_and_concurrent_starts_agree(empty_db: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cli.main", "migrate"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": empty_db},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outcomes
    moved = [out for out, _ in outcomes if f"none -> {head()}" in out]
    assert len(moved) == 1, outcomes  # one of them migrated; the others found it done
    assert current_revision(empty_db) == head()
    assert all(table_exists(empty_db, t) for t in PRECIOUS)


# --- order, downgrade and failure, with revisions written for the test ----------------------


REVISION = '''\
"""{doc}"""
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{up}


def downgrade() -> None:
{down_body}
'''


def scripts(tmp_path: Path, *revisions: tuple[str, str, str, str]) -> Path:
    """The real migrations plus test revisions (rev, down, upgrade body, downgrade body)."""
    location = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, location, ignore=shutil.ignore_patterns("__pycache__"))
    for rev, down, up, down_body in revisions:
        body = REVISION.format(
            doc=f"test revision {rev}",
            rev=rev,
            down=down,
            up=textwrap.indent(up, "    "),
            down_body=textwrap.indent(down_body, "    "),
        )
        (location / "versions" / f"{rev}_test.py").write_text(body)
    return location


def test_revisions_apply_in_order_and_downgrade(empty_db: str, tmp_path: Path) -> None:
    real = head()
    location = scripts(
        tmp_path,
        (
            "t901",
            real,
            'op.execute("ALTER TABLE ledger_api_keys ADD COLUMN note text")',
            'op.execute("ALTER TABLE ledger_api_keys DROP COLUMN note")',
        ),
        (
            "t902",
            "t901",
            'op.execute("CREATE TABLE t902_probe (id int PRIMARY KEY)")',
            'op.execute("DROP TABLE t902_probe")',
        ),
    )
    migrate_to(empty_db, "0001", script_location=location)
    assert not table_exists(empty_db, "usage_outbox")
    fill(empty_db)
    before = snapshot(empty_db)

    assert migrate_to(empty_db, "t901", script_location=location) == ("0001", "t901")
    assert table_exists(empty_db, "usage_outbox")  # every revision on the way, in order
    assert "note" in columns(empty_db, "ledger_api_keys")
    assert not table_exists(empty_db, "t902_probe")
    assert migrate_to(empty_db, "head", script_location=location) == ("t901", "t902")
    assert table_exists(empty_db, "t902_probe")

    assert migrate_to(empty_db, real, script_location=location) == ("t902", real)
    assert "note" not in columns(empty_db, "ledger_api_keys")
    assert not table_exists(empty_db, "t902_probe")
    assert migrate_to(empty_db, "0001", script_location=location) == (real, "0001")
    assert not table_exists(empty_db, "usage_outbox")
    assert snapshot(empty_db) == before

    # The baseline cannot be undone (it holds the event store): refused, nothing changed.
    with pytest.raises(NotImplementedError):
        migrate_to(empty_db, "base", script_location=location)
    assert current_revision(empty_db) == "0001"
    assert snapshot(empty_db) == before


def test_a_revision_failing_half_way_leaves_the_schema_as_it_was(
    empty_db: str, tmp_path: Path
) -> None:
    real = head()
    location = scripts(
        tmp_path,
        (
            "t901",
            real,
            'op.execute("CREATE TABLE t901_first (id int)")',
            'op.execute("DROP TABLE t901_first")',
        ),
        (
            "t902",
            "t901",
            'op.execute("ALTER TABLE ledger_api_keys ADD COLUMN half text")\n'
            "op.execute(\"UPDATE ledger_api_keys SET half = 'x'\")\n"
            'op.execute("SELECT no_such_function()")',
            "pass",
        ),
    )
    migrate_to(empty_db, "0001", script_location=location)
    fill(empty_db)
    before = snapshot(empty_db)
    with pytest.raises(Exception, match="no_such_function"):
        migrate_to(empty_db, "head", script_location=location)
    # Every revision of the run was in one transaction: the earlier ones are undone too.
    assert current_revision(empty_db) == "0001"
    assert not table_exists(empty_db, "usage_outbox")
    assert not table_exists(empty_db, "t901_first")
    assert "half" not in columns(empty_db, "ledger_api_keys")
    assert snapshot(empty_db) == before


def test_a_schema_newer_than_the_release_is_refused_by_every_process(empty_db: str) -> None:
    ensure_schema(empty_db, auto_migrate=True)
    with psycopg.connect(empty_db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaError, match="migrate --to"):
        ensure_schema(empty_db, auto_migrate=True)
    key = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE="
    commands = (
        ["api"],
        ["relay"],
        ["projector", "--source", "log"],
        ["import", "x.json"],
        ["migrate"],
    )
    for command in commands:
        # The broker is never reached: the schema is checked first.
        done = cli(
            empty_db, *command, MCP_LEDGER_SECRET_KEY=key, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9"
        )
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "revision 9999" in done.stderr, (command, done.stderr)
        assert "mcp-ledger migrate --to" in done.stderr


def test_without_auto_migrate_an_older_schema_is_refused_with_the_command(empty_db: str) -> None:
    make_release_0_1_0(empty_db)
    with pytest.raises(SchemaError, match="run `mcp-ledger migrate`"):
        ensure_schema(empty_db, auto_migrate=False)
    assert current_revision(empty_db) is None
    ensure_schema(empty_db, auto_migrate=True)
    assert current_revision(empty_db) == head()
    ensure_schema(empty_db, auto_migrate=False)  # at head: fine
