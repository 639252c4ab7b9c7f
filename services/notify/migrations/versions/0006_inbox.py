"""an SMS nobody could act on waits in the coordinators' inbox until one of them has dealt with it

Revision ID: 0006
Revises: 0005
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("attention", sa.String(16)))
        batch.add_column(sa.Column("dealt_with_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("dealt_with_by", sa.String(200)))
        batch.create_index("ix_inbound_messages_attention", ["attention", "dealt_with_at"])


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_index("ix_inbound_messages_attention")
        batch.drop_column("dealt_with_by")
        batch.drop_column("dealt_with_at")
        batch.drop_column("attention")
