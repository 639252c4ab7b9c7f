"""Alembic environment for the matching service's own database."""

from services.matching.adapters import Base
from shared.db import run_migrations

run_migrations(Base.metadata, "matching")
