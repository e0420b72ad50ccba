"""Sections inside a chunk: ``chunks.sections``, a JSON list of ``[offset, heading path]``.

A citation names the heading and page of the sentence it points at, which may lie past the
heading where its chunk starts. Rows written before this revision keep NULL: their citations
fall back to the chunk's starting section.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable column."""
    with op.batch_alter_table("chunks") as batch:
        batch.add_column(sa.Column("sections", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("chunks") as batch:
        batch.drop_column("sections")
