"""the trace context each queued message was made in, so its send continues that trace

Revision ID: 0005
Revises: 0004
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("outgoing_messages") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(55)))


def downgrade() -> None:
    with op.batch_alter_table("outgoing_messages") as batch:
        batch.drop_column("traceparent")
