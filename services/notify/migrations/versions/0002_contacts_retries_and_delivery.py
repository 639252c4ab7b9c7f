"""contacts with opt-outs and languages; messages that wait, retry and report delivery

Revision ID: 0002
Revises: 0001
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opted_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invalid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invalid_reason", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("phone"),
    )
    with op.batch_alter_table("outgoing_messages") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("from_phone", sa.String(length=20), nullable=True))
        batch.create_index("ix_outgoing_messages_next_attempt_at", ["next_attempt_at"])
        batch.create_index("ix_outgoing_messages_provider_sid", ["provider_sid"])


def downgrade() -> None:
    with op.batch_alter_table("outgoing_messages") as batch:
        batch.drop_index("ix_outgoing_messages_provider_sid")
        batch.drop_index("ix_outgoing_messages_next_attempt_at")
        batch.drop_column("from_phone")
        batch.drop_column("delivered_at")
        batch.drop_column("attempts")
        batch.drop_column("next_attempt_at")
    op.drop_table("contacts")
