"""which request each message is about: an SMS sent for an offer or a task names its request, and an SMS a phone
sends back that waits in the inbox is about the request of the last one that phone was sent

Revision ID: 0007
Revises: 0006
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0007"
down_revision: Union[str, Sequence[str], None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("outgoing_messages") as batch:
        batch.add_column(sa.Column("request_id", sa.Uuid))
        batch.create_index("ix_outgoing_messages_to_phone_request", ["to_phone", "request_id"])
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("request_id", sa.Uuid))
        batch.create_index("ix_inbound_messages_request_id", ["request_id"])


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_index("ix_inbound_messages_request_id")
        batch.drop_column("request_id")
    with op.batch_alter_table("outgoing_messages") as batch:
        batch.drop_index("ix_outgoing_messages_to_phone_request")
        batch.drop_column("request_id")
