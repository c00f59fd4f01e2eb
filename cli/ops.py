"""Backup and restore: the event store is the backup, the read models are rebuilt from it.

`mcp-ledger backup FILE` runs pg_dump (custom format, one consistent snapshot) of the event
store's tables: the events (with their position sequence), the per-aggregate data keys that
seal secrets, and the idempotency keys. `mcp-ledger restore FILE` loads them into an empty (or,
with --force, emptied) database, forgets the relay's Kafka bookkeeping, and rebuilds and
verifies every read model. The master key (MCP_LEDGER_SECRET_KEY) is not in the file: keep it
with the backups, or the restored secrets stay sealed for good."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import typer
from cryptography.fernet import Fernet, InvalidToken

from cli import common
from infra.postgres.event_store import EVENTS_TABLE, IDEMPOTENCY_TABLE

DATA_KEYS_TABLE = "ledger_data_keys"
# What a backup holds, in restore order. Everything else in the database is derived from it.
BACKUP_TABLES = (EVENTS_TABLE, DATA_KEYS_TABLE, IDEMPOTENCY_TABLE)
# Primary data outside the event store, backed up when this version has it: the usage
# analytics' counters (usage events are not domain events, so no rebuild brings them back).
OPTIONAL_TABLES = ("usage_stats",)
# The relay's record of what it published to Kafka, and the projector's Kafka checkpoints:
# they describe Kafka's copy of the log that a restore replaces, so a restore clears them.
KAFKA_BOOKKEEPING = ("relay_checkpoints", "relay_partitions", "projection_checkpoints")

ops_app = typer.Typer(rich_markup_mode="markdown", help="Back up and restore the event store.")

PgBin = Annotated[
    Path | None,
    typer.Option(
        help="Directory with pg_dump/pg_restore (default: the server's major version under "
        "/usr/lib/postgresql, else PATH)",
        file_okay=False,
    ),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _database_url() -> str:
    settings = common.settings()
    if settings.database_url is None:
        raise _fail(
            "DATABASE_URL: missing; backup and restore work on a Postgres server "
            "(for the embedded one, stop `mcp-ledger up` and copy MCP_LEDGER_DATA_DIR instead)",
            2,
        )
    return settings.database_url


def libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password (so it never shows in a process list) and the environment
    that carries the password to pg_dump/pg_restore instead."""
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = parts.password
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{user}@{host}" if user else host
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts), env


def _server_major(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0]) // 10000


def pg_tool(name: str, server_major: int, pg_bin: Path | None) -> str:
    """pg_dump/pg_restore, preferring the build of the server's own major version."""
    if pg_bin is not None:
        candidates = [pg_bin / name]
    else:
        candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")]
        found = shutil.which(name)
        if found:
            candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise _fail(
        f"{name}: not found; install the PostgreSQL {server_major} client "
        f"(Debian: apt-get install postgresql-client-{server_major}) or pass --pg-bin DIR"
    )


def _tool_major(tool: str) -> int:
    # Every subprocess here runs a PostgreSQL client found by pg_tool, with an argument list.
    out = subprocess.run(  # noqa: S603
        [tool, "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else 0


def _run(cmd: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise _fail(f"{Path(cmd[0]).name} failed ({result.returncode}):\n{result.stderr.strip()}")


def _existing(conn: psycopg.Connection[Any], tables: tuple[str, ...]) -> list[str]:
    return [t for t in tables if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0]]  # type: ignore[index]


@ops_app.command()
def backup(
    file: Annotated[Path, typer.Argument(help="Where to write the backup (pg_dump custom format)")],
    pg_bin: PgBin = None,
) -> None:
    """Back up the event store (events, data keys, idempotency keys) with pg_dump, from one
    consistent snapshot while the registry keeps running. Read models are not backed up:
    `mcp-ledger restore` rebuilds them. Keep MCP_LEDGER_SECRET_KEY with the backups."""
    url = _database_url()
    target, env = libpq_target(url)
    with psycopg.connect(url, autocommit=True) as conn:
        missing = set(BACKUP_TABLES) - set(_existing(conn, BACKUP_TABLES))
        if missing:
            raise _fail(f"not an mcp-ledger database (missing {', '.join(sorted(missing))})")
        tables = [*BACKUP_TABLES, *_existing(conn, OPTIONAL_TABLES)]
        major = _server_major(conn)
        tool = pg_tool("pg_dump", major, pg_bin)
        if _tool_major(tool) < major:
            raise _fail(
                f"{tool} is older than the PostgreSQL {major} server it would dump; "
                f"use pg_dump {major} or newer (--pg-bin DIR)"
            )
        # Export this transaction's snapshot: pg_dump dumps exactly what we count here.
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        events, head = conn.execute(
            f"SELECT count(*), coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"  # noqa: S608
        ).fetchone()  # type: ignore[misc]
        file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            tool,
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            f"--snapshot={snapshot}",
            f"--file={file}",
            *(f"--table={t}" for t in tables),
            f"--dbname={target}",
        ]
        _run(cmd, env)
        conn.execute("COMMIT")
    typer.echo(f"backed up {events} events (store position {head}) to {file}")


def _archive_tables(tool: str, file: Path) -> set[str]:
    result = subprocess.run(  # noqa: S603
        [tool, "--list", str(file)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise _fail(f"{file}: not a pg_dump archive: {result.stderr.strip()}")
    return set(re.findall(r"TABLE DATA \S+ (\S+) ", result.stdout))


def _check_master_key(conn: psycopg.Connection[Any], master_key: str) -> bool:
    row = conn.execute(f"SELECT wrapped_key FROM {DATA_KEYS_TABLE} LIMIT 1").fetchone()  # noqa: S608
    if row is None:
        return True
    try:
        Fernet(master_key.encode()).decrypt(bytes(row[0]))
    except InvalidToken:
        return False
    return True


@ops_app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A file written by `mcp-ledger backup`")],
    force: Annotated[
        bool, typer.Option(help="Replace the event store if the database already holds events")
    ] = False,
    rebuild: Annotated[
        bool, typer.Option(help="Rebuild and verify the read models afterwards")
    ] = True,
    pg_bin: PgBin = None,
) -> None:
    """Restore the event store from FILE into DATABASE_URL, then rebuild and verify every read
    model. Stop the api, relay and projectors first. Afterwards start them with a new
    MCP_LEDGER_KAFKA_TOPIC_PREFIX: the relay republishes the restored log from the start."""
    if not file.is_file():
        raise _fail(f"{file}: no such file", 2)
    url = _database_url()
    target, env = libpq_target(url)
    settings = common.settings()
    common.container(settings).close()  # migrates: the tables exist, empty on a new database
    with psycopg.connect(url, autocommit=True) as conn:
        major = _server_major(conn)
        tool = pg_tool("pg_restore", major, pg_bin)
        found = _archive_tables(tool, file)
        if EVENTS_TABLE not in found:
            raise _fail(f"{file}: not an mcp-ledger backup (no {EVENTS_TABLE} data)")
        held = conn.execute(f"SELECT count(*) FROM {EVENTS_TABLE}").fetchone()[0]  # type: ignore[index]  # noqa: S608
        if held and not force:
            raise _fail(
                f"the event store at DATABASE_URL already holds {held} events; restore into "
                "an empty database, or pass --force to replace them"
            )
        emptied = _existing(conn, (*BACKUP_TABLES, *OPTIONAL_TABLES, *KAFKA_BOOKKEEPING))
        with conn.transaction():
            conn.execute(f"TRUNCATE {', '.join(emptied)}")
        # The archive holds only the backed-up tables and their sequence: restore all of it
        # (selecting with --table would leave out the sequence's value).
        cmd = [
            tool,
            "--data-only",
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            f"--dbname={target}",
            str(file),
        ]
        _run(cmd, env)
        events, head = conn.execute(
            f"SELECT count(*), coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"  # noqa: S608
        ).fetchone()  # type: ignore[misc]
        key_ok = settings.secret_key is None or _check_master_key(conn, settings.secret_key)
    typer.echo(f"restored {events} events (store position {head}) from {file}")
    if not key_ok:
        typer.echo(
            "warning: MCP_LEDGER_SECRET_KEY does not open the restored data keys; sealed "
            "config values cannot be read until the original master key is set",
            err=True,
        )
    if rebuild:
        from cli.read_side import rebuild as rebuild_read_models

        rebuild_read_models(projection=None)
    typer.echo(
        "next: start the relay and projectors with a new MCP_LEDGER_KAFKA_TOPIC_PREFIX "
        f"(was {settings.kafka_topic_prefix}); the relay republishes the restored log there"
    )
