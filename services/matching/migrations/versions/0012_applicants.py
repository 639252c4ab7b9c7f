"""people applying to volunteer: applicants, each move through the pipeline (who, when, why), and the applications
counted by a keyed hash of their address for the hourly limit

Revision ID: 0012
Revises: 0011
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0012"
down_revision: Union[str, Sequence[str], None] = "0011"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "applicants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("postcode", sa.String(length=10), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stage_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("volunteer_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["volunteer_id"], ["volunteers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_applicants_community", "applicants", ["community"], unique=False)
    op.create_table(
        "applicant_stages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("applicant_id", sa.Uuid(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("previous", sa.String(length=16), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["applicant_id"], ["applicants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_applicant_stages_applicant_id", "applicant_stages", ["applicant_id"], unique=False)
    op.create_table(
        "application_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_application_attempts_address_at", "application_attempts", ["address", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_application_attempts_address_at", table_name="application_attempts")
    op.drop_table("application_attempts")
    op.drop_index("ix_applicant_stages_applicant_id", table_name="applicant_stages")
    op.drop_table("applicant_stages")
    op.drop_index("ix_applicants_community", table_name="applicants")
    op.drop_table("applicants")
