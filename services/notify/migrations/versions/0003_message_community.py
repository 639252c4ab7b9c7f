"""each message's community, so reads are scoped to it

Revision ID: 0003
Revises: 0002
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from shared.communities import all_communities


revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

outgoing = sa.table("outgoing_messages", sa.column("id", sa.Uuid), sa.column("key", sa.String),
                    sa.column("purpose", sa.String), sa.column("to_phone", sa.String),
                    sa.column("from_phone", sa.String), sa.column("created_at", sa.DateTime(timezone=True)),
                    sa.column("community", sa.String))
inbound = sa.table("inbound_messages", sa.column("from_phone", sa.String), sa.column("to_phone", sa.String),
                   sa.column("received_at", sa.DateTime(timezone=True)))


def _set(connection, changes: dict) -> None:
    """Give each message (by id) its community."""
    rows = [{"message_id": message_id, "slug": slug} for message_id, slug in changes.items()]
    for start in range(0, len(rows), 5_000):
        connection.execute(outgoing.update().where(outgoing.c.id == sa.bindparam("message_id"))
                           .values(community=sa.bindparam("slug")), rows[start:start + 5_000])


def _backfill(connection) -> None:
    """Each existing message's community, where it can be told: the community whose number sent it; else, for a
    task's details, reminders and "closed" texts, the community of the offer they follow; else, for an answer,
    the community whose number the phone had just texted. Messages none of these tells stay without one (and
    no coordinator reads them)."""
    by_number = {place.sms_from: slug for slug, place in all_communities().items()}
    for number, slug in by_number.items():
        connection.execute(outgoing.update().where(outgoing.c.community.is_(None), outgoing.c.from_phone == number)
                           .values(community=slug))
    offers = dict(connection.execute(sa.select(outgoing.c.key, outgoing.c.community).where(
        outgoing.c.purpose == "offer", outgoing.c.community.is_not(None))).all())
    left = connection.execute(sa.select(outgoing.c.id, outgoing.c.key, outgoing.c.purpose, outgoing.c.to_phone,
                                        outgoing.c.created_at).where(outgoing.c.community.is_(None))).all()
    changes = {}
    for message_id, key, purpose, _, _ in left:
        slug = offers.get("offer:" + key.split(":", 1)[-1]) if purpose != "answer" else None
        if slug:
            changes[message_id] = slug
    answers = [row for row in left if row.purpose == "answer"]
    if answers:
        texts = connection.execute(sa.select(inbound.c.from_phone, inbound.c.to_phone, inbound.c.received_at).where(
            inbound.c.from_phone.in_({row.to_phone for row in answers})).order_by(inbound.c.received_at)).all()
        for row in answers:
            before = [t for t in texts if t.from_phone == row.to_phone and (
                row.created_at is None or t.received_at is None or t.received_at <= row.created_at)]
            slug = by_number.get(before[-1].to_phone) if before else None
            if slug:
                changes[row.id] = slug
    _set(connection, changes)


def upgrade() -> None:
    with op.batch_alter_table("outgoing_messages") as batch:
        batch.add_column(sa.Column("community", sa.String(length=64), nullable=True))
        batch.create_index("ix_outgoing_messages_community", ["community"])
    _backfill(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("outgoing_messages") as batch:
        batch.drop_index("ix_outgoing_messages_community")
        batch.drop_column("community")
