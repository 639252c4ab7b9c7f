"""volunteers say when they last changed, for each process's candidate index; the grid cell column goes (the
index keeps its own grid in memory)

Revision ID: 0010
Revises: 0009
"""
import importlib.util
from pathlib import Path
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


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
    """The grid cells come back, filled as 0006 filled them."""
    cells = importlib.util.spec_from_file_location("cells", Path(__file__).with_name("0006_volunteer_grid_cells.py"))
    module = importlib.util.module_from_spec(cells)
    cells.loader.exec_module(module)
    module.add_cells()
    with op.batch_alter_table("volunteers", schema=None) as batch_op:
        batch_op.alter_column("cell", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index("ix_volunteers_cell", ["community", "status", "cell"], unique=False)
        batch_op.drop_index("ix_volunteers_changed")
        batch_op.drop_column("changed")
