"""checks and training as data, per community: each community's own check types and the checks each kind of help
needs (its changes over the taxonomy's defaults and its communities.json block), a version counter per community
(so each process reads the rules again only after a change), and the audit trail of changes (who, when, before and
after)

Revision ID: 0015
Revises: 0014
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0015"
down_revision: Union[str, Sequence[str], None] = "0014"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "check_types",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("evidence", sa.String(length=500), nullable=False),
        sa.Column("lasts_months", sa.Integer(), nullable=True),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("community", "key"),
    )
    op.create_table(
        "kind_requirements",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("community", "kind"),
    )
    op.create_table(
        "check_rule_versions",
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("community"),
    )
    op.create_table(
        "check_rule_changes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_check_rule_changes_community_at", "check_rule_changes", ["community", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_check_rule_changes_community_at", table_name="check_rule_changes")
    op.drop_table("check_rule_changes")
    op.drop_table("check_rule_versions")
    op.drop_table("kind_requirements")
    op.drop_table("check_types")
