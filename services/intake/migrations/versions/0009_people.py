"""people: one record per person per community across their requests (each request gets its person, each
existing request a record of its own, for coordinators to merge), who cares for whom, the person a carer's request
is about, and the record an audit entry is about

Revision ID: 0009
Revises: 0008
"""
import uuid
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0009"
down_revision: Union[str, Sequence[str], None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_key", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("postcode", sa.String(length=10), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("died_on", sa.Date(), nullable=True),
        sa.Column("merged_into", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["merged_into"], ["people.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_people_community"), "people", ["community"], unique=False)
    op.create_index(op.f("ix_people_name_key"), "people", ["name_key"], unique=False)
    op.create_index(op.f("ix_people_phone"), "people", ["phone"], unique=False)
    op.create_table(
        "carers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("carer_id", sa.Uuid(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["carer_id"], ["people.id"]),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("person_id", "carer_id", name="uq_carers_person_id_carer_id"),
    )
    op.create_index(op.f("ix_carers_community"), "carers", ["community"], unique=False)
    op.create_index(op.f("ix_carers_person_id"), "carers", ["person_id"], unique=False)
    op.create_index(op.f("ix_carers_carer_id"), "carers", ["carer_id"], unique=False)
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("person_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("maybe_person_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("cares_for_id", sa.Uuid(), nullable=True))
        batch.create_index(batch.f("ix_requests_person_id"), ["person_id"], unique=False)
        batch.create_foreign_key("fk_requests_person_id_people", "people", ["person_id"], ["id"])
        batch.create_foreign_key("fk_requests_maybe_person_id_people", "people", ["maybe_person_id"], ["id"])
        batch.create_foreign_key("fk_requests_cares_for_id_people", "people", ["cares_for_id"], ["id"])
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("person_id", sa.Uuid(), nullable=True))
        batch.create_index(batch.f("ix_audit_log_person_id"), ["person_id"], unique=False)
    # Each request made before gets a record of its own (never guessed together: coordinators merge them).
    requests = sa.table("requests", sa.column("id", sa.Uuid()), sa.column("community"), sa.column("person_name"),
                        sa.column("person_phone"), sa.column("date_of_birth", sa.Date()), sa.column("address"),
                        sa.column("postcode"), sa.column("created_at", sa.DateTime(timezone=True)),
                        sa.column("person_id", sa.Uuid()))
    people = sa.table("people", *(sa.column(name) for name in ("community", "name", "name_key", "phone", "address",
                                                               "postcode")),
                      sa.column("id", sa.Uuid()), sa.column("date_of_birth", sa.Date()),
                      sa.column("created_at", sa.DateTime(timezone=True)),
                      sa.column("last_activity_at", sa.DateTime(timezone=True)))
    connection = op.get_bind()
    for row in connection.execute(sa.select(requests)).all():
        person_id = uuid.uuid4()
        connection.execute(sa.insert(people).values(
            id=person_id, community=row.community, name=row.person_name,
            name_key=" ".join(row.person_name.lower().split()), phone=row.person_phone, address=row.address,
            postcode=row.postcode, date_of_birth=row.date_of_birth, created_at=row.created_at,
            last_activity_at=row.created_at))
        connection.execute(sa.update(requests).where(requests.c.id == row.id).values(person_id=person_id))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_index(batch.f("ix_audit_log_person_id"))
        batch.drop_column("person_id")
    with op.batch_alter_table("requests") as batch:
        batch.drop_constraint("fk_requests_cares_for_id_people", type_="foreignkey")
        batch.drop_constraint("fk_requests_maybe_person_id_people", type_="foreignkey")
        batch.drop_constraint("fk_requests_person_id_people", type_="foreignkey")
        batch.drop_index(batch.f("ix_requests_person_id"))
        batch.drop_column("cares_for_id")
        batch.drop_column("maybe_person_id")
        batch.drop_column("person_id")
    op.drop_index(op.f("ix_carers_carer_id"), table_name="carers")
    op.drop_index(op.f("ix_carers_person_id"), table_name="carers")
    op.drop_index(op.f("ix_carers_community"), table_name="carers")
    op.drop_table("carers")
    op.drop_index(op.f("ix_people_phone"), table_name="people")
    op.drop_index(op.f("ix_people_name_key"), table_name="people")
    op.drop_index(op.f("ix_people_community"), table_name="people")
    op.drop_table("people")
