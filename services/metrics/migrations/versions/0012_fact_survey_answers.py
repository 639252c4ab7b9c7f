"""a survey answer's fact: who answered (carer, service user, bereaved person; never which one), the question and
the answer

Revision ID: 0012
Revises: 0011
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: Union[str, Sequence[str], None] = "0011"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("facts") as batch:
        batch.add_column(sa.Column("respondent", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("question", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("answer", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("facts") as batch:
        batch.drop_column("answer")
        batch.drop_column("question")
        batch.drop_column("respondent")
