"""surveys by SMS: a community's own questions, each request's survey, and the answers

Revision ID: 0014
Revises: 0013
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0014"
down_revision: Union[str, Sequence[str], None] = "0013"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "survey_questions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("respondent", sa.String(length=20), nullable=False),
        sa.Column("text", sa.String(length=200), nullable=False),
        sa.Column("text_fr", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_survey_questions_community"), "survey_questions", ["community"], unique=False)
    op.create_table(
        "surveys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("respondent", sa.String(length=20), nullable=False),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("asked", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("ended_reason", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index(op.f("ix_surveys_community"), "surveys", ["community"], unique=False)
    op.create_index(op.f("ix_surveys_due_at"), "surveys", ["due_at"], unique=False)
    op.create_index(op.f("ix_surveys_status"), "surveys", ["status"], unique=False)
    op.create_index(op.f("ix_surveys_phone"), "surveys", ["phone"], unique=False)
    op.create_table(
        "survey_answers",
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("question_id", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.Integer(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["survey_id"], ["surveys.id"]),
        sa.PrimaryKeyConstraint("survey_id", "question_id"),
    )


def downgrade() -> None:
    op.drop_table("survey_answers")
    for column in ("phone", "status", "due_at", "community"):
        op.drop_index(op.f(f"ix_surveys_{column}"), table_name="surveys")
    op.drop_table("surveys")
    op.drop_index(op.f("ix_survey_questions_community"), table_name="survey_questions")
    op.drop_table("survey_questions")
