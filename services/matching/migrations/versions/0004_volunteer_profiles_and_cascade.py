"""volunteer profiles, checks, availability, and offers that cascade

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 21:55:50.879011

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('time_away',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('volunteer_id', sa.Uuid(), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['volunteer_id'], ['volunteers.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('time_away', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_time_away_volunteer_id'), ['volunteer_id'], unique=False)

    op.create_table('volunteer_checks',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('volunteer_id', sa.Uuid(), nullable=False),
    sa.Column('check', sa.String(length=32), nullable=False),
    sa.Column('done_on', sa.Date(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('reminded_for', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['volunteer_id'], ['volunteers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('volunteer_id', 'check')
    )
    with op.batch_alter_table('volunteer_checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_volunteer_checks_expires_on'), ['expires_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_volunteer_checks_volunteer_id'), ['volunteer_id'], unique=False)

    with op.batch_alter_table('match_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('volunteer_language', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('volunteer_gender', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('person_ref', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('round', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('given_back', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('unmatched_reason', sa.String(length=500), nullable=True))
        batch_op.create_index(batch_op.f('ix_match_requests_person_ref'), ['person_ref'], unique=False)

    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('round', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('distance_km', sa.Float(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('sent_at', shared.db.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('expires_at', shared.db.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('completed_at', shared.db.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('hours', sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f('ix_offers_expires_at'), ['expires_at'], unique=False)

    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('postcode', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('area', sa.String(length=8), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('languages', sa.JSON(), nullable=False, server_default='["en"]'))
        batch_op.add_column(sa.Column('gender', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('availability', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('weekly_cap', sa.Integer(), nullable=False, server_default='3'))
        batch_op.add_column(sa.Column('status', sa.String(length=8), nullable=False, server_default='active'))
        batch_op.add_column(sa.Column('sms_opted_out_at', shared.db.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_volunteers_place', ['community', 'status', 'latitude', 'longitude'], unique=False)
    # Volunteers marked inactive before there were statuses count as paused. Record their checks before they
    # are offered kinds of help that need them.
    op.execute("UPDATE volunteers SET status = 'paused' WHERE NOT active")
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_column('active')



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active', sa.BOOLEAN(), nullable=False, server_default=sa.true()))
        batch_op.drop_index('ix_volunteers_place')
        batch_op.drop_column('sms_opted_out_at')
        batch_op.drop_column('status')
        batch_op.drop_column('weekly_cap')
        batch_op.drop_column('availability')
        batch_op.drop_column('gender')
        batch_op.drop_column('languages')
        batch_op.drop_column('area')
        batch_op.drop_column('postcode')

    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_offers_expires_at'))
        batch_op.drop_column('hours')
        batch_op.drop_column('completed_at')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('sent_at')
        batch_op.drop_column('distance_km')
        batch_op.drop_column('round')

    with op.batch_alter_table('match_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_match_requests_person_ref'))
        batch_op.drop_column('unmatched_reason')
        batch_op.drop_column('given_back')
        batch_op.drop_column('round')
        batch_op.drop_column('person_ref')
        batch_op.drop_column('volunteer_gender')
        batch_op.drop_column('volunteer_language')

    with op.batch_alter_table('volunteer_checks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_volunteer_checks_volunteer_id'))
        batch_op.drop_index(batch_op.f('ix_volunteer_checks_expires_on'))

    op.drop_table('volunteer_checks')
    with op.batch_alter_table('time_away', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_time_away_volunteer_id'))

    op.drop_table('time_away')
