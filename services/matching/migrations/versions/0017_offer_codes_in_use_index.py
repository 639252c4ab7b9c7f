"""an index on the codes of offers open or accepted: a new offer's codes are checked against them without reading
every offer ever made

Revision ID: 0017
Revises: 0016
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: Union[str, Sequence[str], None] = "0016"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

IN_USE = sa.text("status IN ('open', 'accepted')")


def upgrade() -> None:
    op.create_index("ix_offers_code_in_use", "offers", ["code"], sqlite_where=IN_USE, postgresql_where=IN_USE)


def downgrade() -> None:
    op.drop_index("ix_offers_code_in_use", table_name="offers")
