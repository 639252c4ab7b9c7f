"""a volunteer's status on the facts of volunteer events

Revision ID: 0003
Revises: 0002
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("facts") as batch:
        batch.add_column(sa.Column("status", sa.String(length=12), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("facts") as batch:
        batch.drop_column("status")
