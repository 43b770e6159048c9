"""Persistence: tables, the Store repository, and the Alembic migrations."""
