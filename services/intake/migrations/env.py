"""Alembic environment for the intake service's own database."""

from services.intake.adapters import Base
from shared.db import run_migrations

run_migrations(Base.metadata, "intake")
