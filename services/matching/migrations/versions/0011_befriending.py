"""befriending: a request's rhythm and review date, its long-term matches and their visits

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
    """A befriending request's rhythm and review date; the matches and their visits."""
    with op.batch_alter_table("match_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("befriending_rhythm", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("review_on", sa.Date(), nullable=True))
    op.create_table(
        "befriending_matches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("offer_id", sa.Uuid(), nullable=False),
        sa.Column("volunteer_id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("support_type", sa.String(length=40), nullable=False),
        sa.Column("rhythm", sa.String(length=12), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("review_on", sa.Date(), nullable=False),
        sa.Column("last_visit_on", sa.Date(), nullable=True),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.Column("reminded_for", sa.Date(), nullable=True),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.Column("end_reason", sa.String(length=24), nullable=True),
        sa.ForeignKeyConstraint(["offer_id"], ["offers.id"]),
        sa.ForeignKeyConstraint(["request_id"], ["match_requests.request_id"]),
        sa.ForeignKeyConstraint(["volunteer_id"], ["volunteers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("offer_id"),
    )
    with op.batch_alter_table("befriending_matches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_befriending_matches_community"), ["community"], unique=False)
        batch_op.create_index(batch_op.f("ix_befriending_matches_ended_on"), ["ended_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_befriending_matches_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_befriending_matches_volunteer_id"), ["volunteer_id"], unique=False)
    op.create_table(
        "befriending_visits",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("match_id", sa.Uuid(), nullable=False),
        sa.Column("visited_on", sa.Date(), nullable=False),
        sa.Column("hours", sa.Float(), nullable=True),
        sa.Column("message_sid", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["match_id"], ["befriending_matches.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_sid"),
    )
    with op.batch_alter_table("befriending_visits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_befriending_visits_match_id"), ["match_id"], unique=False)


def downgrade() -> None:
    """Drop the matches, their visits and the request's befriending columns."""
    op.drop_table("befriending_visits")
    op.drop_table("befriending_matches")
    with op.batch_alter_table("match_requests", schema=None) as batch_op:
        batch_op.drop_column("review_on")
        batch_op.drop_column("befriending_rhythm")
