"""Intake's tables, the mapping of its domain onto them, its repositories and its unit of work.

Tables: requests for support, the consents and timeline that go with them, users, the audit log, idempotency keys,
and intake's outbox and inbox. The domain classes are mapped onto them imperatively, so domain.py knows no database.
"""

from __future__ import annotations

import functools
import gzip
import json
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from services.intake.directory import DirectoryEntry
from services.intake.surveys import CommunityQuestion, Survey
from services.intake.domain import (ANSWERS_DUE_SOON, FINAL_STATUSES, SIGN_IN_WINDOW, URGENCY_RANK, AuditEntry,
                                    CarerLink, Concern, ConcernAction, Consent, FailedSignIn, Organisation,
                                    OrganisationExists, Person, SupportRequest, TimelineEntry, User, name_key,
                                    referred_by, scrubbed, within_reach)
from shared import idempotency
from shared.auth import SYSTEM, Actor
from shared.clock import utcnow
from shared.contracts import EventPayload
from shared.db import UtcDateTime, is_postgres
from shared.outbox import Doorbell, Outbox
from shared.revocation import Revocations
from shared.scoping import in_scope
from shared.unit_of_work import SqlUnitOfWork
from shared.web import page_of


class Base(DeclarativeBase):
    pass


outbox = Outbox.for_base(Base)
revocations = Revocations.for_base(Base)
webhooks_due = Doorbell()  # rung when this process commits a webhook delivery; intake's sender waits on it
metadata = Base.metadata
COMMON_PASSWORDS = Path(__file__).with_name("data") / "common-passwords.txt.gz"

# One person in one community, across their requests (domain.Person): the details last known.
people = sa.Table(
    "people", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), index=True, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("name_key", sa.String(200), index=True, nullable=False),  # domain.name_key: how names are compared
    sa.Column("phone", sa.String(20), index=True),
    sa.Column("date_of_birth", sa.Date),
    sa.Column("address", sa.Text, default="", nullable=False),
    sa.Column("postcode", sa.String(10)),
    sa.Column("created_at", UtcDateTime, default=utcnow, nullable=False),
    sa.Column("last_activity_at", UtcDateTime, default=utcnow, nullable=False),
    sa.Column("died_on", sa.Date),
    sa.Column("merged_into", sa.Uuid, sa.ForeignKey("people.id")),
    sa.Column("monitoring", sa.JSON),  # consent to equity monitoring, and the answers given with it
)

# Who cares for whom (domain.CarerLink): both are people's records.
carers = sa.Table(
    "carers", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), index=True, nullable=False),
    sa.Column("person_id", sa.Uuid, sa.ForeignKey("people.id"), index=True, nullable=False),
    sa.Column("carer_id", sa.Uuid, sa.ForeignKey("people.id"), index=True, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, default=utcnow, nullable=False),
    sa.UniqueConstraint("person_id", "carer_id", name="uq_carers_person_id_carer_id"),
)

requests = sa.Table(
    "requests", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), index=True, nullable=False),
    sa.Column("person_id", sa.Uuid, sa.ForeignKey("people.id"), index=True),
    sa.Column("maybe_person_id", sa.Uuid, sa.ForeignKey("people.id")),  # a record that may be theirs, to confirm
    sa.Column("cares_for_id", sa.Uuid, sa.ForeignKey("people.id")),  # for a carer: the person they care for
    sa.Column("source", sa.String(20), default="coordinator", nullable=False),
    sa.Column("status", sa.String(16), default="submitted", index=True, nullable=False),
    sa.Column("outcome", sa.Text, default="", nullable=False),
    sa.Column("matching_sequence", sa.Integer, default=0, nullable=False),  # of matching's event that set the status
    # What the board puts first, as matching and notify said it (domain.SupportRequest.needs_you)
    sa.Column("given_back_at", UtcDateTime),
    sa.Column("answers_due_at", UtcDateTime),
    sa.Column("sms_waiting", sa.Integer, default=0, nullable=False),
    sa.Column("sms_waiting_as_of", UtcDateTime),
    sa.Column("concerns_open", sa.Integer, default=0, nullable=False),  # volunteers' concerns open (the log's)
    sa.Column("visit_overdue_since", sa.Date),  # a befriending match's last visit (or start), when overdue
    sa.Column("last_visit_on", sa.Date),  # a befriending match's latest visit matching told of
    # The person
    sa.Column("person_name", sa.String(200), nullable=False),
    sa.Column("person_phone", sa.String(20)),
    sa.Column("address", sa.Text, default="", nullable=False),
    sa.Column("postcode", sa.String(10)),
    sa.Column("area", sa.String(8), default="", nullable=False),
    sa.Column("latitude", sa.Float, nullable=False),
    sa.Column("longitude", sa.Float, nullable=False),
    sa.Column("preferred_language", sa.String(8), default="en", nullable=False),
    sa.Column("date_of_birth", sa.Date),
    sa.Column("is_carer", sa.Boolean, default=False, nullable=False),
    # The help
    sa.Column("support_type", sa.String(40), index=True, nullable=False),
    sa.Column("urgency", sa.String(8), default="routine", index=True, nullable=False),
    sa.Column("window_start", UtcDateTime),
    sa.Column("window_end", UtcDateTime),
    sa.Column("window_days", sa.JSON),
    sa.Column("window_part", sa.String(10)),
    sa.Column("repeat_every_weeks", sa.Integer),
    sa.Column("repeat_occurrences", sa.Integer, default=1, nullable=False),
    sa.Column("preferences", sa.JSON, default=dict, nullable=False),
    sa.Column("coordinator_notes", sa.Text, default="", nullable=False),
    # Referrals
    sa.Column("referrer_organisation", sa.String(200), index=True),
    sa.Column("referrer_name", sa.String(200)),
    sa.Column("referrer_contact", sa.String(200)),
    sa.Column("referral_reason", sa.Text, default="", nullable=False),
    sa.Column("external_id", sa.String(64)),
    sa.Column("source_document", sa.JSON),  # a FHIR ServiceRequest (or the transaction Bundle it came in), as sent
    sa.Column("to_check", sa.JSON, default=list, nullable=False),  # what a coordinator should check (flags)
    sa.Column("signposted_to", sa.Uuid),  # the directory entry the person was pointed to, if they were
    sa.Column("pseudonymised_at", UtcDateTime),  # when its person's details were removed (retention, or erasure)
    sa.Column("created_by", sa.String(200), index=True, nullable=False),
    sa.Column("created_at", UtcDateTime, default=utcnow, nullable=False),
    sa.Column("updated_at", UtcDateTime, default=utcnow, onupdate=utcnow, nullable=False),
)

consents = sa.Table(
    "consents", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Uuid, sa.ForeignKey("requests.id"), index=True, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("given", sa.Boolean, nullable=False),
    sa.Column("recorded_by", sa.String(200), nullable=False),
    sa.Column("recorded_at", UtcDateTime, default=utcnow, nullable=False),
)

timeline = sa.Table(
    "timeline", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Uuid, sa.ForeignKey("requests.id"), index=True, nullable=False),
    sa.Column("at", UtcDateTime, default=utcnow, nullable=False),
    sa.Column("what", sa.String(20), nullable=False),
    sa.Column("detail", sa.Text, default="", nullable=False),
    sa.Column("actor", sa.String(200), default="", nullable=False),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, default=utcnow, index=True, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("request_id", sa.Uuid, index=True),
    sa.Column("person_id", sa.Uuid, index=True),  # the person's record, for what was done to it (a merge)
    sa.Column("fields", sa.JSON, default=list, nullable=False),
)

idempotency_keys = idempotency.table(metadata)

# What each run of the nightly retention job did, and each erasure: counts and request ids, never a person's details.
retention_runs = sa.Table(
    "retention_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(12), nullable=False),  # "nightly" or "erasure"
    sa.Column("day", sa.Date, index=True, nullable=False),  # the day it ran for (the services' clock)
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(200), default="", nullable=False),  # who asked for an erasure
    sa.Column("counts", sa.JSON, default=dict, nullable=False),  # by community: what was done, how many times
    sa.Column("request_ids", sa.JSON, default=list, nullable=False),  # an erasure's requests
)

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("email", sa.String(200), unique=True, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("communities", sa.JSON, nullable=False),
    sa.Column("organisation", sa.String(200)),
    sa.Column("password_hash", sa.String(300), nullable=False),
    sa.Column("active", sa.Boolean, default=True, nullable=False),
    sa.Column("created_at", UtcDateTime, default=utcnow, nullable=False),
)

# Failed sign-ins of the last SIGN_IN_WINDOW, for the lock-out (older ones are dropped as new ones come).
sign_in_attempts = sa.Table(
    "sign_in_attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(200), index=True, nullable=False),
    sa.Column("address", sa.String(64), index=True, nullable=False),
    sa.Column("at", UtcDateTime, index=True, nullable=False),
)

# A community's register of organisations, and what their webhooks were sent (each change to a referral, kept to
# show it was told, retried with back-off until it answers 2xx or MAX_ATTEMPTS are spent).
organisations = sa.Table(
    "organisations", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), index=True, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("adopted_on", sa.Date),  # when it adopted a compassionate communities approach
    sa.Column("webhook_url", sa.String(500)),
    sa.Column("webhook_secret", sa.String(100)),
    sa.Column("created_at", UtcDateTime, default=utcnow, nullable=False),
    sa.UniqueConstraint("community", "name", name="uq_organisations_community_name"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("organisation_id", sa.Uuid, sa.ForeignKey("organisations.id"), index=True, nullable=False),
    sa.Column("request_id", sa.Uuid, index=True, nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, default=utcnow, nullable=False),
    sa.Column("due_at", UtcDateTime, default=utcnow, index=True),  # None once delivered or given up
    sa.Column("attempts", sa.Integer, default=0, nullable=False),
    sa.Column("delivered_at", UtcDateTime),
    sa.Column("last_answer", sa.String(200)),  # "200", "503", "timed out", ...
)

# The signposting directory: services and groups in the community to point someone to (services/intake/directory.py).
directory_entries = sa.Table(
    "directory_entries", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), index=True, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kinds", sa.JSON, nullable=False),  # the kinds of help it offers (shared.taxonomy.KINDS)
    sa.Column("description", sa.Text, default="", nullable=False),
    sa.Column("organisation", sa.String(200), default="", nullable=False),
    sa.Column("organisation_id", sa.Uuid, sa.ForeignKey("organisations.id")),
    sa.Column("postcode", sa.String(10)),
    sa.Column("area", sa.String(8), default="", nullable=False),
    sa.Column("latitude", sa.Float),
    sa.Column("longitude", sa.Float),
    sa.Column("when", sa.Text, default="", nullable=False),
    sa.Column("phone", sa.String(40), default="", nullable=False),
    sa.Column("email", sa.String(200), default="", nullable=False),
    sa.Column("website", sa.String(500), default="", nullable=False),
    sa.Column("eligibility", sa.Text, default="", nullable=False),
    sa.Column("external_id", sa.String(100)),  # its id in the Open Referral feed or sheet it came from
    sa.Column("retired", sa.Boolean, default=False, nullable=False),
    sa.Column("created_at", UtcDateTime, default=utcnow, nullable=False),
    sa.Column("updated_at", UtcDateTime, default=utcnow, nullable=False),
    sa.UniqueConstraint("community", "external_id", name="uq_directory_entries_community_external_id"),
)

# How many of a community's applicants to volunteer wait too long at their stage, as matching last said
# (`applicants.waiting`): the board reminds the coordinators.
applicants_waiting = sa.Table(
    "applicants_waiting", metadata,
    sa.Column("community", sa.String(64), primary_key=True),
    sa.Column("waiting_too_long", sa.Integer, nullable=False),
    sa.Column("wait_days", sa.Integer, nullable=False),
    sa.Column("as_of", UtcDateTime, nullable=False),
)

# The safeguarding log: volunteers' concerns, append-only. A concern's row is written once and never changed (its
# words least of all); what coordinators did is appended as concern_actions rows, and one that closes it closes it.
concerns = sa.Table(
    "concerns", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),  # matching's, made from the SMS: a redelivery is the same concern
    sa.Column("request_id", sa.Uuid, sa.ForeignKey("requests.id"), index=True, nullable=False),
    sa.Column("community", sa.String(64), index=True, nullable=False),
    sa.Column("volunteer_id", sa.Uuid, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("raised_at", UtcDateTime, nullable=False),
    sa.Column("opened_at", UtcDateTime, nullable=False),
)

concern_actions = sa.Table(
    "concern_actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("concern_id", sa.Uuid, sa.ForeignKey("concerns.id"), index=True, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),  # shared.taxonomy.CONCERN_ACTIONS
    sa.Column("note", sa.Text, default="", nullable=False),
    sa.Column("by", sa.String(200), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("closes", sa.Boolean, default=False, nullable=False),
)

# Surveys by SMS (services/intake/surveys.py): the questions a community added, each person's survey after a
# request's help, and their answers (one per question: a redelivered answer is the same answer).
survey_questions = sa.Table(
    "survey_questions", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("community", sa.String(64), index=True, nullable=False),
    sa.Column("respondent", sa.String(20), nullable=False),
    sa.Column("text", sa.String(200), nullable=False),
    sa.Column("text_fr", sa.String(200), default="", nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("retired_at", UtcDateTime),
)

surveys = sa.Table(
    "surveys", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("community", sa.String(64), index=True, nullable=False),
    sa.Column("request_id", sa.Uuid, sa.ForeignKey("requests.id"), unique=True, nullable=False),  # one per request
    sa.Column("respondent", sa.String(20), nullable=False),
    sa.Column("questions", sa.JSON, nullable=False),
    sa.Column("due_at", UtcDateTime, index=True, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(10), index=True, nullable=False),  # due, asking, done, stopped
    sa.Column("asked", sa.Integer, default=0, nullable=False),
    sa.Column("phone", sa.String(20), index=True),
    sa.Column("ended_reason", sa.String(80), default="", nullable=False),
)

survey_answers = sa.Table(
    "survey_answers", metadata,
    sa.Column("survey_id", sa.Uuid, sa.ForeignKey("surveys.id"), primary_key=True),
    sa.Column("question_id", sa.String(64), primary_key=True),
    sa.Column("answer", sa.Integer, nullable=False),
    sa.Column("answered_at", UtcDateTime, nullable=False),
)

mapper = Base.registry.map_imperatively
mapper(Consent, consents)
mapper(TimelineEntry, timeline)
mapper(SupportRequest, requests, properties={
    "consents": relationship(Consent, order_by=consents.c.recorded_at, lazy="selectin",
                             cascade="all, delete-orphan"),
    "timeline": relationship(TimelineEntry, order_by=(timeline.c.at, timeline.c.id), lazy="selectin",
                             cascade="all, delete-orphan"),  # in the order things happened, whenever heard of
})
mapper(ConcernAction, concern_actions)
mapper(Concern, concerns, properties={
    "actions": relationship(ConcernAction, order_by=(concern_actions.c.at, concern_actions.c.id), lazy="selectin"),
})
mapper(AuditEntry, audit_log)
mapper(Person, people)
mapper(CarerLink, carers)
mapper(User, users)
mapper(FailedSignIn, sign_in_attempts)
mapper(Organisation, organisations)
mapper(DirectoryEntry, directory_entries)
mapper(CommunityQuestion, survey_questions)
mapper(Survey, surveys)


# --- repositories -----------------------------------------------------------------------------------------------------


def reach_of(actor: Actor) -> list:
    """The SQL twin of domain.within_reach: the actor's communities (for a referrer, what they made)."""
    if actor == SYSTEM:
        return []
    where = [in_scope(requests.c.community, actor)]
    if actor.role == "referrer":
        where.extend(referrals_of(actor))
    return where


def referrals_of(actor: Actor) -> list:
    """The SQL twin of domain.referred_by, within the actor's communities: their organisation's referrals (for an
    account that names none, the ones they made)."""
    if actor.organisation:
        return [requests.c.referrer_organisation == actor.organisation]
    return [requests.c.created_by == actor.subject, requests.c.referrer_organisation.is_not(None)]


def searched(text: str) -> list:
    """The board's search: a name that contains the text (any case), or a phone number that contains its digits
    (a leading 0, as people write a national number, left off: numbers are kept as +44...)."""
    text = text.strip()
    if not text:
        return []
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    either = [sa.func.lower(requests.c.person_name).like(f"%{escaped}%", escape="\\")]
    digits = "".join(ch for ch in text if ch.isdigit()).lstrip("0")
    if len(digits) >= 4:
        either.append(requests.c.person_phone.like(f"%{digits}%"))
    return [sa.or_(*either)]


def needs_you(now: datetime) -> sa.ColumnElement[bool]:
    """The SQL twin of domain.SupportRequest.needs_you: true when the request has a reason to be looked at now."""
    c = requests.c
    return sa.or_(c.concerns_open > 0,
                  c.status == "unmatched",
                  sa.and_(c.status == "matched", c.visit_overdue_since.is_not(None)),
                  sa.and_(c.given_back_at.is_not(None), c.status.in_(("offered", "unmatched"))),
                  sa.and_(c.status == "offered", c.answers_due_at > now, c.answers_due_at <= now + ANSWERS_DUE_SOON),
                  c.sms_waiting > 0,
                  sa.and_(c.urgency == "urgent", c.status.in_(("submitted", "offered"))))


def board_order(query, now: datetime):
    """The SQL twin of domain.board_rank: those with a volunteer's concern open first, then the others needing a
    coordinator, then unmatched, then by urgency, then newest."""
    return query.order_by(sa.case((requests.c.concerns_open > 0, 0), else_=1),
                          sa.case((needs_you(now), 0), else_=1),
                          sa.case((requests.c.status == "unmatched", 0), else_=1),
                          sa.case(URGENCY_RANK, value=requests.c.urgency, else_=2),
                          requests.c.created_at.desc())


class NewRows:
    """The rows a unit of work adds (a new request with its consents and timeline, audit entries, outbox events, a
    create's idempotency answer), written at its flush or commit in as few statements as the database allows. None
    goes through the ORM's flush, which sent a new request's rows as five INSERTs, each with its RETURNING.

    On PostgreSQL: one statement, whatever was added. Each table's rows travel as one JSON array and are inserted by
    `json_populate_recordset`, each table's INSERT a CTE of the last one's; the SQL depends only on which tables
    have rows, so it is made once, and neither SQLAlchemy nor psycopg compiles it again (single-row INSERTs built
    with SQLAlchemy cost more CPU than the rest of the request). On SQLite, where a statement costs no round trip,
    one INSERT per table.

    Every column but a generated id is taken from the object (a column's Python default where the object has None),
    so what is written is what the objects say, and an answer rendered from them before the write is what was
    stored. Rows added here are not seen by a query in the same unit of work before its flush; one statement's rows
    get their generated ids in no particular order."""

    def __init__(self):
        self.rows: dict[sa.Table, list[dict[str, Any]]] = {}

    def append(self, table: sa.Table, *objects: Any, **given: Any) -> None:
        """Write these objects as rows of `table` at the next flush, with the columns `given` (a child's foreign
        key, which the ORM's relationship would have set)."""
        columns = [c for c in written(table) if c.key not in given]
        for o in objects:
            row = {c.key: getattr(o, c.key) for c in columns}
            for c in columns:
                if row[c.key] is None and c.default is not None:
                    row[c.key] = c.default.arg(None) if c.default.is_callable else c.default.arg
            self.rows.setdefault(table, []).append({**row, **given})

    def write(self, session: Session) -> None:
        """Insert what was added, parents before children; a create's Idempotency-Key that another create has taken
        is IdempotencyKeyInUse, and nothing is written."""
        tables = tuple(table for table in metadata.sorted_tables if self.rows.get(table))
        rows, self.rows = self.rows, {}
        try:
            if not tables:
                return
            if is_postgres(session):
                session.execute(insert_from_json(tables), {
                    table.name: json.dumps(rows[table], default=json_value, separators=(",", ":")) for table in tables})
            else:
                for table in tables:
                    session.execute(sa.insert(table), rows[table])
        except IntegrityError as err:
            if idempotency_keys.name in str(err.orig):  # its primary key: the actor's key is taken
                raise idempotency.IdempotencyKeyInUse("A create with this Idempotency-Key was made; retry it.") from err
            raise


def written(table: sa.Table) -> list[sa.Column]:
    """The columns an INSERT gives: all but a generated integer id."""
    return [c for c in table.columns if not (c.primary_key and c.autoincrement is True)]


@functools.cache
def insert_from_json(tables: tuple[sa.Table, ...]) -> sa.TextClause:
    """One PostgreSQL statement that inserts each table's rows from a JSON array bound as the table's name, parents
    first (PostgreSQL checks foreign keys at the end of the statement, when every CTE has run)."""
    inserts = []
    for table in tables:
        names = ", ".join(f'"{c.name}"' for c in written(table))
        inserts.append(f'INSERT INTO "{table.name}" ({names}) SELECT {names} '
                       f'FROM json_populate_recordset(NULL::"{table.name}", CAST(:{table.name} AS json))')
    *earlier, last = inserts
    ctes = ", ".join(f"new_{n} AS ({insert})" for n, insert in enumerate(earlier))
    return sa.text(f"WITH {ctes} {last}" if ctes else last)


def json_value(value: Any) -> str:
    """A column's value in the JSON that insert_from_json reads: times in UTC, as UtcDateTime stores them."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: say which time zone it is in")
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, (uuid.UUID, date)):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


class SqlAnswers(idempotency.Answers):
    """The answers kept for Idempotency-Keys; a new create's is written with its other rows, in one statement."""

    def __init__(self, session: Session, new_rows: NewRows):
        super().__init__(session, idempotency_keys)
        self.new_rows = new_rows

    def add(self, answer: idempotency.IdempotencyKey) -> None:
        """Keep a new create's answer under its key; the unit of work's commit raises IdempotencyKeyInUse if the key
        is taken (PostgreSQL waits for a create that holds it to end first)."""
        self.new_rows.append(idempotency_keys, answer)


class SqlRequests:
    """Requests for support. Every read takes the actor it is for: nobody reads outside their reach."""

    def __init__(self, session: Session, new_rows: NewRows):
        self.session, self.new_rows = session, new_rows
        self.added: list[SupportRequest] = []
        self.moved: dict[uuid.UUID, SupportRequest] = {}  # referrals moved on before a flush reset their history
        sa.event.listen(session, "before_flush", lambda *_: self._note_moved())

    def _note_moved(self) -> None:
        """Keep the referrals whose status or outcome changed so far (a flush resets what changed)."""
        for held in self.session.identity_map.values():
            if isinstance(held, SupportRequest) and held.referrer_organisation:
                attributes = sa.inspect(held).attrs
                if attributes.status.history.has_changes() or attributes.outcome.history.has_changes():
                    self.moved[held.id] = held

    def changed_referrals(self) -> list[SupportRequest]:
        """The referrals this unit of work made, or whose status or outcome it changed (before a flush, or since)."""
        self._note_moved()
        added = {r.id for r in self.added}
        return [r for r in self.added if r.referrer_organisation] + [r for i, r in self.moved.items() if i not in added]

    def add(self, request: SupportRequest) -> None:
        """Keep a new request, its consents and its timeline (written at the unit of work's flush)."""
        self.added.append(request)
        self.new_rows.append(requests, request)
        self.new_rows.append(consents, *request.consents, request_id=request.id)
        self.new_rows.append(timeline, *request.timeline, request_id=request.id)

    def get(self, request_id: uuid.UUID, actor: Actor) -> SupportRequest | None:
        """A request within the actor's reach, or None."""
        request = self.session.get(SupportRequest, request_id)
        return request if request is not None and within_reach(request, actor) else None

    def of_ids(self, request_ids, actor: Actor) -> dict[uuid.UUID, SupportRequest]:
        """The requests of these ids within the actor's reach, by id, read in one query."""
        found = self.session.scalars(sa.select(SupportRequest).where(requests.c.id.in_(set(request_ids)))).all()
        return {request.id: request for request in found if within_reach(request, actor)}

    def get_referral(self, request_id: uuid.UUID, actor: Actor) -> SupportRequest | None:
        """A referral the actor made in one of their communities, or None."""
        request = self.session.get(SupportRequest, request_id)
        return request if request is not None and referred_by(request, actor) else None

    def list(self, actor: Actor, filters: dict[str, Any], page, search: str = "",
             now: datetime | None = None) -> list[SupportRequest]:
        """One page of the requests within the actor's reach that match `filters` (and `search`: part of the
        person's name, or of their phone number), in the board's order at `now`; sets `page.item_count`."""
        query = sa.select(SupportRequest).where(*reach_of(actor),
                                                *(requests.c[name] == value for name, value in filters.items()),
                                                *searched(search))
        return page_of(self.session, board_order(query, now or utcnow()), page)

    def latest_change(self, actor: Actor, now: datetime) -> tuple[datetime | None, int]:
        """When a request within the actor's reach last changed, and how many have offers about to time out at
        `now` (which moves with the clock alone): the board looks again only when one of them moves."""
        c = requests.c
        latest, due = self.session.execute(sa.select(
            sa.func.max(c.updated_at),
            sa.func.count().filter(c.status == "offered", c.answers_due_at > now,
                                   c.answers_due_at <= now + ANSWERS_DUE_SOON)).where(*reach_of(actor))).one()
        return latest, due

    def list_referrals(self, actor: Actor, page) -> list[SupportRequest]:
        """One page of the actor's organisation's referrals in their communities (for an account that names no
        organisation, the ones they made), newest first; sets `page.item_count`."""
        query = sa.select(SupportRequest).where(in_scope(requests.c.community, actor), *referrals_of(actor))
        return page_of(self.session, query.order_by(requests.c.created_at.desc()), page)


class SqlPeople:
    """People's records. Every read takes the actor it is for; a record merged into another is read as that one."""

    def __init__(self, session: Session, new_rows: NewRows):
        self.session, self.new_rows = session, new_rows

    def add(self, person: Person) -> None:
        """Keep a new record (written with the unit of work's other new rows, before its requests)."""
        self.new_rows.append(people, person)

    def get(self, person_id: uuid.UUID, actor: Actor) -> Person | None:
        """A record of the actor's communities, or None (the system sees every one)."""
        found = self.session.get(Person, person_id)
        return found if found is not None and (actor == SYSTEM or actor.may_see(found.community)) else None

    def family(self, person_id: uuid.UUID) -> list[Person]:
        """The record and every record merged into it (and into those), whatever their communities' reach: what
        holds a person's details (retention and erasure)."""
        found, frontier = [], [person_id]
        while frontier:
            rows = list(self.session.scalars(sa.select(Person).where(
                sa.or_(people.c.id.in_(frontier), people.c.merged_into.in_(frontier)))))
            new = [p for p in rows if p.id not in {f.id for f in found}]
            found += new
            frontier = [p.id for p in new]
        return found

    def quiet(self, person_ids: list[uuid.UUID]) -> list[Person]:
        """Of these records, those none of whose requests still holds the person's details (each pseudonymised)."""
        if not person_ids:
            return []
        holding = sa.select(requests.c.person_id).where(requests.c.person_id.in_(person_ids),
                                                        requests.c.pseudonymised_at.is_(None))
        return list(self.session.scalars(sa.select(Person).where(people.c.id.in_(person_ids),
                                                                 people.c.id.not_in(holding))))

    def like(self, community: str, phone: str | None, name: str) -> list[Person]:
        """The community's records (not merged away) with this phone number or this name (any case)."""
        either = [people.c.name_key == name_key(name)]
        if phone:
            either.append(people.c.phone == phone)
        return list(self.session.scalars(sa.select(Person).where(
            people.c.community == community, people.c.merged_into.is_(None), sa.or_(*either))))

    def requests_of(self, person_id: uuid.UUID) -> list[SupportRequest]:
        """The person's requests, newest first (the caller has the record in reach)."""
        return list(self.session.scalars(sa.select(SupportRequest).where(requests.c.person_id == person_id)
                                         .order_by(requests.c.created_at.desc())))

    def others(self, person: Person, limit: int = 50) -> list[Person]:
        """Other records of the person's community (not merged away) that may be theirs, by name: the same phone
        number, date of birth, name or surname. What a coordinator may merge into theirs."""
        surname = person.name_key.rsplit(" ", 1)[-1]
        escaped = surname.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        either = [people.c.name_key == surname, people.c.name_key.like(f"% {escaped}", escape="\\")]
        if person.phone:
            either.append(people.c.phone == person.phone)
        if person.date_of_birth:
            either.append(people.c.date_of_birth == person.date_of_birth)
        return list(self.session.scalars(sa.select(Person).where(
            people.c.community == person.community, people.c.merged_into.is_(None), people.c.id != person.id,
            sa.or_(*either)).order_by(people.c.name_key, people.c.created_at).limit(limit)))

    def named(self, community: str, text: str, limit: int = 20) -> list[Person]:
        """The community's records (not merged away) whose name contains the text (any case), by name."""
        escaped = name_key(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        if not escaped:
            return []
        return list(self.session.scalars(sa.select(Person).where(
            people.c.community == community, people.c.merged_into.is_(None),
            people.c.name_key.like(f"%{escaped}%", escape="\\")).order_by(people.c.name_key).limit(limit)))

    def carers_of(self, person_id: uuid.UUID) -> list[Person]:
        """The records of the person's carers, by name."""
        return list(self.session.scalars(sa.select(Person).join(carers, carers.c.carer_id == people.c.id)
                                         .where(carers.c.person_id == person_id).order_by(people.c.name_key)))

    def cared_for_by(self, carer_id: uuid.UUID) -> list[Person]:
        """The records of the people this carer cares for, by name."""
        return list(self.session.scalars(sa.select(Person).join(carers, carers.c.person_id == people.c.id)
                                         .where(carers.c.carer_id == carer_id).order_by(people.c.name_key)))

    def link(self, link: CarerLink) -> bool:
        """Keep a carer link (written with the unit of work's other new rows, after any new record it names),
        unless the two are linked so already; True if it is new."""
        if self.session.scalar(sa.select(sa.func.count()).select_from(carers).where(
                carers.c.person_id == link.person_id, carers.c.carer_id == link.carer_id)):
            return False
        self.new_rows.append(carers, link)
        return True

    def unlink(self, person_id: uuid.UUID, carer_id: uuid.UUID) -> bool:
        """Forget that `carer_id` cares for `person_id`; True if they were linked."""
        return self.session.execute(sa.delete(carers).where(carers.c.person_id == person_id,
                                                             carers.c.carer_id == carer_id)).rowcount > 0

    def move_links(self, merged: Person, into: Person) -> None:
        """The merged record's carer links, as the survivor's (none twice, and nobody their own carer)."""
        involved = sa.or_(carers.c.person_id == merged.id, carers.c.carer_id == merged.id)
        links = self.session.execute(sa.select(carers).where(involved)).all()
        self.session.execute(sa.delete(carers).where(involved))
        for row in links:
            pair = tuple(into.id if id_ == merged.id else id_ for id_ in (row.person_id, row.carer_id))
            if pair[0] != pair[1]:
                self.link(CarerLink(community=into.community, person_id=pair[0], carer_id=pair[1],
                                    created_by=row.created_by, created_at=row.created_at))

    def caring_for(self, person_id: uuid.UUID) -> list[SupportRequest]:
        """Carers' requests that name this record as the person they care for."""
        return list(self.session.scalars(sa.select(SupportRequest).where(requests.c.cares_for_id == person_id)))

    def offering(self, person_id: uuid.UUID) -> list[SupportRequest]:
        """Requests whose coordinator is asked whether they are for this record."""
        return list(self.session.scalars(sa.select(SupportRequest).where(requests.c.maybe_person_id == person_id)))


def closing_action():
    """Whether a concern has an action that closed it (SQL)."""
    return sa.exists().where(concern_actions.c.concern_id == concerns.c.id, concern_actions.c.closes.is_(True))


class SqlConcerns:
    """The safeguarding log. Only ever added to: a concern once, then its actions. Every read takes the actor it
    is for (their communities; `SYSTEM`: any)."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, concern: Concern) -> None:
        """Open a concern in the log."""
        self.session.add(concern)

    def get(self, concern_id: uuid.UUID, actor: Actor) -> Concern | None:
        """A concern in the actor's communities, or None."""
        return self.session.scalar(sa.select(Concern).where(concerns.c.id == concern_id,
                                                            in_scope(concerns.c.community, actor)))

    def list(self, actor: Actor, request_id: uuid.UUID | None = None, page=None, limit: int = 500) -> list[Concern]:
        """The concerns in the actor's communities (about one request, if given): open ones first, newest first;
        one page of them when `page` (flask-smorest's pagination parameters) is given, else the first `limit`."""
        query = sa.select(Concern).where(in_scope(concerns.c.community, actor))
        if request_id is not None:
            query = query.where(concerns.c.request_id == request_id)
        query = query.order_by(sa.case((closing_action(), 1), else_=0), concerns.c.opened_at.desc(), concerns.c.id)
        if page is not None:
            return page_of(self.session, query, page)
        return self.session.scalars(query.limit(limit)).all()


class SqlApplicantsWaiting:
    """How many applicants wait too long in each community, as matching last said."""

    def __init__(self, session: Session):
        self.session = session

    def record(self, community: str, waiting: int, wait_days: int, as_of: datetime) -> None:
        """Keep a community's count, unless a later one is kept already (the counts can arrive out of order)."""
        t = applicants_waiting.c
        values = {"waiting_too_long": waiting, "wait_days": wait_days, "as_of": as_of}
        updated = self.session.execute(sa.update(applicants_waiting)
                                       .where(t.community == community, t.as_of <= as_of).values(**values))
        if updated.rowcount == 0 and self.session.scalar(sa.select(t.as_of).where(t.community == community)) is None:
            self.session.execute(sa.insert(applicants_waiting).values(community=community, **values))

    def of(self, actor: Actor) -> list[tuple[str, int, int]]:
        """(community, how many wait too long, the days allowed) for the actor's communities where any do."""
        t = applicants_waiting.c
        return [tuple(row) for row in self.session.execute(
            sa.select(t.community, t.waiting_too_long, t.wait_days)
            .where(in_scope(t.community, actor), t.waiting_too_long > 0).order_by(t.community)).all()]


class SqlOrganisations:
    """A community's register of organisations. Every read takes the actor it is for."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, organisation: Organisation) -> None:
        """Keep a new organisation; OrganisationExists if the community has one of that name."""
        self.session.add(organisation)
        self.saved(organisation)

    def saved(self, organisation: Organisation) -> None:
        """Write a new or changed organisation now; OrganisationExists if another in the community has its name
        (the transaction is then rolled back)."""
        try:
            self.session.flush()
        except IntegrityError:
            self.session.rollback()
            raise OrganisationExists(f"{organisation.name} is already in the register") from None

    def list(self, actor: Actor) -> list[Organisation]:
        """The organisations of the actor's communities, by name."""
        return list(self.session.scalars(sa.select(Organisation).where(in_scope(organisations.c.community, actor))
                                         .order_by(organisations.c.community, sa.func.lower(organisations.c.name))))

    def get(self, organisation_id: uuid.UUID, actor: Actor) -> Organisation | None:
        """One organisation of the actor's communities, or None."""
        found = self.session.get(Organisation, organisation_id)
        return found if found is not None and actor.may_see(found.community) else None

    def named(self, community: str, name: str) -> Organisation | None:
        """The community's organisation of that name (any case), or None."""
        return self.session.scalars(sa.select(Organisation).where(
            organisations.c.community == community,
            sa.func.lower(organisations.c.name) == name.strip().lower())).first()

    def merge(self, duplicate: Organisation, into: Organisation) -> None:
        """The duplicate's referrals, accounts and webhook deliveries become `into`'s, and it leaves the register."""
        community = duplicate.community
        self.session.execute(sa.update(requests).where(
            requests.c.community == community, requests.c.referrer_organisation == duplicate.name)
            .values(referrer_organisation=into.name))
        for user_id, communities in self.session.execute(sa.select(users.c.id, users.c.communities).where(
                users.c.organisation == duplicate.name)):
            if community in communities:  # a name is one organisation's within a community only
                self.session.execute(sa.update(users).where(users.c.id == user_id).values(organisation=into.name))
        self.session.execute(sa.update(webhook_deliveries).where(webhook_deliveries.c.organisation_id == duplicate.id)
                             .values(organisation_id=into.id))
        self.session.delete(duplicate)
        self.session.flush()

    def listening(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], Organisation]:
        """Of these (community, name) pairs, the organisations with a webhook, by pair."""
        if not wanted:
            return {}
        found = self.session.scalars(sa.select(Organisation).where(
            organisations.c.webhook_url.is_not(None), organisations.c.community.in_({c for c, _ in wanted}),
            sa.func.lower(organisations.c.name).in_({name.lower() for _, name in wanted})))
        by_pair = {(o.community, o.name.lower()): o for o in found}
        return {(c, name): by_pair[c, name.lower()] for c, name in wanted if (c, name.lower()) in by_pair}


class SqlDirectory:
    """A community's directory of services and groups. Every read takes the actor it is for."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, entry: DirectoryEntry) -> None:
        """Keep a new entry."""
        self.session.add(entry)

    def get(self, entry_id: uuid.UUID, actor: Actor) -> DirectoryEntry | None:
        """One entry of the actor's communities, or None."""
        found = self.session.get(DirectoryEntry, entry_id)
        return found if found is not None and (actor == SYSTEM or actor.may_see(found.community)) else None

    def of(self, actor: Actor, community: str | None = None, retired: bool = False) -> list[DirectoryEntry]:
        """The entries of the actor's communities (or of one of them), by name; retired ones too if asked."""
        query = sa.select(DirectoryEntry).where(in_scope(directory_entries.c.community, actor))
        if community is not None:
            query = query.where(directory_entries.c.community == community)
        if not retired:
            query = query.where(directory_entries.c.retired.is_(False))
        return list(self.session.scalars(query.order_by(sa.func.lower(directory_entries.c.name))))

    def by_external_id(self, community: str, external_ids: list[str]) -> dict[str, DirectoryEntry]:
        """The community's entries imported before with these ids, by id."""
        if not external_ids:
            return {}
        return {e.external_id: e for e in self.session.scalars(sa.select(DirectoryEntry).where(
            directory_entries.c.community == community, directory_entries.c.external_id.in_(external_ids)))}

    def names(self, entry_ids: set[uuid.UUID]) -> dict[uuid.UUID, DirectoryEntry]:
        """Entries by id (for the requests signposted to them)."""
        if not entry_ids:
            return {}
        return {e.id: e for e in self.session.scalars(sa.select(DirectoryEntry).where(
            directory_entries.c.id.in_(entry_ids)))}


class SqlWebhookDeliveries:
    """What organisations' webhooks are sent, and how each went."""

    def __init__(self, session: Session, new_rows: NewRows):
        self.session, self.new_rows = session, new_rows

    def add(self, organisation: Organisation, request_id: uuid.UUID, body: dict[str, Any]) -> None:
        """A delivery due now (written with the unit of work's other new rows)."""
        self.new_rows.rows.setdefault(webhook_deliveries, []).append(
            {"organisation_id": organisation.id, "request_id": request_id, "body": body, "created_at": utcnow(),
             "due_at": utcnow(), "attempts": 0, "delivered_at": None, "last_answer": None})

    def due(self, now: datetime, limit: int) -> list[Any]:
        """Deliveries due by `now`, oldest first, each only once the earlier ones about its referral are delivered
        or given up, with their organisation's address and secret; on PostgreSQL locked for this transaction,
        skipping those another sender holds."""
        earlier = webhook_deliveries.alias("earlier")
        waiting_behind = sa.exists().where(earlier.c.request_id == webhook_deliveries.c.request_id,
                                           earlier.c.id < webhook_deliveries.c.id, earlier.c.due_at.is_not(None))
        query = (sa.select(webhook_deliveries, organisations.c.webhook_url, organisations.c.webhook_secret)
                 .join(organisations, organisations.c.id == webhook_deliveries.c.organisation_id)
                 .where(webhook_deliveries.c.due_at <= now, ~waiting_behind)  # one referral's go in order
                 .order_by(webhook_deliveries.c.due_at).limit(limit))
        if is_postgres(self.session):
            query = query.with_for_update(of=webhook_deliveries, skip_locked=True)
        return list(self.session.execute(query))

    def record(self, delivery_id: int, **changes: Any) -> None:
        """How an attempt went: its answer, and when to try again (None: delivered, or given up)."""
        self.session.execute(sa.update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
                             .values(**changes))

    def recent(self, organisation_id: uuid.UUID, limit: int = 20) -> list[Any]:
        """The organisation's latest deliveries, newest first."""
        return list(self.session.execute(sa.select(webhook_deliveries).where(
            webhook_deliveries.c.organisation_id == organisation_id)
            .order_by(webhook_deliveries.c.id.desc()).limit(limit)))


class SqlAuditLog:
    """The append-only audit log."""

    def __init__(self, new_rows: NewRows):
        self.new_rows = new_rows

    def add(self, entry: AuditEntry) -> None:
        """Append an entry (written at the unit of work's flush)."""
        self.new_rows.append(audit_log, entry)


class SqlRetention:
    """What the retention job and erasures read and change besides the requests themselves: the copies of a
    person's details in the idempotency answers, the outbox and the webhook deliveries; old audit entries; and the
    record of each run."""

    # Intake's events that can carry what a person or a coordinator wrote about the person.
    PERSONAL_EVENTS = ("task.details_shared", "request.cancelled", "survey.question")

    def __init__(self, session: Session):
        self.session = session

    def closed_and_quiet(self, community: str, before: datetime, limit: int) -> list[SupportRequest]:
        """Closed requests of the community, nothing changed since `before`, whose person's details are still
        there, oldest first; on PostgreSQL locked for this transaction, skipping those another run holds."""
        c = requests.c
        query = (sa.select(SupportRequest).where(c.community == community, c.status.in_(FINAL_STATUSES),
                                                 c.updated_at < before, c.pseudonymised_at.is_(None))
                 .order_by(c.updated_at).limit(limit))
        return list(self.session.scalars(lock_skipping(self.session, query)))

    def closed_with_documents(self, limit: int) -> list[SupportRequest]:
        """Closed requests still holding the document they came in (closed before documents were dropped at
        closing), locked as `closed_and_quiet` locks them."""
        c = requests.c
        query = (sa.select(SupportRequest).where(c.status.in_(FINAL_STATUSES), c.source_document.is_not(None))
                 .order_by(c.updated_at).limit(limit))
        return list(self.session.scalars(lock_skipping(self.session, query)))

    def of(self, request_ids: list[uuid.UUID], lock: bool = False) -> list[SupportRequest]:
        """These requests; with `lock`, locked for this transaction (an erasure waits for whatever else holds
        them)."""
        query = sa.select(SupportRequest).where(requests.c.id.in_(request_ids)).order_by(requests.c.id)
        if lock and is_postgres(self.session):
            query = query.with_for_update()
        return list(self.session.scalars(query))

    def scrub_copies(self, request_id: uuid.UUID, values: list[str]) -> int:
        """Remove `values` from every copy of the request's details intake keeps elsewhere: the answers kept for
        Idempotency-Keys (a create's answer is the request), its events in the outbox (published or not), and what
        its referrer's webhook was sent. How many rows changed."""
        changed = 0
        key = str(request_id)
        answers = self.session.execute(sa.select(idempotency_keys).where(
            sa.cast(idempotency_keys.c.response, sa.Text).like(f"%{key}%"))).all()
        for answer in answers:
            self.session.execute(sa.update(idempotency_keys).where(
                idempotency_keys.c.subject == answer.subject, idempotency_keys.c.key == answer.key).values(
                response=scrubbed(answer.response, values)))
            changed += 1
        events = self.session.scalars(sa.select(outbox.table).where(
            outbox.table.event_type.in_(self.PERSONAL_EVENTS),
            outbox.table.body["payload"]["request_id"].as_string() == key)).all()
        for event in events:
            event.body = scrubbed(event.body, values)
            changed += 1
        deliveries = self.session.execute(sa.select(webhook_deliveries.c.id, webhook_deliveries.c.body).where(
            webhook_deliveries.c.request_id == request_id)).all()
        for delivery in deliveries:
            self.session.execute(sa.update(webhook_deliveries).where(webhook_deliveries.c.id == delivery.id).values(
                body=scrubbed(delivery.body, values)))
            changed += 1
        # its survey: the phone goes, and the answers (metrics keeps its counts, which name no one); not sent again
        survey = sa.select(surveys.c.id).where(surveys.c.request_id == request_id).scalar_subquery()
        changed += self.session.execute(sa.delete(survey_answers).where(survey_answers.c.survey_id == survey)).rowcount
        changed += self.session.execute(sa.update(surveys).where(surveys.c.request_id == request_id).values(
            phone=None, status=sa.case((surveys.c.status.in_(("due", "asking")), "stopped"), else_=surveys.c.status),
            ended_reason=sa.case((surveys.c.status.in_(("due", "asking")), "their details were removed"),
                                 else_=surveys.c.ended_reason))).rowcount
        return changed

    def drop_audit_before(self, community: str, before: datetime) -> int:
        """Remove the audit entries about the community's requests made before `before`; how many."""
        about = sa.select(requests.c.id).where(requests.c.community == community)
        return self.session.execute(sa.delete(audit_log).where(
            audit_log.c.at < before, audit_log.c.request_id.in_(about))).rowcount or 0

    def drop_concerns_closed_before(self, community: str, before: datetime) -> int:
        """Remove the community's concerns closed before `before`, with their actions (the safeguarding log's only
        removal: an open concern is never removed); how many."""
        closed_early = sa.select(concern_actions.c.concern_id).where(concern_actions.c.closes.is_(True),
                                                                     concern_actions.c.at < before)
        gone = sa.select(concerns.c.id).where(concerns.c.community == community, concerns.c.id.in_(closed_early))
        ids = list(self.session.scalars(gone))
        if not ids:
            return 0
        self.session.execute(sa.delete(concern_actions).where(concern_actions.c.concern_id.in_(ids)))
        return self.session.execute(sa.delete(concerns).where(concerns.c.id.in_(ids))).rowcount or 0

    def ran_on(self, kind: str, day: date) -> bool:
        """Whether a run of this kind was recorded for this day."""
        return self.session.scalar(sa.select(sa.func.count()).select_from(retention_runs).where(
            retention_runs.c.kind == kind, retention_runs.c.day == day)) > 0

    def record(self, kind: str, day: date, at: datetime, counts: dict[str, Any], actor: str = "",
               request_ids: list[uuid.UUID] = ()) -> None:
        """Record a run: what it did, and for an erasure who asked and which requests."""
        self.session.execute(sa.insert(retention_runs).values(kind=kind, day=day, at=at, actor=actor, counts=counts,
                                                              request_ids=[str(i) for i in request_ids]))

    def runs(self, limit: int = 50) -> list[Any]:
        """The latest runs, newest first."""
        return list(self.session.execute(sa.select(retention_runs).order_by(retention_runs.c.id.desc())
                                         .limit(limit)))

    def audit_about(self, request_ids: list[uuid.UUID]) -> list[AuditEntry]:
        """The audit entries about these requests, oldest first."""
        return list(self.session.scalars(sa.select(AuditEntry).where(audit_log.c.request_id.in_(request_ids))
                                         .order_by(audit_log.c.at, audit_log.c.id)))


def lock_skipping(session: Session, query):
    """On PostgreSQL, the rows `query` selects locked for this transaction, skipping those another one holds."""
    return query.with_for_update(skip_locked=True) if is_postgres(session) else query


class SqlUsers:
    """People who sign in."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, user: User) -> None:
        """Keep a new user."""
        self.session.add(user)

    def by_email(self, email: str) -> User | None:
        """The user with this email address, active or not."""
        return self.session.scalar(sa.select(User).where(users.c.email == email))

    def active(self, email: str) -> User | None:
        """The active user with this email address, or None."""
        return self.session.scalar(sa.select(User).where(users.c.email == email, users.c.active.is_(True)))


class SqlSignIns:
    """Failed sign-ins, for the lock-out."""

    def __init__(self, session: Session):
        self.session = session

    def failures(self, account: str, address: str, since: datetime) -> tuple[list[datetime], list[datetime]]:
        """When sign-in failed since `since`: for this account, and from this address."""
        t = sign_in_attempts.c
        rows = self.session.execute(sa.select(t.account, t.address, t.at).where(
            t.at > since, sa.or_(t.account == account, t.address == address))).all()
        return [r.at for r in rows if r.account == account], [r.at for r in rows if r.address == address]

    def add(self, failure: FailedSignIn) -> None:
        """Keep a failure (and drop those too old to count)."""
        self.session.execute(sa.delete(sign_in_attempts).where(sign_in_attempts.c.at <= failure.at - SIGN_IN_WINDOW))
        self.session.add(failure)

    def forget(self, account: str) -> None:
        """Drop an account's failures (it signed in)."""
        self.session.execute(sa.delete(sign_in_attempts).where(sign_in_attempts.c.account == account))


class WerkzeugPasswords:
    """Password hashes as werkzeug makes and checks them (the format the users table holds): scrypt, salted; and
    Django's list of 20,000 common passwords (services/intake/data/, BSD licence: see its NOTICE)."""

    METHOD = "scrypt:32768:8:1"  # werkzeug's default; older hashes (pbkdf2) are made again at the next sign-in

    def hash(self, password: str) -> str:
        """A salted hash of the password, to store."""
        return generate_password_hash(password, method=self.METHOD)

    def matches(self, password_hash: str, password: str) -> bool:
        """True when the password is the one the hash was made from."""
        return check_password_hash(password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made some other way than new ones are."""
        return not password_hash.startswith(self.METHOD + "$")

    @functools.cached_property
    def common(self) -> frozenset[str]:
        """The common passwords, lower case."""
        with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as lines:
            return frozenset(line.strip() for line in lines if line.strip())

    def is_common(self, password: str) -> bool:
        """True when the password, in any case, is on the list."""
        return password.strip().lower() in self.common


class SqlSurveys:
    """Surveys by SMS: the communities' own questions, each request's survey and its answers. Reads of questions
    take the actor they are for; the rest are the system's (bus handlers and the timer)."""

    def __init__(self, session: Session):
        self.session = session

    def questions(self, actor: Actor, community: str | None = None) -> list[CommunityQuestion]:
        """The questions of the actor's communities (of one, if given) still asked, oldest first."""
        query = sa.select(CommunityQuestion).where(in_scope(survey_questions.c.community, actor),
                                                   survey_questions.c.retired_at.is_(None))
        if community is not None:
            query = query.where(survey_questions.c.community == community)
        return list(self.session.scalars(query.order_by(survey_questions.c.created_at)))

    def question(self, question_id: uuid.UUID, actor: Actor) -> CommunityQuestion | None:
        """One of the actor's communities' questions, or None."""
        return self.session.scalar(sa.select(CommunityQuestion).where(
            survey_questions.c.id == question_id, in_scope(survey_questions.c.community, actor)))

    def add_question(self, question: CommunityQuestion) -> None:
        self.session.add(question)

    def of_request(self, request_id: uuid.UUID) -> Survey | None:
        return self.session.scalar(sa.select(Survey).where(surveys.c.request_id == request_id))

    def get(self, survey_id: uuid.UUID, lock: bool = False) -> Survey | None:
        query = sa.select(Survey).where(surveys.c.id == survey_id)
        return self.session.scalar(query.with_for_update() if lock else query)

    def add(self, survey: Survey) -> None:
        self.session.add(survey)
        self.session.flush()

    def due(self, now: datetime, limit: int = 100) -> list[Survey]:
        """Surveys whose time has come and that have not begun (locked, skipping any another worker holds)."""
        return list(self.session.scalars(lock_skipping(self.session, sa.select(Survey).where(
            surveys.c.status == "due", surveys.c.due_at <= now).order_by(surveys.c.due_at).limit(limit))))

    def going_to(self, phone: str) -> list[Survey]:
        """Surveys not ended that ask, or will ask, this phone."""
        return list(self.session.scalars(sa.select(Survey).where(surveys.c.phone == phone,
                                                                 surveys.c.status.in_(("due", "asking")))))

    def record_answer(self, survey_id: uuid.UUID, question_id: str, answer: int, at: datetime) -> bool:
        """Keep an answer; False if that question had an answer already."""
        if self.session.scalar(sa.select(survey_answers.c.answer).where(
                survey_answers.c.survey_id == survey_id, survey_answers.c.question_id == question_id)) is not None:
            return False
        self.session.execute(sa.insert(survey_answers).values(survey_id=survey_id, question_id=question_id,
                                                              answer=answer, answered_at=at))
        return True

    def answers(self, survey_id: uuid.UUID) -> dict[str, int]:
        return dict(self.session.execute(sa.select(survey_answers.c.question_id, survey_answers.c.answer)
                                         .where(survey_answers.c.survey_id == survey_id)).all())


passwords = WerkzeugPasswords()


class IntakeUnitOfWork(SqlUnitOfWork):
    """One transaction on intake's database: requests, audit log, idempotency answers, users, outbox."""

    requests: SqlRequests
    audit: SqlAuditLog
    answers: SqlAnswers
    users: SqlUsers
    sign_ins: SqlSignIns

    def open(self, session: Session) -> None:
        """Attach intake's repositories to this transaction's session."""
        self.new_rows = NewRows()
        self.requests = SqlRequests(session, self.new_rows)
        self.people = SqlPeople(session, self.new_rows)
        self.concerns = SqlConcerns(session)
        self.applicants_waiting = SqlApplicantsWaiting(session)
        self.organisations = SqlOrganisations(session)
        self.directory = SqlDirectory(session)
        self.webhook_deliveries = SqlWebhookDeliveries(session, self.new_rows)
        self.audit = SqlAuditLog(self.new_rows)
        self.answers = SqlAnswers(session, self.new_rows)
        self.users = SqlUsers(session)
        self.sign_ins = SqlSignIns(session)
        self.revoked_tokens = revocations.repository(session)
        self.retention = SqlRetention(session)
        self.surveys = SqlSurveys(session)

    def publish(self, event: EventPayload, *, correlation_id: str | None = None) -> dict[str, Any]:
        """Stage an event in the outbox (checked against its contract, its relay woken at commit, as any service's),
        to be written with the unit of work's other new rows rather than by the ORM."""
        envelope = super().publish(event, correlation_id=correlation_id)
        for event_row in [o for o in self.session.new if isinstance(o, outbox.table)]:
            self.session.expunge(event_row)
            self.new_rows.append(outbox.table.__table__, event_row)
        return envelope

    def flush(self) -> None:
        """Send what is pending to the database: the new rows, then what the ORM holds."""
        self.new_rows.write(self.session)
        super().flush()

    def commit(self) -> None:
        """Tell the organisations listening of their referrals' changes, write the new rows, and make everything
        permanent. Every change to a referral goes through here, so none is missed (and a rollback tells no one)."""
        self.tell_referrers()
        self.new_rows.write(self.session)
        super().commit()

    def tell_referrers(self) -> None:
        """A webhook delivery for each referral made or moved on whose organisation has a webhook."""
        changed = self.requests.changed_referrals()
        if not changed:
            return
        listening = self.organisations.listening({(r.community, r.referrer_organisation) for r in changed})
        for request in changed:
            organisation = listening.get((request.community, request.referrer_organisation))
            if organisation is not None:
                self.webhook_deliveries.add(organisation, request.id, request.referral_notice())
                webhooks_due.ring_after_commit(self.session)
