"""recurring requests

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 22:00:45.010945

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('match_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('repeat_every_weeks', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('repeat_occurrences', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('occurrence', sa.Integer(), nullable=False, server_default='1'))

    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('occurrence', sa.Integer(), nullable=False, server_default='1'))



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_column('occurrence')

    with op.batch_alter_table('match_requests', schema=None) as batch_op:
        batch_op.drop_column('occurrence')
        batch_op.drop_column('repeat_occurrences')
        batch_op.drop_column('repeat_every_weeks')

