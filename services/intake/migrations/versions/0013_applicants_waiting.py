"""how many of a community's applicants to volunteer wait too long at their stage, as matching last said (the
board reminds the coordinators)

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
        "applicants_waiting",
        sa.Column("community", sa.String(64), primary_key=True),
        sa.Column("waiting_too_long", sa.Integer(), nullable=False),
        sa.Column("wait_days", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("applicants_waiting")
