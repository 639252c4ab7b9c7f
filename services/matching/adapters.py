"""Matching's storage: its tables (the domain's classes mapped onto them), the repositories the service layer
reads and changes them through, and its unit of work.

Candidates are found in the process's candidate index (services/matching/candidates.py), which this module keeps
current: every write to a volunteer, their checks or time away sets the volunteer's `changed`
(`_note_volunteer_changes`), and `VolunteerRepository.suited` reads the volunteers changed since the index last
looked before each search.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, lazyload, relationship

from services.matching.candidates import Away, CandidateIndex, Check, Profile, index_of
from services.matching.domain import (HOLDING, NEXT_STAGE, RESERVING, SHORTEST_OVERDUE_DAYS, Applicant,
                                      BefriendingMatch, BefriendingVisit, CancelledEarly, Candidate, CheckIn,
                                      CheckRuleChange, CheckRules, CheckType, Contribution, HeldTask, Invitation,
                                      KindRequirement, MatchRequest, Offer, Policy, StageChange, Suited, TimeAway,
                                      TrainingSession, Volunteer, VolunteerCheck)
from shared import idempotency
from shared.auth import Actor
from shared.clock import utcnow
from shared.communities import all_communities
from shared.db import UtcDateTime
from shared.outbox import Outbox
from shared.revocation import Revocations
from shared.scoping import in_scope
from shared.unit_of_work import SqlUnitOfWork
from shared.web import page_of


log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    """Matching's tables."""


outbox = Outbox.for_base(Base)
revocations = Revocations.for_base(Base)
metadata = Base.metadata
idempotency_keys = idempotency.table(metadata)

# --- the tables ---------------------------------------------------------------------------------------------------

volunteers = sa.Table(
    "volunteers", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("phone", sa.String(20), nullable=False, unique=True),
    sa.Column("postcode", sa.String(10)),
    sa.Column("area", sa.String(8), nullable=False, default=""),
    sa.Column("latitude", sa.Float, nullable=False),
    sa.Column("longitude", sa.Float, nullable=False),
    sa.Column("max_distance_km", sa.Float, nullable=False),
    sa.Column("skills", sa.JSON, nullable=False, default=list),
    sa.Column("languages", sa.JSON, nullable=False, default=lambda: ["en"]),
    sa.Column("gender", sa.String(16)),
    sa.Column("availability", sa.JSON, nullable=False, default=list),  # "mon:morning" etc.; empty: any time
    sa.Column("weekly_cap", sa.Integer, nullable=False, default=3),
    sa.Column("status", sa.String(8), nullable=False, default="active"),  # VOLUNTEER_STATUSES
    sa.Column("sms_opted_out_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utcnow),
    # when it last changed, as the candidate index reads it: on PostgreSQL the writing transaction's id, on SQLite
    # one more than the largest (see candidates.py); set by _note_volunteer_changes
    sa.Column("changed", sa.BigInteger, nullable=False, server_default="0", index=True),
)

volunteer_checks = sa.Table(
    "volunteer_checks", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("volunteer_id", sa.Uuid, sa.ForeignKey("volunteers.id"), nullable=False, index=True),
    sa.Column("check", sa.String(32), nullable=False),
    sa.Column("done_on", sa.Date, nullable=False),
    sa.Column("expires_on", sa.Date, index=True),
    sa.Column("reminded_for", sa.Date),  # the expiry date a reminder went out for
    sa.UniqueConstraint("volunteer_id", "check"),
)

time_away = sa.Table(
    "time_away", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("volunteer_id", sa.Uuid, sa.ForeignKey("volunteers.id"), nullable=False, index=True),
    sa.Column("starts_on", sa.Date, nullable=False),
    sa.Column("ends_on", sa.Date, nullable=False),
)

match_requests = sa.Table(
    "match_requests", metadata,
    sa.Column("request_id", sa.Uuid, primary_key=True),
    sa.Column("community", sa.String(64), nullable=False),
    sa.Column("support_type", sa.String(40), nullable=False),
    sa.Column("latitude", sa.Float, nullable=False),
    sa.Column("longitude", sa.Float, nullable=False),
    sa.Column("area", sa.String(8), nullable=False),
    sa.Column("urgency", sa.String(8), nullable=False, default="routine"),
    sa.Column("window_start", UtcDateTime),
    sa.Column("window_end", UtcDateTime),
    sa.Column("window_days", sa.JSON),
    sa.Column("window_part", sa.String(10)),
    sa.Column("volunteer_language", sa.String(8)),
    sa.Column("volunteer_gender", sa.String(16)),
    sa.Column("person_ref", sa.String(64), nullable=False, default="", index=True),
    sa.Column("status", sa.String(16), nullable=False, default="open"),
    sa.Column("repeat_every_weeks", sa.Integer),
    sa.Column("repeat_occurrences", sa.Integer, nullable=False, default=1),
    sa.Column("occurrence", sa.Integer, nullable=False, default=1),
    sa.Column("round", sa.Integer, nullable=False, default=0),
    sa.Column("given_back", sa.Boolean, nullable=False, default=False),
    sa.Column("unmatched_reason", sa.String(500)),
    sa.Column("correlation_id", sa.String(64), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False, default=0),  # of the last event published about it
    sa.Column("befriending_rhythm", sa.String(12)),  # RHYTHMS: a befriending request
    sa.Column("review_on", sa.Date),
)

cancelled_early = sa.Table(
    "cancelled_early", metadata,
    sa.Column("request_id", sa.Uuid, primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False, default=utcnow),
)

offers = sa.Table(
    "offers", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("request_id", sa.Uuid, sa.ForeignKey("match_requests.request_id"), nullable=False, index=True),
    sa.Column("volunteer_id", sa.Uuid, sa.ForeignKey("volunteers.id"), nullable=False, index=True),
    sa.Column("code", sa.String(4), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="open"),  # OFFER_STATUSES
    sa.Column("round", sa.Integer, nullable=False, default=1),
    sa.Column("occurrence", sa.Integer, nullable=False, default=1),
    sa.Column("distance_km", sa.Float, nullable=False, default=0.0),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utcnow),
    sa.Column("sent_at", UtcDateTime),  # when notify says the SMS went
    sa.Column("expires_at", UtcDateTime, index=True),  # set once it is sent
    sa.Column("answered_at", UtcDateTime),
    sa.Column("completed_at", UtcDateTime),
    sa.Column("hours", sa.Float),
    # A code names one open offer at a time; a request has at most one accepted offer.
    sa.Index("uq_offers_open_code", "code", unique=True,
             sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'")),
    sa.Index("uq_offers_one_accepted", "request_id", unique=True,
             sqlite_where=sa.text("status = 'accepted'"), postgresql_where=sa.text("status = 'accepted'")),
    # the codes in use (`_codes_in_use`), looked up without reading every offer ever made
    sa.Index("ix_offers_code_in_use", "code", sqlite_where=sa.text("status IN ('open', 'accepted')"),
             postgresql_where=sa.text("status IN ('open', 'accepted')")),
)

befriending_matches = sa.Table(
    "befriending_matches", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("request_id", sa.Uuid, sa.ForeignKey("match_requests.request_id"), nullable=False, index=True),
    sa.Column("offer_id", sa.Uuid, sa.ForeignKey("offers.id"), nullable=False, unique=True),
    sa.Column("volunteer_id", sa.Uuid, sa.ForeignKey("volunteers.id"), nullable=False, index=True),
    sa.Column("community", sa.String(64), nullable=False, index=True),
    sa.Column("support_type", sa.String(40), nullable=False),
    sa.Column("rhythm", sa.String(12), nullable=False),
    sa.Column("started_on", sa.Date, nullable=False),
    sa.Column("review_on", sa.Date, nullable=False),
    sa.Column("last_visit_on", sa.Date),
    sa.Column("visits", sa.Integer, nullable=False, default=0),
    sa.Column("reminded_for", sa.Date),  # the `since` of the overdue spell a reminder went for
    sa.Column("ended_on", sa.Date, index=True),
    sa.Column("end_reason", sa.String(24)),
)

befriending_visits = sa.Table(
    "befriending_visits", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("match_id", sa.Uuid, sa.ForeignKey("befriending_matches.id"), nullable=False, index=True),
    sa.Column("visited_on", sa.Date, nullable=False),
    sa.Column("hours", sa.Float),
    sa.Column("message_sid", sa.String(64), unique=True),  # the volunteer's DONE; none when a coordinator logged it
)

applicants = sa.Table(
    "applicants", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("phone", sa.String(20), nullable=False),
    sa.Column("postcode", sa.String(10), nullable=False),
    sa.Column("kinds", sa.JSON, nullable=False, default=list),
    sa.Column("language", sa.String(8), nullable=False, default="en"),
    sa.Column("stage", sa.String(16), nullable=False, default="applied"),  # domain.APPLICANT_STAGES
    sa.Column("applied_at", UtcDateTime, nullable=False),
    sa.Column("stage_since", UtcDateTime, nullable=False),
    sa.Column("reason", sa.String(500)),  # why they were withdrawn or declined
    sa.Column("volunteer_id", sa.Uuid, sa.ForeignKey("volunteers.id")),  # once approved
    sa.Column("kept_checks", sa.JSON, nullable=False, default=list),  # granted by training, given when approved
)

training_sessions = sa.Table(
    "training_sessions", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), nullable=False, index=True),
    sa.Column("topic", sa.String(200), nullable=False),
    sa.Column("starts_at", UtcDateTime, nullable=False, index=True),
    sa.Column("place", sa.String(200)),
    sa.Column("online", sa.Boolean, nullable=False, default=False),
    sa.Column("trainer", sa.String(200), nullable=False),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("grants", sa.String(32)),  # a check key, or none
    sa.Column("public", sa.String(32)),  # domain.PUBLIC_TOPICS, or none
    sa.Column("code", sa.String(4)),  # a public session's code for signing up by SMS
    sa.Column("created_at", UtcDateTime, nullable=False),
)

training_invitations = sa.Table(
    "training_invitations", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("session_id", sa.Uuid, sa.ForeignKey("training_sessions.id"), nullable=False, index=True),
    sa.Column("community", sa.String(64), nullable=False, index=True),
    sa.Column("phone", sa.String(20), nullable=False, index=True),
    sa.Column("name", sa.String(200)),  # for the coordinator's page (a member of the public's: if given)
    sa.Column("language", sa.String(8), nullable=False, default="en"),
    sa.Column("volunteer_id", sa.Uuid, sa.ForeignKey("volunteers.id")),
    sa.Column("applicant_id", sa.Uuid, sa.ForeignKey("applicants.id")),
    sa.Column("code", sa.String(4), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="invited"),  # domain.INVITATION_STATUSES
    sa.Column("invited_at", UtcDateTime, nullable=False),
    sa.Column("answered_at", UtcDateTime),
    sa.Column("attended_on", sa.Date),
    sa.UniqueConstraint("session_id", "phone"),
)

applicant_stages = sa.Table(  # every move of an applicant, by whom and why: the pipeline's audit trail
    "applicant_stages", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("applicant_id", sa.Uuid, sa.ForeignKey("applicants.id"), nullable=False, index=True),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("previous", sa.String(16)),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(500)),
)

application_attempts = sa.Table(  # applications taken, by a keyed hash of the address they came from (never the
    "application_attempts", metadata,  # address itself), for the hourly limit; older ones are deleted
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Index("ix_application_attempts_address_at", "address", "at"),
)

applicants_told = sa.Table(  # how many of a community's applicants waiting too long its coordinators were last told
    "applicants_told", metadata,
    sa.Column("community", sa.String(64), primary_key=True),
    sa.Column("waiting_too_long", sa.Integer, nullable=False),
    sa.Column("told_at", UtcDateTime, nullable=False),
)

# Each community's own check types and requirements: its changes over the defaults (the taxonomy's, then its block
# in communities.json), which domain.CheckRules lays over them; `check_rule_versions` counts each community's
# changes, so that a process reads its rules again only when they changed; `check_rule_changes` is the audit trail.
check_types = sa.Table(
    "check_types", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), nullable=False),
    sa.Column("key", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("evidence", sa.String(500), nullable=False, default=""),
    sa.Column("lasts_months", sa.Integer),  # none: it does not expire
    sa.Column("retired", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("community", "key"),
)

kind_requirements = sa.Table(
    "kind_requirements", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("checks", sa.JSON, nullable=False, default=list),  # check keys
    sa.UniqueConstraint("community", "kind"),
)

check_rule_versions = sa.Table(
    "check_rule_versions", metadata,
    sa.Column("community", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

check_rule_changes = sa.Table(
    "check_rule_changes", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(80), nullable=False),  # "check_type:<key>" or "requirement:<kind>"
    sa.Column("before", sa.JSON),
    sa.Column("after", sa.JSON, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Index("ix_check_rule_changes_community_at", "community", "at"),
)

# Hours volunteers gave beyond tasks and visits (group activities they ran, training they delivered), as metrics'
# activity.logged says: one row per volunteer per activity.
contributions = sa.Table(
    "contributions", metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("volunteer_id", sa.Uuid, sa.ForeignKey("volunteers.id"), nullable=False, index=True),
    sa.Column("community", sa.String(64), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # taxonomy.CONTRIBUTION_SOURCES
    sa.Column("source_id", sa.Uuid, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("held_on", sa.Date, nullable=False),
    sa.Column("hours", sa.Float, nullable=False),
    sa.UniqueConstraint("source_id", "volunteer_id", name="uq_contributions_source_volunteer"),
)

# Wellbeing check-ins: one per volunteer per due date (the unique key is what makes two timers ask once).
wellbeing_checkins = sa.Table(
    "wellbeing_checkins", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("volunteer_id", sa.Uuid, sa.ForeignKey("volunteers.id"), nullable=False),
    sa.Column("community", sa.String(64), nullable=False),
    sa.Column("due_on", sa.Date, nullable=False),
    sa.Column("prompted_at", UtcDateTime, nullable=False),
    sa.Column("answered_at", UtcDateTime),
    sa.Column("score", sa.Integer),
    sa.Column("talk", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("volunteer_id", "due_on", name="uq_wellbeing_checkins_volunteer_due"),
)

mapper = Base.registry.map_imperatively
mapper(Invitation, training_invitations)
mapper(TrainingSession, training_sessions, properties={
    "invitations": relationship(Invitation, lazy="selectin", cascade="all, delete-orphan",
                                order_by=training_invitations.c.invited_at),
})
mapper(CheckType, check_types)
mapper(KindRequirement, kind_requirements)
mapper(CheckRuleChange, check_rule_changes)
mapper(StageChange, applicant_stages)
mapper(Applicant, applicants, properties={
    "history": relationship(StageChange, lazy="selectin", cascade="all, delete-orphan",
                            order_by=applicant_stages.c.at),
})
mapper(VolunteerCheck, volunteer_checks)
mapper(TimeAway, time_away)
mapper(Volunteer, volunteers, properties={
    "checks": relationship(VolunteerCheck, lazy="selectin", cascade="all, delete-orphan"),
    "time_away": relationship(TimeAway, lazy="selectin", cascade="all, delete-orphan",
                              order_by=time_away.c.starts_on),
})
mapper(Offer, offers, properties={"volunteer": relationship(Volunteer)})
mapper(MatchRequest, match_requests, properties={
    "offers": relationship(Offer, order_by=offers.c.created_at, lazy="selectin"),
})
mapper(CancelledEarly, cancelled_early)
mapper(Contribution, contributions)
mapper(CheckIn, wellbeing_checkins)
mapper(BefriendingVisit, befriending_visits)
mapper(BefriendingMatch, befriending_matches, properties={
    "logged": relationship(BefriendingVisit, lazy="selectin", order_by=befriending_visits.c.visited_on,
                           cascade="all, delete-orphan"),
})


# --- keeping the candidate index current ----------------------------------------------------------------------

CHANGED = "matching.volunteers_changed"  # session.info: the ids of the volunteers this transaction has changed


def _change_mark(dialect: str) -> sa.ColumnElement:
    """What a write sets a volunteer's `changed` to: the transaction's id on PostgreSQL, on SQLite (one writer at a
    time) one more than the largest stored."""
    if dialect == "postgresql":
        return sa.cast(sa.cast(sa.func.pg_current_xact_id(), sa.Text), sa.BigInteger)
    return sa.select(sa.func.coalesce(sa.func.max(volunteers.c.changed), 0) + 1).scalar_subquery()


@sa.event.listens_for(Session, "before_flush")
def _note_volunteer_changes(session: Session, _context, _instances) -> None:
    """Mark every volunteer written in this flush, or whose checks or time away are, as changed (for the other
    processes' candidate indexes) and as this transaction's own (for this one's)."""
    changed: dict[uuid.UUID, Volunteer | None] = {}
    for thing in (*session.new, *session.dirty, *session.deleted):
        if isinstance(thing, Volunteer) and (thing in session.new or session.is_modified(thing)):
            changed[thing.id] = thing
        elif isinstance(thing, (VolunteerCheck, TimeAway)) and thing.volunteer_id is not None:
            changed.setdefault(thing.volunteer_id, None)
    if not changed:
        return
    mark = _change_mark(session.get_bind().dialect.name)
    for volunteer_id, volunteer in changed.items():
        volunteer = volunteer or session.get(Volunteer, volunteer_id)
        if volunteer is not None and volunteer not in session.deleted:
            volunteer.changed = mark
    session.info.setdefault(CHANGED, set()).update(changed)


@sa.event.listens_for(Session, "after_commit")
@sa.event.listens_for(Session, "after_rollback")
def _forget_own_changes(session: Session) -> None:
    """Once committed (or undone), the transaction's changes are nobody's own: the index reads them like others'."""
    session.info.pop(CHANGED, None)


PROFILE_FIELDS = [name for name in Profile.__dataclass_fields__ if name not in ("checks", "time_away")]


def _profiles(session: Session, since: int | None) -> tuple[list[Profile], list[int]]:
    """The volunteers changed since a mark (None: every one), with their checks and time away, as the candidate
    index keeps them; and the `changed` of each."""
    chosen = [] if since is None else [volunteers.c.changed >= since]
    rows = session.execute(sa.select(*(volunteers.c[name] for name in PROFILE_FIELDS), volunteers.c.changed)
                           .where(*chosen)).all()
    ids = [row.id for row in rows]
    checks, away = {}, {}
    if ids:
        of_ids = [] if since is None else [volunteer_checks.c.volunteer_id.in_(ids)]
        for id_, *check in session.execute(sa.select(volunteer_checks.c.volunteer_id, volunteer_checks.c.check,
                                                     volunteer_checks.c.done_on, volunteer_checks.c.expires_on)
                                           .where(*of_ids)):
            checks.setdefault(id_, []).append(Check(*check))
        of_ids = [] if since is None else [time_away.c.volunteer_id.in_(ids)]
        for id_, *days in session.execute(sa.select(time_away.c.volunteer_id, time_away.c.starts_on,
                                                    time_away.c.ends_on).where(*of_ids)):
            away.setdefault(id_, []).append(Away(*days))
    return ([Profile(**{name: getattr(row, name) for name in PROFILE_FIELDS}, checks=checks.get(row.id, []),
                     time_away=away.get(row.id, [])) for row in rows], [row.changed for row in rows])


def catch_up(session: Session, index: CandidateIndex) -> None:
    """Bring the index up to date with what is committed (the caller holds its lock): everything, the first time;
    then only the volunteers changed since its mark (see candidates.py for why the marks are sound). This
    transaction's own changes are left out (it may yet roll back), and a read that left any out does not move the
    mark, so their committed state is read again next time."""
    postgres = session.get_bind().dialect.name == "postgresql"
    oldest_running = session.scalar(sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")) \
        if postgres else None
    profiles, marks = _profiles(session, index.mark)
    own = session.info.get(CHANGED, set())
    theirs = [p for p in profiles if p.id not in own]
    if len(theirs) < len(profiles):
        mark = index.mark
    elif postgres:
        mark = oldest_running
    else:
        mark = max(marks, default=(index.mark or 1) - 1) + 1
    if index.mark is None:
        index.load(theirs, mark)  # with own changes left out, still None: the next search reads everyone again
    else:
        index.take(theirs, mark)


def warm_index(sessions) -> Callable[[threading.Event], None]:
    """A worker's loop that reads every volunteer into its candidate index as the worker starts, so the first
    request it decides does not wait for that read (it waits for the loop, if it comes first); then it ends, and
    each search catches up from there. A database that does not answer yet leaves it to the first search."""

    def warm(stop: threading.Event) -> None:
        try:
            with sessions() as session, session.begin():
                index = index_of(session.get_bind())
                with index.lock:
                    if index.mark is None:
                        catch_up(session, index)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("the candidate index was not read at start (the first search reads it): %s",
                        type(exc).__name__)

    return warm


# --- repositories -------------------------------------------------------------------------------------------------

class VolunteerRepository:
    """Volunteers, their checks and time away."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, volunteer: Volunteer) -> None:
        """Store a new volunteer."""
        self.session.add(volunteer)

    def get(self, volunteer_id: uuid.UUID, scope: Actor) -> Volunteer | None:
        """A volunteer by id, if they are in the scope's communities (`SYSTEM`: any)."""
        return self.session.scalar(sa.select(Volunteer).where(Volunteer.id == volunteer_id,
                                                              in_scope(Volunteer.community, scope)))

    def by_phone(self, phone: str) -> Volunteer | None:
        """The volunteer with this phone number."""
        return self.session.scalar(sa.select(Volunteer).where(Volunteer.phone == phone))

    def phones_taken(self, phones: Iterable[str], other_than: uuid.UUID | None = None) -> set[str]:
        """Which of these phone numbers a volunteer (other than `other_than`) has."""
        query = sa.select(Volunteer.phone).where(Volunteer.phone.in_(set(phones)))
        if other_than is not None:
            query = query.where(Volunteer.id != other_than)
        return set(self.session.scalars(query))

    def suited(self, request: MatchRequest, slots: list[tuple[date, str]], policy: Policy,
               everyone: bool = False) -> tuple[list[Suited], Counter]:
        """The volunteers within the request's radius (`everyone`: in its community) whose profile lets them be
        asked, nearest first, and how many of the others each profile rule ruled out: from the process's candidate
        index, brought up to date first, and for the volunteers this transaction has changed, from the session."""
        self.session.flush()
        rules = CheckRuleRepository(self.session).rules(request.community)
        index = index_of(self.session.get_bind())
        with index.lock:
            catch_up(self.session, index)
            own = [self.session.get(Volunteer, id_) for id_ in self.session.info.get(CHANGED, ())]
            return index.search(request, slots, policy, everyone, own=[v for v in own if v is not None], rules=rules)

    def loaded(self, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates with their volunteers loaded (to be asked: their checks and time away only if read), in
        the same order."""
        found = {v.id: v for v in self.session.scalars(
            sa.select(Volunteer).where(Volunteer.id.in_([c.volunteer.id for c in candidates]))
            .options(lazyload(Volunteer.checks), lazyload(Volunteer.time_away)))} if candidates else {}
        return [replace(c, volunteer=found[c.volunteer.id]) for c in candidates]

    def listing(self, scope: Actor, page, status: str | None = None,
                expiring_by: date | None = None) -> list[Volunteer]:
        """One page of the scope's volunteers by name (with a status; with a check expiring by a date)."""
        query = sa.select(Volunteer).where(in_scope(Volunteer.community, scope)).order_by(Volunteer.name)
        if status is not None:
            query = query.where(Volunteer.status == status)
        if expiring_by is not None:
            query = query.where(Volunteer.id.in_(sa.select(VolunteerCheck.volunteer_id)
                                                 .where(VolunteerCheck.expires_on <= expiring_by)))
        return page_of(self.session, query, page)

    def roster(self, scope: Actor, status: str | None = None) -> list[Volunteer]:
        """The scope's volunteers by name (with a status)."""
        query = sa.select(Volunteer).where(in_scope(Volunteer.community, scope)).order_by(Volunteer.name)
        if status is not None:
            query = query.where(Volunteer.status == status)
        return self.session.scalars(query).all()

    def claim_checks_to_remind(self, first: date, last: date) -> list[tuple[VolunteerCheck, Volunteer]]:
        """The checks expiring between two dates with no reminder yet for that date, of volunteers who have not
        left, each with its volunteer: the check rows locked until the transaction ends, skipping those another
        transaction has locked (on PostgreSQL, `FOR UPDATE OF volunteer_checks SKIP LOCKED`: two timer runs at once
        never remind of the same check; the volunteers are read, not locked)."""
        return [tuple(row) for row in self.session.execute(
            sa.select(VolunteerCheck, Volunteer).join(Volunteer, VolunteerCheck.volunteer_id == Volunteer.id)
            .where(VolunteerCheck.expires_on.between(first, last), Volunteer.status != "left",
                   sa.or_(VolunteerCheck.reminded_for.is_(None),
                          VolunteerCheck.reminded_for != VolunteerCheck.expires_on))
            .order_by(VolunteerCheck.id)
            .with_for_update(of=VolunteerCheck, skip_locked=True).execution_options(populate_existing=True))]


RULES_CHANGED = "matching.check_rules_changed"  # session.info: this transaction changed a community's rules


class CheckRuleRepository:
    """A community's check types, the checks each kind of help needs, and the changes made to them."""

    def __init__(self, session: Session):
        self.session = session

    def rules(self, community: str) -> CheckRules:
        """The community's rules as matching applies them: made once per version of them and kept in the process
        (beside its candidate index), so a decision reads one row (the version) and the rules again only after an
        administrator changed them. The version is read first: rules read after it are at least that new."""
        version = self.session.scalar(sa.select(check_rule_versions.c.version)
                                      .where(check_rule_versions.c.community == community)) or 0
        index = index_of(self.session.get_bind())
        with index.lock:
            kept = index.check_rules.get(community)
        if kept is not None and kept[0] == version and not self.session.info.get(RULES_CHANGED):
            return kept[1]
        configured = all_communities().get(community)
        rules = CheckRules.of(community, configured.checks if configured else {},
                              configured.requirements if configured else {}, self.types(community),
                              self.session.scalars(sa.select(KindRequirement)
                                                   .where(KindRequirement.community == community)
                                                   .order_by(KindRequirement.kind)).all())
        if not self.session.info.get(RULES_CHANGED):  # never keep what this transaction may yet roll back
            with index.lock:
                index.check_rules[community] = (version, rules)
        return rules

    def types(self, community: str) -> list[CheckType]:
        """The community's own check types (its changes over the defaults), by key."""
        return self.session.scalars(sa.select(CheckType).where(CheckType.community == community)
                                    .order_by(CheckType.key)).all()

    def own_type(self, community: str, key: str) -> CheckType | None:
        """The community's own row for a check type, if it has one."""
        return self.session.scalar(sa.select(CheckType).where(CheckType.community == community,
                                                              CheckType.key == key))

    def own_requirement(self, community: str, kind: str) -> KindRequirement | None:
        """The community's own row for a kind's requirement, if it has one."""
        return self.session.scalar(sa.select(KindRequirement).where(KindRequirement.community == community,
                                                                    KindRequirement.kind == kind))

    def changing(self, community: str) -> None:
        """Take the community's rules to change them: its version moves on (and its row stays locked until the
        transaction ends, so two administrators' changes are made one after the other)."""
        dialect = self.session.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(check_rule_versions)
        self.session.execute(insert.values(community=community, version=1).on_conflict_do_update(
            index_elements=["community"], set_={"version": check_rule_versions.c.version + 1}))
        self.session.info[RULES_CHANGED] = True

    def add(self, thing: CheckType | KindRequirement | CheckRuleChange) -> None:
        """Store a new check type, requirement or change."""
        self.session.add(thing)

    def changes(self, community: str, limit: int = 200) -> list[CheckRuleChange]:
        """The community's latest changes to its rules, latest first."""
        return self.session.scalars(sa.select(CheckRuleChange).where(CheckRuleChange.community == community)
                                    .order_by(CheckRuleChange.at.desc()).limit(limit)).all()


@sa.event.listens_for(Session, "after_commit")
@sa.event.listens_for(Session, "after_rollback")
def _forget_rules_changed(session: Session) -> None:
    """Once the transaction ends, its rules are everyone's (or gone): they may be kept again."""
    session.info.pop(RULES_CHANGED, None)


# Keys of matching's transaction-level advisory locks (two-number keys, apart from the timers' one-number key).
REQUEST_IDS = 0x6D726571  # "mreq", with a request id's first four bytes: taking a request in
OFFER_CODES = 0x6D636F64  # "mcod", with an offer code: making an offer with that code


class RequestRepository:
    """The requests matching has taken in, and cancellations that came before their request."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, request: MatchRequest) -> None:
        """Take in a new request."""
        self.session.add(request)

    def get(self, request_id: uuid.UUID, scope: Actor) -> MatchRequest | None:
        """A request by id in the scope's communities (`SYSTEM`: any), not locked (to read, or to change nothing
        but its own details)."""
        return self.session.scalar(sa.select(MatchRequest).where(MatchRequest.request_id == request_id,
                                                                 in_scope(MatchRequest.community, scope)))

    def lock(self, request_id: uuid.UUID, scope: Actor) -> MatchRequest | None:
        """A request in the scope's communities (`SYSTEM`: any), freshly read and locked until the transaction
        ends (on PostgreSQL; SQLite has one writer at a time anyway), so that changes to it and its offers are
        made one at a time."""
        return self.session.scalar(sa.select(MatchRequest).where(MatchRequest.request_id == request_id,
                                                                 in_scope(MatchRequest.community, scope))
                                   .with_for_update().execution_options(populate_existing=True))

    def claim(self, request_id: uuid.UUID) -> MatchRequest | None:
        """A request locked as `lock` locks it, but without waiting: None while another transaction holds it (on
        PostgreSQL, `FOR UPDATE SKIP LOCKED`), so a timer job leaves it to whoever is changing it, or to its next
        run, and two timer runs at once never work on the same request."""
        return self.session.scalar(sa.select(MatchRequest).where(MatchRequest.request_id == request_id)
                                   .with_for_update(skip_locked=True).execution_options(populate_existing=True))

    def lock_new(self, request_id: uuid.UUID) -> None:
        """Hold a request's id until the transaction ends, whether or not the request is stored yet (on PostgreSQL,
        a transaction-level advisory lock on the id): taking a request in and a cancellation or update that
        overtook it are judged one at a time, as `lock` makes changes to a stored request. SQLite has one writer
        at a time anyway."""
        if self.session.get_bind().dialect.name == "postgresql":
            key = int.from_bytes(request_id.bytes[:4], "big", signed=True)  # ids sharing it just wait on each other
            self.session.execute(sa.text("SELECT pg_advisory_xact_lock(:space, :key)"),
                                 {"space": REQUEST_IDS, "key": key})

    def cancelled_early(self, request_id: uuid.UUID) -> bool:
        """True if its cancellation arrived before the request did."""
        return self.session.get(CancelledEarly, request_id) is not None

    def note_cancelled_early(self, request_id: uuid.UUID) -> None:
        """Keep a cancellation whose request has not arrived yet (once)."""
        if not self.cancelled_early(request_id):
            self.session.add(CancelledEarly(request_id=request_id))

    def with_offers_due(self, now: datetime) -> list[uuid.UUID]:
        """The requests with an open offer whose time to answer is up, in the order of their ids (not locked: the
        timer claims each in turn)."""
        return self.session.scalars(sa.select(Offer.request_id).distinct()
                                    .where(Offer.status == "open", Offer.expires_at <= now)
                                    .order_by(Offer.request_id)).all()


ANSWERED_WITHIN = timedelta(days=1)  # a session that began longer ago takes no YES or NO, and frees its codes


def _codes_in_use(codes: list[str] | None = None) -> sa.CompoundSelect:
    """The codes offers, invitations and public sessions hold (see `OfferRepository.codes_in_use`); or which of
    `codes` are among them."""
    since = utcnow() - ANSWERED_WITHIN
    only = (lambda column: [column.in_(codes)]) if codes is not None else (lambda column: [])
    return sa.union(
        sa.select(Offer.code).where(Offer.status.in_(("open", "accepted")), *only(Offer.code)),
        sa.select(Invitation.code).join(TrainingSession).where(
            Invitation.status.in_(RESERVING), Invitation.attended_on.is_(None), TrainingSession.starts_at >= since,
            *only(Invitation.code)),
        sa.select(TrainingSession.code).where(TrainingSession.code.is_not(None), TrainingSession.starts_at >= since,
                                              *only(TrainingSession.code)))


class OfferRepository:
    """The offers made (they are stored with their request)."""

    def __init__(self, session: Session):
        self.session = session

    def get(self, offer_id: uuid.UUID, fresh: bool = False) -> Offer | None:
        """An offer by id; `fresh` reads it again (after its request was locked)."""
        return self.session.get(Offer, offer_id, populate_existing=fresh)

    def codes_in_use(self) -> set[str]:
        """The codes of offers open or accepted, and of training invitations and public sessions still to be
        answered or attended (of sessions not over, ANSWERED_WITHIN): a new offer's or invitation's code must not be
        one of them (so YES with one never answers another). One read of all three."""
        return set(self.session.scalars(_codes_in_use()))

    def reserve_codes(self, codes: list[str]) -> list[str]:
        """Take codes for offers this transaction makes: those of `codes` it can have, in their order. On
        PostgreSQL two transactions making offers for different requests must not pick the same code: the second
        would wait on the first's row in the unique index (and, holding its own request's lock, could deadlock with
        it). So each code is held with a transaction-level advisory lock, tried without waiting (a batch's codes in
        one statement), and then they are looked up (a statement after the locks sees every offer and invitation
        committed before it, and this transaction's own as flushed). The lookup does not flush: codes this
        transaction gave and has not flushed are the caller's to leave out (`taken`). Invitations take their codes
        the same way. SQLite has one writer at a time: there the codes are only looked up."""
        if not codes:
            return []
        if self.session.get_bind().dialect.name == "postgresql":
            held = set(self.session.scalars(
                sa.text("SELECT code FROM unnest(CAST(:codes AS text[])) AS code "
                        "WHERE pg_try_advisory_xact_lock(:space, CAST(code AS integer))"),
                {"codes": list(codes), "space": OFFER_CODES}))
        else:
            held = set(codes)
        if not held:
            return []
        with self.session.no_autoflush:
            used = set(self.session.scalars(_codes_in_use(sorted(held))))
        return [code for code in codes if code in held and code not in used]

    def of_volunteer(self, volunteer_id: uuid.UUID, statuses: Iterable[str], code: str | None = None) -> list[Offer]:
        """A volunteer's offers in these statuses (with this code), oldest first."""
        query = sa.select(Offer).where(Offer.volunteer_id == volunteer_id, Offer.status.in_(list(statuses)))
        if code is not None:
            query = query.where(Offer.code == code)
        return self.session.scalars(query.order_by(Offer.created_at)).all()

    def any_to(self, volunteer_id: uuid.UUID) -> bool:
        """True if the volunteer was ever offered anything."""
        return self.session.scalar(sa.select(Offer.id).where(Offer.volunteer_id == volunteer_id).limit(1)) is not None

    def latest_to(self, volunteer_id: uuid.UUID, limit: int = 100) -> list[Offer]:
        """A volunteer's offers and tasks, newest first."""
        return self.session.scalars(sa.select(Offer).where(Offer.volunteer_id == volunteer_id)
                                    .order_by(Offer.created_at.desc()).limit(limit)).all()

    def recent_load(self, volunteer_ids: list[uuid.UUID], since: datetime) -> dict[uuid.UUID, int]:
        """How many offers each volunteer was made since a time."""
        if not volunteer_ids:
            return {}
        return dict(self.session.execute(
            sa.select(Offer.volunteer_id, sa.func.count()).where(Offer.volunteer_id.in_(volunteer_ids),
                                                                 Offer.created_at >= since)
            .group_by(Offer.volunteer_id)).all())

    def held_by(self, volunteer_ids: list[uuid.UUID]) -> list[HeldTask]:
        """The tasks (accepted or completed offers) these volunteers hold or held, with their request's window and
        occurrence, from which `HeldTask.when` finds each task's own."""
        if not volunteer_ids:
            return []
        return [HeldTask(*row) for row in self.session.execute(
            sa.select(Offer.volunteer_id, Offer.answered_at, MatchRequest.window_start, MatchRequest.person_ref,
                      Offer.occurrence, MatchRequest.occurrence, MatchRequest.repeat_every_weeks)
            .join(MatchRequest, Offer.request_id == MatchRequest.request_id)
            .where(Offer.volunteer_id.in_(volunteer_ids), Offer.status.in_(HOLDING)))]

    def tasks_since(self, volunteer_ids: list[uuid.UUID], since: datetime) -> Counter:
        """How many tasks each volunteer accepted since a time."""
        return Counter(self.session.scalars(sa.select(Offer.volunteer_id).where(
            Offer.status.in_(HOLDING), Offer.answered_at >= since, Offer.volunteer_id.in_(volunteer_ids))))

    def assigned(self, scope: Actor, limit: int) -> list[tuple[uuid.UUID, uuid.UUID, str, str]]:
        """Who holds each of the scope's requests now (an accepted offer of its current occurrence), as
        (request id, volunteer id, name, phone): the board names them, all in one read."""
        return [tuple(row) for row in self.session.execute(
            sa.select(Offer.request_id, Volunteer.id, Volunteer.name, Volunteer.phone)
            .join(MatchRequest, Offer.request_id == MatchRequest.request_id)
            .join(Volunteer, Offer.volunteer_id == Volunteer.id)
            .where(in_scope(MatchRequest.community, scope), Offer.status == "accepted",
                   Offer.occurrence == MatchRequest.occurrence)
            .order_by(Offer.answered_at.desc()).limit(limit))]

    def tasks_of(self, volunteer_id: uuid.UUID) -> list[tuple[Offer, MatchRequest]]:
        """A volunteer's tasks with their requests, latest accepted first."""
        return [tuple(row) for row in self.session.execute(
            sa.select(Offer, MatchRequest).join(MatchRequest, Offer.request_id == MatchRequest.request_id)
            .where(Offer.volunteer_id == volunteer_id, Offer.status.in_(HOLDING))
            .order_by(Offer.answered_at.desc()))]


    def hours_in(self, volunteer_id: uuid.UUID, year: int, zone: tzinfo) -> tuple[float, int]:
        """The hours a volunteer gave in a year (as its community's clocks count it) and how many tasks they did,
        befriending visits among them."""
        start, end = (datetime(y, 1, 1, tzinfo=zone).astimezone(UTC) for y in (year, year + 1))
        hours, done = self.session.execute(
            sa.select(sa.func.coalesce(sa.func.sum(Offer.hours), 0.0), sa.func.count())
            .where(Offer.volunteer_id == volunteer_id, Offer.status == "completed", Offer.completed_at >= start,
                   Offer.completed_at < end)).one()
        visit_hours, visits = self.session.execute(  # befriending visits are tasks done too
            sa.select(sa.func.coalesce(sa.func.sum(BefriendingVisit.hours), 0.0), sa.func.count())
            .join(BefriendingMatch, BefriendingVisit.match_id == BefriendingMatch.id)
            .where(BefriendingMatch.volunteer_id == volunteer_id,
                   BefriendingVisit.visited_on.between(date(year, 1, 1), date(year, 12, 31)))).one()
        given = self.session.scalar(  # group activities run, training delivered
            sa.select(sa.func.coalesce(sa.func.sum(Contribution.hours), 0.0))
            .where(Contribution.volunteer_id == volunteer_id,
                   Contribution.held_on.between(date(year, 1, 1), date(year, 12, 31))))
        return round(float(hours) + float(visit_hours) + float(given), 2), done + visits


class ContributionRepository:
    """Hours volunteers gave to group activities and training: once per volunteer per activity."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, contribution: Contribution) -> bool:
        """Keep a volunteer's hours for an activity; False (and nothing kept) when they were kept before."""
        adding = _insert_new(self.session, contributions, ("source_id", "volunteer_id"))
        done = self.session.connection().execute(adding.values(
            id=contribution.id, volunteer_id=contribution.volunteer_id, community=contribution.community,
            source=contribution.source, source_id=contribution.source_id, kind=contribution.kind,
            held_on=contribution.held_on, hours=contribution.hours).returning(sa.literal(1)))
        return done.first() is not None

    def of_volunteer(self, volunteer_id: uuid.UUID, limit: int = 50) -> list[Contribution]:
        """A volunteer's group activities and training, the latest first."""
        return list(self.session.scalars(sa.select(Contribution).where(Contribution.volunteer_id == volunteer_id)
                                         .order_by(Contribution.held_on.desc()).limit(limit)))


def _insert_new(session: Session, table: sa.Table, key: tuple[str, ...]):
    """An INSERT that does nothing when a row with the same `key` is there (or being written by another
    transaction, which it waits for): ON CONFLICT DO NOTHING, on PostgreSQL and SQLite alike. Run it on the
    session's connection (plain Core, not an ORM bulk insert) with RETURNING, which answers a row only when it
    inserted one (the driver's rowcount is not to be trusted here)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing(index_elements=list(key))


class CheckInRepository:
    """Volunteers' wellbeing check-ins."""

    def __init__(self, session: Session):
        self.session = session

    def due(self, community: str, interval_days: int, today: date) -> list[tuple[Volunteer, date | None]]:
        """The community's active volunteers who can be texted and whose last check-in (or registration) was at
        least `interval_days` before `today`, each with their last check-in's due date (None: never asked)."""
        last = (sa.select(wellbeing_checkins.c.volunteer_id, sa.func.max(wellbeing_checkins.c.due_on).label("due_on"))
                .group_by(wellbeing_checkins.c.volunteer_id).subquery())
        cutoff = today - timedelta(days=interval_days)
        registered_by = datetime.combine(cutoff + timedelta(days=2), datetime.min.time(), UTC)  # the zone's day is
        # worked out after (a volunteer registered late on the cutoff day, in UTC, may be a day later locally)
        rows = self.session.execute(
            sa.select(Volunteer, last.c.due_on).outerjoin(last, last.c.volunteer_id == Volunteer.id)
            .where(Volunteer.community == community, Volunteer.status == "active",
                   Volunteer.sms_opted_out_at.is_(None),
                   sa.or_(last.c.due_on <= cutoff, sa.and_(last.c.due_on.is_(None),
                                                           Volunteer.created_at < registered_by)))
            .order_by(Volunteer.id))
        return [(volunteer, due_on) for volunteer, due_on in rows]

    def claim(self, check_in: CheckIn) -> bool:
        """Store a check-in unless one for that volunteer and due date is there (another timer's): True when this
        call stored it, and so is the one to ask."""
        adding = _insert_new(self.session, wellbeing_checkins, ("volunteer_id", "due_on"))
        done = self.session.connection().execute(adding.values(
            id=check_in.id, volunteer_id=check_in.volunteer_id, community=check_in.community,
            due_on=check_in.due_on, prompted_at=check_in.prompted_at, talk=False).returning(sa.literal(1)))
        return done.first() is not None

    def latest_of(self, volunteer_id: uuid.UUID) -> CheckIn | None:
        """A volunteer's latest check-in, locked until the transaction ends (their answer is recorded once)."""
        return self.session.scalar(sa.select(CheckIn).where(CheckIn.volunteer_id == volunteer_id)
                                   .order_by(CheckIn.due_on.desc()).limit(1).with_for_update()
                                   .execution_options(populate_existing=True))

    def of_volunteer(self, volunteer_id: uuid.UUID, limit: int = 8) -> list[CheckIn]:
        """A volunteer's check-ins, the latest first (for their page)."""
        return list(self.session.scalars(sa.select(CheckIn).where(CheckIn.volunteer_id == volunteer_id)
                                         .order_by(CheckIn.due_on.desc()).limit(limit)))


class BefriendingRepository:
    """Befriending matches and their visits."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, match: BefriendingMatch) -> None:
        """Store a new match."""
        self.session.add(match)

    def get(self, match_id: uuid.UUID, scope: Actor, lock: bool = False) -> BefriendingMatch | None:
        """A match by id in the scope's communities (`SYSTEM`: any); `lock`: read again and locked until the
        transaction ends (its request's lock is taken first, see service_layer)."""
        query = sa.select(BefriendingMatch).where(BefriendingMatch.id == match_id,
                                                  in_scope(BefriendingMatch.community, scope))
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        return self.session.scalar(query)

    def request_of(self, match_id: uuid.UUID, scope: Actor) -> uuid.UUID | None:
        """The request a match in the scope's communities is of."""
        return self.session.scalar(sa.select(BefriendingMatch.request_id).where(
            BefriendingMatch.id == match_id, in_scope(BefriendingMatch.community, scope)))

    def of_offer(self, offer_id: uuid.UUID) -> BefriendingMatch | None:
        """The match an accepted offer made, read again and locked (its request is locked first)."""
        return self.session.scalar(sa.select(BefriendingMatch).where(BefriendingMatch.offer_id == offer_id)
                                   .with_for_update().execution_options(populate_existing=True))

    def of_request(self, request_id: uuid.UUID | None, scope: Actor, limit: int = 500) -> list[BefriendingMatch]:
        """A request's matches (None: every open match) in the scope's communities, latest first."""
        chosen = [BefriendingMatch.request_id == request_id] if request_id is not None else [
            BefriendingMatch.ended_on.is_(None)]
        return self.session.scalars(sa.select(BefriendingMatch).where(
            *chosen, in_scope(BefriendingMatch.community, scope))
            .order_by(BefriendingMatch.started_on.desc(), BefriendingMatch.id).limit(limit)).all()

    def claim_open(self, today: date) -> list[BefriendingMatch]:
        """The open matches that may be overdue by `today` and were not reminded of their last visit (or start),
        locked until the transaction ends, skipping those another transaction holds (on PostgreSQL `FOR UPDATE
        SKIP LOCKED`: two timer runs at once never remind of the same match). The domain judges each."""
        since = sa.func.coalesce(BefriendingMatch.last_visit_on, BefriendingMatch.started_on)
        return self.session.scalars(sa.select(BefriendingMatch).where(
            BefriendingMatch.ended_on.is_(None), since <= today - timedelta(days=SHORTEST_OVERDUE_DAYS),
            sa.or_(BefriendingMatch.reminded_for.is_(None), BefriendingMatch.reminded_for != since))
                                    .order_by(BefriendingMatch.id)
                                    .with_for_update(skip_locked=True)
                                    .execution_options(populate_existing=True)).all()


class ApplicantRepository:
    """People applying to volunteer, and how many applications each address sent lately."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, applicant: Applicant) -> None:
        """Store a new applicant."""
        self.session.add(applicant)

    def get(self, applicant_id: uuid.UUID, scope: Actor, lock: bool = False) -> Applicant | None:
        """An applicant by id, if they are in the scope's communities (`lock`: until the transaction ends)."""
        query = sa.select(Applicant).where(Applicant.id == applicant_id, in_scope(Applicant.community, scope))
        return self.session.scalar(query.with_for_update() if lock else query)

    def listing(self, scope: Actor, stage: str | None = None) -> list[Applicant]:
        """The scope's applicants (at a stage), longest waiting first."""
        query = sa.select(Applicant).where(in_scope(Applicant.community, scope)).order_by(Applicant.stage_since)
        if stage is not None:
            query = query.where(Applicant.stage == stage)
        return self.session.scalars(query).all()

    def waiting_since(self) -> list[tuple[str, datetime]]:
        """(community, since when) of every applicant still in the pipeline: two columns, not whole rows."""
        return self.session.execute(sa.select(applicants.c.community, applicants.c.stage_since)
                                    .where(applicants.c.stage.in_(NEXT_STAGE))).all()

    def told(self) -> dict[str, int]:
        """How many applicants waiting too long each community's coordinators were last told of, locked until the
        transaction ends (a second timer run at the same moment waits, then sees what this one told)."""
        t = applicants_told.c
        return dict(self.session.execute(sa.select(t.community, t.waiting_too_long).with_for_update()).all())

    def tell(self, community: str, waiting: int, at: datetime) -> None:
        """Remember what a community's coordinators were told."""
        t = applicants_told.c
        updated = self.session.execute(sa.update(applicants_told).where(t.community == community)
                                       .values(waiting_too_long=waiting, told_at=at))
        if updated.rowcount == 0:
            self.session.execute(sa.insert(applicants_told).values(community=community, waiting_too_long=waiting,
                                                                   told_at=at))

    def recent_from(self, address: str, since: datetime) -> int:
        """How many applications came from an address (its keyed hash) since a time."""
        t = application_attempts.c
        return self.session.scalar(sa.select(sa.func.count()).where(t.address == address, t.at > since))

    def taken_from(self, address: str, at: datetime, forget_before: datetime) -> None:
        """Count an application from an address, and forget those too old to count."""
        self.session.execute(sa.delete(application_attempts).where(application_attempts.c.at <= forget_before))
        self.session.execute(sa.insert(application_attempts).values(id=uuid.uuid4(), address=address, at=at))


class TrainingRepository:
    """Training sessions and their invitations."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, training: TrainingSession) -> None:
        """Store a new session."""
        self.session.add(training)

    def get(self, session_id: uuid.UUID, scope: Actor, lock: bool = False) -> TrainingSession | None:
        """A session in the scope's communities (`SYSTEM`: any); `lock`: read again and locked until the transaction
        ends (every change to a session's invitations holds it: capacity is judged one answer at a time)."""
        query = sa.select(TrainingSession).where(TrainingSession.id == session_id,
                                                 in_scope(TrainingSession.community, scope))
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        return self.session.scalar(query)

    def listing(self, scope: Actor, since: datetime | None = None) -> list[TrainingSession]:
        """The scope's sessions (starting after `since`), soonest first."""
        query = sa.select(TrainingSession).where(in_scope(TrainingSession.community, scope))
        if since is not None:
            query = query.where(TrainingSession.starts_at >= since)
        return self.session.scalars(query.order_by(TrainingSession.starts_at)).all()

    def answerable(self, phone: str, statuses: Iterable[str], code: str | None = None) -> list[Invitation]:
        """A phone's invitations in these statuses (with this code), not attended, to sessions not over (begun at
        most ANSWERED_WITHIN ago), oldest first."""
        query = sa.select(Invitation).join(TrainingSession).where(
            Invitation.phone == phone, Invitation.status.in_(list(statuses)), Invitation.attended_on.is_(None),
            TrainingSession.starts_at >= utcnow() - ANSWERED_WITHIN)
        if code is not None:
            query = query.where(Invitation.code == code)
        return self.session.scalars(query.order_by(Invitation.invited_at)).all()

    def public_by_code(self, code: str) -> TrainingSession | None:
        """The public session not over with this sign-up code."""
        return self.session.scalar(sa.select(TrainingSession).where(
            TrainingSession.code == code, TrainingSession.starts_at >= utcnow() - ANSWERED_WITHIN))


class MatchingUnitOfWork(SqlUnitOfWork):
    """One transaction over matching's database: `uow.volunteers`, `uow.requests`, `uow.offers`, the answers kept
    for Idempotency-Keys (`uow.answers`), and its outbox."""

    def open(self, session: Session) -> None:
        """Attach matching's repositories to this transaction's session."""
        self.answers = idempotency.Answers(session, idempotency_keys)
        self.volunteers = VolunteerRepository(session)
        self.requests = RequestRepository(session)
        self.offers = OfferRepository(session)
        self.befriending = BefriendingRepository(session)
        self.applicants = ApplicantRepository(session)
        self.training = TrainingRepository(session)
        self.checks = CheckRuleRepository(session)
        self.contributions = ContributionRepository(session)
        self.check_ins = CheckInRepository(session)

