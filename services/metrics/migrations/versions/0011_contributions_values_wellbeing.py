"""group activities' volunteer hours, each community's hourly value of volunteer time (every change kept), and the
score of a wellbeing check-in's answer

Revision ID: 0011
Revises: 0010
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0011"
down_revision: Union[str, Sequence[str], None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("volunteer_hours", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("facts") as batch:
        batch.add_column(sa.Column("score", sa.Integer()))
    op.create_table(
        "hourly_values",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("community", sa.String(64), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("applies_from", sa.Date(), nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hourly_values_community", "hourly_values", ["community"])


def downgrade() -> None:
    op.drop_index("ix_hourly_values_community", "hourly_values")
    op.drop_table("hourly_values")
    with op.batch_alter_table("facts") as batch:
        batch.drop_column("score")
    with op.batch_alter_table("activities") as batch:
        batch.drop_column("volunteer_hours")
