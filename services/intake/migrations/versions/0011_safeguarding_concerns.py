"""the safeguarding log: volunteers' concerns and the actions taken, and each request's count of open concerns

Revision ID: 0011
Revises: 0010
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0011"
down_revision: Union[str, Sequence[str], None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "concerns",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("volunteer_id", sa.Uuid(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_concerns_community"), "concerns", ["community"], unique=False)
    op.create_index(op.f("ix_concerns_request_id"), "concerns", ["request_id"], unique=False)
    op.create_table(
        "concern_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("concern_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("by", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["concern_id"], ["concerns.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_concern_actions_concern_id"), "concern_actions", ["concern_id"], unique=False)
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("concerns_open", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("concerns_open")
    op.drop_index(op.f("ix_concern_actions_concern_id"), table_name="concern_actions")
    op.drop_table("concern_actions")
    op.drop_index(op.f("ix_concerns_request_id"), table_name="concerns")
    op.drop_index(op.f("ix_concerns_community"), table_name="concerns")
    op.drop_table("concerns")
