"""volunteer grid cells for the candidate search

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from services.matching.candidates import grid_cell


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: give every volunteer their grid cell, and index by cell instead of latitude and longitude."""
    add_cells()
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.alter_column('cell', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_index('ix_volunteers_place')
        batch_op.create_index('ix_volunteers_cell', ['community', 'status', 'cell'], unique=False)


def add_cells() -> None:
    """Add the `cell` column, filled for every volunteer (0010's downgrade brings it back this way too)."""
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cell', sa.Integer(), nullable=True))
    # Computed here as the model computes it (SQLite and PostgreSQL round negative numbers differently).
    connection = op.get_bind()
    places = connection.execute(sa.text("SELECT id, latitude, longitude FROM volunteers")).all()
    for start in range(0, len(places), 10_000):
        connection.execute(sa.text("UPDATE volunteers SET cell = :cell WHERE id = :id"),
                           [{"id": id_, "cell": grid_cell(lat, lon)} for id_, lat, lon in places[start:start + 10_000]])


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_index('ix_volunteers_cell')
        batch_op.create_index('ix_volunteers_place', ['community', 'status', 'latitude', 'longitude'], unique=False)
        batch_op.drop_column('cell')
