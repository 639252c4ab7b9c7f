"""a fact per event, and group activities, in place of daily tallies

Revision ID: 0002
Revises: 0001
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "facts",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=True),
        sa.Column("support_type", sa.String(length=40), nullable=True),
        sa.Column("person_ref", sa.String(length=64), nullable=True),
        sa.Column("is_carer", sa.Boolean(), nullable=False),
        sa.Column("volunteer_id", sa.Uuid(), nullable=True),
        sa.Column("organisation", sa.String(length=200), nullable=True),
        sa.Column("hours", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_facts_type_day", "facts", ["event_type", "community", "day"])
    op.create_index("ix_facts_request_id", "facts", ["request_id"])
    op.create_table(
        "activities",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("organisation", sa.String(length=200), nullable=True),
        sa.Column("organisation_type", sa.String(length=40), nullable=True),
        sa.Column("volunteer_ids", sa.JSON(), nullable=False),
        sa.Column("attendance", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_activities_community", "activities", ["community"])
    op.create_index("ix_activities_held_on", "activities", ["held_on"])
    op.drop_table("daily_tallies")


def downgrade() -> None:
    op.create_table(
        "daily_tallies",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "event_type"),
    )
    op.drop_index("ix_activities_held_on", table_name="activities")
    op.drop_index("ix_activities_community", table_name="activities")
    op.drop_table("activities")
    op.drop_index("ix_facts_request_id", table_name="facts")
    op.drop_index("ix_facts_type_day", table_name="facts")
    op.drop_table("facts")
