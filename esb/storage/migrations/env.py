"""Alembic environment: always run through :meth:`esb.storage.database.Database.upgrade`,
which hands over an open connection (no URL is read here)."""

from __future__ import annotations

from typing import Literal

from alembic import context

from esb.storage.tables import Base, UtcDateTime


def _render_item(type_: str, obj: object, autogen_context: object) -> str | Literal[False]:
    """Our UTC column type is plain ``DateTime(timezone=True)`` in the schema."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic CLI
    raise RuntimeError("run migrations with `esb db upgrade` (Database.upgrade), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    render_item=_render_item,
)
with context.begin_transaction():
    context.run_migrations()
