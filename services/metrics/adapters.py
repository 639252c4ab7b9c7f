"""Metrics' tables (one fact per event it heard, the group activities coordinators log, each community's hourly
value of volunteer time), the queries over them, and its unit of work.

Metrics publishes one event, `activity.logged` (the volunteers who ran an activity and their hours, for matching),
through its `outbox`, in the transaction that logs the activity.
"""

from __future__ import annotations

import uuid
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from services.metrics.domain import REQUEST_HISTORY, Activity, Baseline, Fact, HourlyValue, Monitoring, Organisation
from shared import idempotency
from shared.auth import Actor
from shared.clock import utcnow
from shared.db import UtcDateTime
from shared.outbox import Outbox
from shared.revocation import Revocations
from shared.scoping import in_scope
from shared.unit_of_work import SqlUnitOfWork


class Base(DeclarativeBase):
    pass


outbox = Outbox.for_base(Base)
revocations = Revocations.for_base(Base)

facts = sa.Table(
    "facts", Base.metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("day", sa.Date, nullable=False),  # in the community's time zone
    sa.Column("community", sa.String(64)),
    sa.Column("request_id", sa.Uuid, index=True),
    sa.Column("source", sa.String(20)),
    sa.Column("support_type", sa.String(40)),
    sa.Column("person_ref", sa.String(64)),
    sa.Column("is_carer", sa.Boolean, nullable=False, default=False),
    sa.Column("volunteer_id", sa.Uuid),
    sa.Column("organisation", sa.String(200)),
    sa.Column("hours", sa.Float),
    sa.Column("status", sa.String(12)),  # a volunteer's, when registered or changed
    sa.Column("occurrence", sa.Integer),  # of a recurring request: a match's, an acceptance's or a task's
    sa.Column("carers_offered", sa.Integer),  # of a death: its carers offered bereavement support
    sa.Column("follows_a_death", sa.Boolean, nullable=False, default=False, server_default=sa.false()),  # taken up
    sa.Column("score", sa.Integer),  # a wellbeing check-in's answer (1 to 5)
    sa.Column("respondent", sa.String(20)),  # of a survey answer: who answered (carer, service_user, bereaved)
    sa.Column("question", sa.String(64)),  # of a survey answer: the question's id
    sa.Column("answer", sa.Integer),  # of a survey answer: 0 to 10
    sa.Index("ix_facts_type_day", "event_type", "community", "day"),
)

idempotency_keys = idempotency.table(Base.metadata)

activities = sa.Table(
    "activities", Base.metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("held_on", sa.Date, nullable=False, index=True),
    sa.Column("organisation", sa.String(200)),
    sa.Column("organisation_type", sa.String(40)),
    sa.Column("volunteer_ids", sa.JSON, nullable=False, default=list),
    sa.Column("volunteer_hours", sa.JSON, nullable=False, default=dict, server_default="{}"),  # id -> hours
    sa.Column("attendance", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utcnow),
)

baselines = sa.Table(
    "baselines", Base.metadata,
    sa.Column("community", sa.String(64), primary_key=True),
    sa.Column("starts_on", sa.Date, nullable=False),
    sa.Column("set_by", sa.String(200), nullable=False),
    sa.Column("set_at", UtcDateTime, nullable=False, default=utcnow),
)

# What an hour of volunteer time is worth in each community, every change kept (who set it, when, from which day):
# the latest change applying to a period's last day values it; without one, the community's own (communities.json).
hourly_values = sa.Table(
    "hourly_values", Base.metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("community", sa.String(64), nullable=False, index=True),
    sa.Column("amount", sa.Float, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("applies_from", sa.Date, nullable=False),
    sa.Column("set_by", sa.String(200), nullable=False),
    sa.Column("set_at", UtcDateTime, nullable=False, default=utcnow),
)

# The register of organisations, as intake publishes it (organisation.changed): partners are counted by organisation.
organisations = sa.Table(
    "organisations", Base.metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("community", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("adopted_on", sa.Date),
    sa.Column("merged_into", sa.Uuid),
)

# Each person's equity monitoring, as intake last sent it (person.monitored): by their pseudonym, no one's name.
monitoring = sa.Table(
    "monitoring", Base.metadata,
    sa.Column("person_ref", sa.String(64), primary_key=True),
    sa.Column("community", sa.String(64), nullable=False, index=True),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("consented", sa.Boolean, nullable=False, default=False),
    sa.Column("age_band", sa.String(12)),
    sa.Column("sex", sa.String(20)),
    sa.Column("ethnic_group", sa.String(40)),
    sa.Column("first_language", sa.String(20)),
    sa.Column("disability", sa.String(20)),
    sa.Column("deprivation_decile", sa.String(10)),
)

# The domain's classes are the rows (cosmicpython's imperative mapping): `Fact.community` is then also a column.
Base.registry.map_imperatively(Fact, facts)
Base.registry.map_imperatively(Activity, activities)
Base.registry.map_imperatively(Baseline, baselines)
Base.registry.map_imperatively(Organisation, organisations)
Base.registry.map_imperatively(HourlyValue, hourly_values)
Base.registry.map_imperatively(Monitoring, monitoring)

VOLUNTEER_CHANGES = ("volunteer.registered", "volunteer.status_changed")


class FactRepository:
    """The facts, and the questions counting asks of them."""

    def __init__(self, session: Session):
        self.session = session

    def get(self, event_id: uuid.UUID) -> Fact | None:
        """The fact an event made, if it was heard before."""
        return self.session.get(Fact, event_id)

    def add(self, fact: Fact) -> None:
        """Keep a new fact."""
        self.session.add(fact)

    def community_of_request(self, request_id: uuid.UUID) -> str | None:
        """The community a request's facts are placed in (None until the request's own fact arrives)."""
        return self.session.scalar(sa.select(Fact.community).where(
            Fact.request_id == request_id, Fact.community.is_not(None)).limit(1))

    def unplaced(self, request_id: uuid.UUID) -> list[Fact]:
        """A request's facts that have no community yet (outcomes that overtook their request)."""
        return list(self.session.scalars(sa.select(Fact).where(Fact.request_id == request_id,
                                                               Fact.community.is_(None))))

    def oldest_first(self) -> list[Fact]:
        """Every fact, in the order the events happened."""
        return list(self.session.scalars(sa.select(Fact).order_by(Fact.occurred_at)).all())

    # What the counts read comes as rows, not as Facts: read-only, with a Fact's attributes, and without the cost of
    # an ORM object each (tens of thousands for a year's counts, where that cost was most of the time).

    @staticmethod
    def _in_span(scope: Actor, first: date, last: date) -> sa.ColumnElement[bool]:
        ours = in_scope(facts.c.community, scope)
        theirs = sa.and_(facts.c.community.is_(None), facts.c.request_id.in_(sa.select(facts.c.request_id).where(
            ours, facts.c.event_type == "request.submitted")))
        # never NULL (a fact with no community is in or out), so that its negation is exact
        return sa.func.coalesce(sa.and_(sa.or_(ours, theirs), facts.c.day.between(first, last)), False)

    def in_span(self, scope: Actor, first: date, last: date) -> list[sa.Row]:
        """The facts of the scope's communities from `first` to `last`, with the outcomes of their requests that
        another worker recorded while the request's fact was still being written (and so have no community yet)."""
        return list(self.session.execute(sa.select(facts).where(self._in_span(scope, first, last))))

    def history_of(self, scope: Actor, first: date, last: date) -> list[sa.Row]:
        """The facts the measures look back on (domain.REQUEST_HISTORY), on any day and of any community, of the
        requests that have facts in `in_span(scope, first, last)`; but not those `in_span` gives already."""
        in_span = self._in_span(scope, first, last)
        requests = sa.select(facts.c.request_id).where(in_span, facts.c.request_id.is_not(None))
        return list(self.session.execute(sa.select(facts).where(
            facts.c.request_id.in_(requests), facts.c.event_type.in_(REQUEST_HISTORY), sa.not_(in_span))))

    def volunteer_changes(self, scope: Actor, last: date) -> list[sa.Row]:
        """Every volunteer's registration and status change in the scope's communities up to `last`, oldest
        first."""
        return list(self.session.execute(sa.select(facts).where(
            facts.c.event_type.in_(VOLUNTEER_CHANGES), in_scope(facts.c.community, scope), facts.c.day <= last)
            .order_by(facts.c.occurred_at)))


class ActivityRepository:
    """The group activities coordinators logged."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, activity: Activity) -> None:
        """Keep a newly logged activity."""
        self.session.add(activity)

    def in_span(self, scope: Actor, first: date, last: date) -> list[Activity]:
        """The activities held in the scope's communities from `first` to `last`."""
        return list(self.session.scalars(sa.select(Activity).where(in_scope(Activity.community, scope),
                                                                   Activity.held_on.between(first, last))).all())

    def latest(self, scope: Actor, limit: int) -> list[Activity]:
        """The scope's communities' activities, the most recently held first."""
        return list(self.session.scalars(sa.select(Activity).where(in_scope(Activity.community, scope)).order_by(
            Activity.held_on.desc(), Activity.created_at.desc()).limit(limit)).all())


class BaselineRepository:
    """Each community's baseline, as its manager set it."""

    def __init__(self, session: Session):
        self.session = session

    def of(self, community: str) -> Baseline | None:
        """The community's baseline, if its manager set one."""
        return self.session.get(Baseline, community)

    def add(self, baseline: Baseline) -> None:
        """Keep a community's first baseline."""
        self.session.add(baseline)

    def remove(self, community: str) -> None:
        """The community has no baseline any more (nothing happens if it had none)."""
        self.session.execute(sa.delete(baselines).where(baselines.c.community == community))


class HourlyValueRepository:
    """Each community's hourly values of volunteer time, every change kept (none is ever changed or deleted)."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, value: HourlyValue) -> None:
        """Keep a manager's change."""
        self.session.add(value)

    def of(self, communities: list[str]) -> list[HourlyValue]:
        """Every change of these communities, the latest set first."""
        return list(self.session.scalars(sa.select(HourlyValue).where(HourlyValue.community.in_(communities))
                                         .order_by(HourlyValue.set_at.desc())))


class OrganisationRepository:
    """The register of organisations, as intake last published each."""

    def __init__(self, session: Session):
        self.session = session

    def get(self, organisation_id: uuid.UUID) -> Organisation | None:
        return self.session.get(Organisation, organisation_id)

    def add(self, organisation: Organisation) -> None:
        self.session.add(organisation)

    def of(self, scope: Actor) -> list[Organisation]:
        """The organisations of the scope's communities (merged ones too: their names are aliases)."""
        return list(self.session.scalars(sa.select(Organisation).where(in_scope(organisations.c.community, scope))))


class MonitoringRepository:
    """Each person's equity monitoring, by their pseudonym."""

    def __init__(self, session: Session):
        self.session = session

    def get(self, person_ref: str) -> Monitoring | None:
        return self.session.get(Monitoring, person_ref)

    def add(self, answers: Monitoring) -> None:
        self.session.add(answers)

    def of(self, scope: Actor, person_refs: set[str]) -> dict[str, Monitoring]:
        """The monitoring of these people, in the scope's communities only."""
        if not person_refs:
            return {}
        return {m.person_ref: m for m in self.session.scalars(sa.select(Monitoring).where(
            in_scope(monitoring.c.community, scope), monitoring.c.person_ref.in_(sorted(person_refs))))}


class MetricsUnitOfWork(SqlUnitOfWork):
    """One transaction over metrics' database: `uow.facts`, `uow.activities`, `uow.baselines`,
    `uow.organisations`, `uow.hourly_values`, `uow.monitoring`, and the answers kept for Idempotency-Keys
    (`uow.answers`)."""

    facts: FactRepository
    activities: ActivityRepository
    baselines: BaselineRepository
    organisations: OrganisationRepository
    hourly_values: HourlyValueRepository
    monitoring: MonitoringRepository
    answers: idempotency.Answers

    def __init__(self, sessions: sessionmaker):
        super().__init__(sessions, outbox)

    def open(self, session: Session) -> None:
        """Attach the repositories to this transaction's session."""
        self.facts = FactRepository(session)
        self.activities = ActivityRepository(session)
        self.baselines = BaselineRepository(session)
        self.organisations = OrganisationRepository(session)
        self.hourly_values = HourlyValueRepository(session)
        self.monitoring = MonitoringRepository(session)
        self.answers = idempotency.Answers(session, idempotency_keys)
