"""a befriending match's visits, as matching said them: overdue since a day (the board puts it first), and the
latest visit logged (an overdue spell older than it is over)

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
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("visit_overdue_since", sa.Date()))
        batch_op.add_column(sa.Column("last_visit_on", sa.Date()))


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("last_visit_on")
        batch_op.drop_column("visit_overdue_since")
