"""Alembic environment for the metrics service's own database."""

from services.metrics.adapters import Base
from shared.db import run_migrations

run_migrations(Base.metadata, "metrics")
