"""Vector index layout: which vectors a generation's collections hold. `dense` (the first
generations: one dense vector per point) or `hybrid` (a dense vector and a BM25 sparse vector
with IDF, searched together in one query). A `dense` generation is rebuilt as `hybrid` by the
indexer.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE vector_indexes ADD COLUMN layout text NOT NULL DEFAULT 'dense'")


def downgrade() -> None:
    op.execute("ALTER TABLE vector_indexes DROP COLUMN layout")
