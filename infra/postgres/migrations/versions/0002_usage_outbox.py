"""Usage outbox: usage events wait here, stored before the call is answered, until the relay
publishes them to the usage topic (then they are deleted).

Downgrade drops the table with any usage events not yet published.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE usage_outbox (
            id bigserial PRIMARY KEY,
            event jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE usage_outbox")
