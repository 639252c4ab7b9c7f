"""the register of organisations as intake publishes it (partners counted by organisation and type), and activities'
organiser types spelled as the register spells them

Revision ID: 0009
Revises: 0008
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0009"
down_revision: Union[str, Sequence[str], None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# metrics' own organiser types before -> the register's (shared.taxonomy.ORGANISATION_TYPES); "other" is none
RENAMED = {"voluntary": "vcfse", "community": "vcfse", "social_enterprise": "vcfse", "faith": "faith_group"}


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("adopted_on", sa.Date(), nullable=True),
        sa.Column("merged_into", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_organisations_community"), "organisations", ["community"], unique=False)
    activities = sa.table("activities", sa.column("organisation_type", sa.String))
    for old, new in RENAMED.items():
        op.execute(activities.update().where(activities.c.organisation_type == old).values(organisation_type=new))
    op.execute(activities.update().where(activities.c.organisation_type == "other").values(organisation_type=None))


def downgrade() -> None:
    op.drop_index(op.f("ix_organisations_community"), table_name="organisations")
    op.drop_table("organisations")
