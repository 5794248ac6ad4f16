"""Alembic migrations: the only way edgedistill's database schema is made (service.db.migrate runs them)."""
