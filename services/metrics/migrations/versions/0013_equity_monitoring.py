"""each person's equity monitoring, by their pseudonym, to count the people supported by each answer

Revision ID: 0013
Revises: 0012
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: Union[str, Sequence[str], None] = "0012"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "monitoring",
        sa.Column("person_ref", sa.String(length=64), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consented", sa.Boolean(), nullable=False),
        sa.Column("age_band", sa.String(length=12), nullable=True),
        sa.Column("sex", sa.String(length=20), nullable=True),
        sa.Column("ethnic_group", sa.String(length=40), nullable=True),
        sa.Column("first_language", sa.String(length=20), nullable=True),
        sa.Column("disability", sa.String(length=20), nullable=True),
        sa.Column("deprivation_decile", sa.String(length=10), nullable=True),
        sa.PrimaryKeyConstraint("person_ref"),
    )
    op.create_index(op.f("ix_monitoring_community"), "monitoring", ["community"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_monitoring_community"), table_name="monitoring")
    op.drop_table("monitoring")
