"""Persistence: SQLAlchemy 2 over SQLite (embedded default) or PostgreSQL; Alembic migrations."""
