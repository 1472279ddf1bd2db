"""Alembic environment: runs on the connection handed over by vibecc.state_store.migrate."""

from __future__ import annotations

from alembic import context

from vibecc.state_store.models import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    # Offline: render the SQL for a DBA (`vibecc-state db sql`).
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=config.get_main_option("sqlalchemy.url", "").startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
else:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )

with context.begin_transaction():
    context.run_migrations()
