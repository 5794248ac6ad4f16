"""Database layer: declarative base, engine/session factories, typed models, Alembic runner."""
