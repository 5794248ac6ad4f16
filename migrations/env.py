"""Alembic environment. The URL is the config's sqlalchemy.url (set by service.db.migrate) or, from
the alembic CLI, the service settings. Logging is left to the caller (no fileConfig here)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from edgedistill.service.db import models  # noqa: F401  (registers the tables on Base.metadata)
from edgedistill.service.db.base import Base
from edgedistill.service.db.session import make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from edgedistill.service.settings import get_settings

    return get_settings().database_url


def _options(url: str) -> dict[str, object]:
    # Batch mode: SQLite can only ALTER a table by copying it.
    return {
        "target_metadata": target_metadata,
        "render_as_batch": url.startswith("sqlite"),
        "compare_type": True,
    }


def run_offline() -> None:
    url = _url()
    context.configure(url=url, literal_binds=True, **_options(url))  # type: ignore[arg-type]
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    url = _url()
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **_options(url))  # type: ignore[arg-type]
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
