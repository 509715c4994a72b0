"""Alembic environment: runs on the connection KeyStore.migrate() hands over."""

from alembic import context
from sam2_gateway.core.jobs import Base  # the keys' and the jobs' tables

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
