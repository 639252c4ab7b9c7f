"""Alembic environment for the notify service's own database."""

from services.notify.adapters import Base
from shared.db import run_migrations

run_migrations(Base.metadata, "notify")
