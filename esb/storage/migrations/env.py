"""Alembic environment: always run through :meth:`esb.storage.database.Database.upgrade`,
which hands over an open connection (no URL is read here)."""

from __future__ import annotations

from alembic import context

from esb.storage.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic CLI
    raise RuntimeError("run migrations with `esb db upgrade` (Database.upgrade), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
