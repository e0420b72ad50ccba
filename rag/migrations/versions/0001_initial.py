"""Initial schema: collections, documents, chunks, ingestion jobs, feedback.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "collections",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("settings", sa.JSON()),
    )
    op.create_table(
        "documents",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("collection_id", _Id, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("title", sa.Text()),
        sa.Column("metadata", sa.JSON()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("job_id", _Id, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "uq_documents_active_key",
        "documents",
        ["collection_id", "external_id"],
        unique=True,
        sqlite_where=sa.text("state = 'active'"),
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_index("ix_documents_collection_state", "documents", ["collection_id", "state"])
    op.create_index("ix_documents_collection_external", "documents", ["collection_id", "external_id"])
    op.create_table(
        "chunks",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("document_id", _Id, sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("char_start", sa.Integer(), nullable=False),
        sa.Column("char_end", sa.Integer(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("section", sa.Text()),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_chunks_document_id", "chunks", ["document_id"])
    op.create_table(
        "ingestion_jobs",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("collection_id", _Id, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("paths", sa.JSON()),
        sa.Column("summary", sa.JSON()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "feedback",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("collection_id", _Id, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("chunk_id", _Id, nullable=False),
        sa.Column("relevant", sa.Boolean(), nullable=False),
        sa.Column("key_hash", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    """Drop every table."""
    for table in ("feedback", "ingestion_jobs", "chunks", "documents", "collections"):
        op.drop_table(table)
