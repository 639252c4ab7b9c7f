"""volunteers say when they last changed, for each process's candidate index; the grid cell column goes (the
index keeps its own grid in memory)

Revision ID: 0010
Revises: 0009
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from services.matching.candidates import grid_cell


revision: str = "0010"
down_revision: Union[str, Sequence[str], None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Every volunteer already stored counts as changed before any index read them (0): a new index reads them all."""
    with op.batch_alter_table("volunteers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("changed", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_index("ix_volunteers_changed", ["changed"], unique=False)
        batch_op.drop_index("ix_volunteers_cell")
        batch_op.drop_column("cell")


def downgrade() -> None:
    """The grid cells come back, computed as 0006 computed them."""
    with op.batch_alter_table("volunteers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cell", sa.Integer(), nullable=True))
    connection = op.get_bind()
    places = connection.execute(sa.text("SELECT id, latitude, longitude FROM volunteers")).all()
    for start in range(0, len(places), 10_000):
        connection.execute(sa.text("UPDATE volunteers SET cell = :cell WHERE id = :id"),
                           [{"id": id_, "cell": grid_cell(lat, lon)} for id_, lat, lon in places[start:start + 10_000]])
    with op.batch_alter_table("volunteers", schema=None) as batch_op:
        batch_op.alter_column("cell", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index("ix_volunteers_cell", ["community", "status", "cell"], unique=False)
        batch_op.drop_index("ix_volunteers_changed")
        batch_op.drop_column("changed")
