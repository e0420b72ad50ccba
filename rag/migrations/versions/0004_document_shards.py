"""The shard of each document: ``documents.shard``, 0 unless its collection has several.

A sharded collection (``rag collections create NAME --shards N``) keeps one FAISS and one tantivy
index per shard; a document belongs to shard ``rag.index.shards.shard_of(external_id, N)``, and
this column lets each shard's writer rebuild and reconcile its own indexes from the database.
Rows written before this revision are in shard 0, the only shard of an unsharded collection.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column (default 0) and an index on (collection, shard, state)."""
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("shard", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_documents_collection_shard_state", "documents", ["collection_id", "shard", "state"])


def downgrade() -> None:
    """Drop both."""
    op.drop_index("ix_documents_collection_shard_state", table_name="documents")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("shard")
