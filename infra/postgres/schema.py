"""The database schema, versioned with Alembic (revisions in infra/postgres/migrations/versions).

Every process checks the schema at start: at the newest revision it knows it goes on; behind it
upgrades (MCP_LEDGER_AUTO_MIGRATE, the default) or refuses and names the command; ahead of it
(a newer release migrated this database) it always refuses. Revisions run in one transaction
under an advisory lock, so a failed one leaves the schema exactly as it was."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from infra.settings import SettingsError
from projections import advisory_locks

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Alembic keeps its running context in module globals: one migration per process at a time
# (across processes, the schema's advisory lock serialises them).
_IN_PROCESS = threading.Lock()
VERSION_TABLE = "alembic_version"


class SchemaError(SettingsError):
    """The database's schema is not one this process can run against; the message says why and
    which command to run. Reported like a bad setting: the message, exit status 2."""


@dataclass(frozen=True)
class Revision:
    id: str
    down: str | None
    doc: str


def _alembic_config(script_location: Path = MIGRATIONS) -> Any:
    from alembic.config import Config

    # Alembic tells every step at INFO; `mcp-ledger migrate` prints what it did.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    config = Config()
    config.set_main_option("script_location", str(script_location))
    return config


def revisions(script_location: Path = MIGRATIONS) -> list[Revision]:
    """Every known revision, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(script_location))
    found = [
        Revision(r.revision, r.down_revision, (r.doc or "").strip())  # type: ignore[arg-type]
        for r in script.walk_revisions()
    ]
    return list(reversed(found))


def head(script_location: Path = MIGRATIONS) -> str:
    return revisions(script_location)[-1].id


def current_revision(database_url: str) -> str | None:
    """The database's revision; None for an empty database or one made before versioning."""
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (VERSION_TABLE,)).fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()  # noqa: S608
        return str(row[0]) if row else None


def _sqlalchemy_url(database_url: str) -> str:
    scheme, _, rest = database_url.partition("://")
    assert scheme in ("postgresql", "postgres"), scheme
    return f"postgresql+psycopg://{rest}"


@contextmanager
def _connection(database_url: str) -> Iterator[Any]:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(_sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def migrate_to(
    database_url: str, target: str = "head", script_location: Path = MIGRATIONS
) -> tuple[str | None, str | None]:
    """Upgrades or downgrades to `target` (a revision id, `head` or `base`); returns (from, to).

    The schema's advisory lock is held from reading the revision to the end: processes that
    start together migrate once, and the others find it done."""
    from alembic import command

    ids = [r.id for r in revisions(script_location)]
    wanted = ids[-1] if target == "head" else None if target == "base" else target
    if wanted is not None and wanted not in ids:
        raise SchemaError(f"unknown revision {target!r}; known: {', '.join(ids)}")
    config = _alembic_config(script_location)
    with _IN_PROCESS, _connection(database_url) as connection:
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({advisory_locks.SCHEMA})")
        connection.commit()
        try:
            before = current_revision(database_url)
            _refuse_unknown(before, ids)
            config.attributes["connection"] = connection
            after_index = -1 if wanted is None else ids.index(wanted)
            before_index = -1 if before is None else ids.index(before)
            if after_index > before_index:
                command.upgrade(config, wanted or "base")
            elif after_index < before_index:
                command.downgrade(config, wanted or "base")
        finally:
            connection.rollback()
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({advisory_locks.SCHEMA})")
            connection.commit()
    return before, current_revision(database_url)


def _refuse_unknown(revision: str | None, known: list[str]) -> None:
    if revision is not None and revision not in known:
        raise SchemaError(
            f"the database schema is at revision {revision}, which this mcp-ledger does not know "
            f"(its newest is {known[-1]}): a newer release migrated it. Run that release, or "
            f"downgrade with it first: `mcp-ledger migrate --to {known[-1]}`"
        )


def ensure_schema(database_url: str, *, auto_migrate: bool) -> None:
    """At start: go on at head, upgrade when behind (if allowed), refuse when ahead."""
    ids = [r.id for r in revisions()]
    revision = current_revision(database_url)
    _refuse_unknown(revision, ids)
    if revision == ids[-1]:
        return
    if not auto_migrate:
        raise SchemaError(
            f"the database schema is at revision {revision or 'none'}, this mcp-ledger needs "
            f"{ids[-1]}: run `mcp-ledger migrate` (MCP_LEDGER_AUTO_MIGRATE is off)"
        )
    migrate_to(database_url, "head")
