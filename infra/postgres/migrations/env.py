"""Alembic's entry point: runs the revisions on the connection the caller opened, in one
transaction, after taking the schema's advisory lock (processes starting together never race)."""

from __future__ import annotations

from alembic import context

from projections.advisory_locks import SCHEMA

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True, transaction_per_migration=False)
with context.begin_transaction():
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA})")
    context.run_migrations()
