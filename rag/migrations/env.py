"""Alembic environment: runs on the engine the caller hands over (see ``rag.index.store.migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from rag.index.store import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Run migrations on the provided engine, or on ``sqlalchemy.url`` from alembic.ini."""
    engine = config.attributes.get("connection_engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
