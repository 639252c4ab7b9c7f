"""what puts a request first on the board, as matching and notify said it: given back by its volunteer, when its
offers' answers fall due, and how many SMS about it wait in notify's inbox

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
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("given_back_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("answers_due_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("sms_waiting", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("sms_waiting_as_of", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("sms_waiting_as_of")
        batch_op.drop_column("sms_waiting")
        batch_op.drop_column("answers_due_at")
        batch_op.drop_column("given_back_at")
