"""Matching's storage: its tables (the domain's classes mapped onto them), the repositories the service layer
reads and changes them through, and its unit of work.

Finding the volunteers near a place without looking at every volunteer: each volunteer is stored with the grid
cell they live in (`grid_cell`, a row-by-row integer), indexed with their community and status. A search asks
only for the cells a circle of the radius can touch: in each grid row one range of cell numbers, so the index
answers it as a few short range scans on SQLite and PostgreSQL alike. The exact great-circle distance then
decides. Places are not wrapped round the antimeridian (no community straddles it).
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Session, relationship

from services.matching.domain import (EARTH_RADIUS_KM, HOLDING, CancelledEarly, HeldTask, MatchRequest, Offer,
                                      TimeAway, Volunteer, VolunteerCheck, distance_km)
from shared import idempotency
from shared.auth import Actor
from shared.clock import utcnow
from shared.db import UtcDateTime
from shared.outbox import Outbox
from shared.revocation import Revocations
from shared.scoping import in_scope
from shared.taxonomy import KINDS
from shared.unit_of_work import SqlUnitOfWork
from shared.web import page_of


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
    sa.Column("cell", sa.Integer, nullable=False),  # grid_cell(latitude, longitude), kept by _place_in_grid
    sa.Column("max_distance_km", sa.Float, nullable=False),
    sa.Column("skills", sa.JSON, nullable=False, default=list),
    sa.Column("languages", sa.JSON, nullable=False, default=lambda: ["en"]),
    sa.Column("gender", sa.String(16)),
    sa.Column("availability", sa.JSON, nullable=False, default=list),  # "mon:morning" etc.; empty: any time
    sa.Column("weekly_cap", sa.Integer, nullable=False, default=3),
    sa.Column("status", sa.String(8), nullable=False, default="active"),  # VOLUNTEER_STATUSES
    sa.Column("sms_opted_out_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utcnow),
    sa.Index("ix_volunteers_cell", "community", "status", "cell"),
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
)

mapper = Base.registry.map_imperatively
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


# --- the grid the candidate search uses ---------------------------------------------------------------------------

# Cells CELL_DEGREES of latitude by CELL_DEGREES of longitude (about 4.4 km north to south; 2.7 km east to west in
# Lancashire, 3.2 km in Ontario), numbered row by row in one integer.
CELL_DEGREES = 0.04
CELL_COLUMNS = 10_000  # more than the 9,000 columns round the world, so a row's cells are one range of keys
LAST_COLUMN = round(360 / CELL_DEGREES) - 1
MARGIN_DEGREES = 1e-9  # rounding in the bounds must never cost a volunteer on the edge of the circle


def grid_row(latitude: float) -> int:
    """The grid row a latitude falls in."""
    return math.floor(latitude / CELL_DEGREES)


def grid_column(longitude: float) -> int:
    """The grid column a longitude falls in (0 to 8,999, from 180° west)."""
    return min(math.floor((longitude + 180.0) / CELL_DEGREES), LAST_COLUMN)


def grid_cell(latitude: float, longitude: float) -> int:
    """The one integer naming the grid cell of a place: row by row, so a run of cells in a row is a key range."""
    return grid_row(latitude) * CELL_COLUMNS + grid_column(longitude)


@sa.event.listens_for(Volunteer, "before_insert")
@sa.event.listens_for(Volunteer, "before_update")
def _place_in_grid(_mapper, _connection, volunteer: Volunteer) -> None:
    """Keep a volunteer's grid cell with their place, however the place was set."""
    volunteer.cell = grid_cell(volunteer.latitude, volunteer.longitude)


def _hav(angle: float) -> float:
    """The haversine of an angle."""
    return math.sin(angle / 2) ** 2


def cell_ranges(latitude: float, longitude: float, radius_km: float) -> list[tuple[int, int]]:
    """The (first, last) cell numbers, one range per grid row, of every cell a circle of `radius_km` touches.

    Per row the longitude span comes from the haversine formula at the row's nearest latitude to the centre,
    so it hugs the circle rather than its bounding box, and is never too narrow."""
    reach = radius_km / EARTH_RADIUS_KM  # the radius as an angle
    dlat = math.degrees(reach) + MARGIN_DEGREES
    south, north = max(latitude - dlat, -90.0), min(latitude + dlat, 90.0)
    ranges = []
    for row in range(grid_row(south), grid_row(north) + 1):
        low, high = max(row * CELL_DEGREES, south), min((row + 1) * CELL_DEGREES, north)
        nearest = 0.0 if low <= latitude <= high else min(abs(low - latitude), abs(high - latitude))
        across = math.cos(math.radians(latitude)) * min(math.cos(math.radians(low)), math.cos(math.radians(high)))
        spare = _hav(reach) - _hav(math.radians(nearest))
        if across <= 1e-12 or spare >= across:
            first, last = 0, LAST_COLUMN  # near a pole the circle can reach any longitude
        else:
            dlon = math.degrees(2 * math.asin(math.sqrt(max(spare, 0.0) / across))) + MARGIN_DEGREES
            first, last = max(grid_column(longitude - dlon), 0), grid_column(longitude + dlon)
        ranges.append((row * CELL_COLUMNS + first, row * CELL_COLUMNS + last))
    return ranges


@lru_cache(maxsize=128)
def _in_cells(rows: int) -> sa.Select:
    """The search's statement for a circle touching `rows` grid rows, built once (building it costs more than
    the index takes to answer it)."""
    community = sa.bindparam("community")
    return sa.select(Volunteer).where(sa.or_(*(
        sa.and_(Volunteer.community == community, Volunteer.status == "active",
                Volunteer.cell.between(sa.bindparam(f"first{n}"), sa.bindparam(f"last{n}"))) for n in range(rows))))


def near_query(community: str, latitude: float, longitude: float, radius_km: float) -> tuple[sa.Select, dict]:
    """The query, and its parameters, for a community's active volunteers in the cells a circle touches."""
    ranges = cell_ranges(latitude, longitude, radius_km)
    parameters = {"community": community}
    for n, (first, last) in enumerate(ranges):
        parameters[f"first{n}"], parameters[f"last{n}"] = first, last
    return _in_cells(len(ranges)), parameters


def prefilter(request: Any, days: list[date]) -> list[sa.ColumnElement[bool]]:
    """Conditions the database can judge for a request, so volunteers who cannot be asked are never loaded.

    Each is looser than or equal to its rule in domain.exclusion, which still decides: reachable by SMS, has the
    skill, holds each check at some time between the first and last day the task could happen, and the
    language and gender asked for. JSON lists are matched as text, the same on SQLite and PostgreSQL."""
    kind = KINDS[request.support_type]
    where = [Volunteer.sms_opted_out_at.is_(None), _lists(Volunteer.skills, kind.skill)]
    if days:
        first, last = min(days), max(days)
        where += [sa.exists().where(VolunteerCheck.volunteer_id == Volunteer.id, VolunteerCheck.check == check,
                                    VolunteerCheck.done_on <= last,
                                    sa.or_(VolunteerCheck.expires_on.is_(None), VolunteerCheck.expires_on >= first))
                  for check in kind.checks]
    if request.volunteer_language:
        where.append(_lists(Volunteer.languages, request.volunteer_language))
    if request.volunteer_gender:
        where.append(Volunteer.gender == request.volunteer_gender)
    return where


def _lists(column, value: str) -> sa.ColumnElement[bool]:
    """A JSON list of short codes holds `value` (stored as json.dumps writes it)."""
    return sa.cast(column, sa.Text).like(f'%{json.dumps(value)}%')


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

    def nearby(self, community: str, latitude: float, longitude: float, radius_km: float, *,
               suited_to: Any = None, days: Iterable[date] = ()) -> list[tuple[Volunteer, float]]:
        """A community's active volunteers within `radius_km`, nearest first, with their distance.

        The (community, status, cell) index finds those in the cells the circle touches; the exact great-circle
        distance then decides. With `suited_to` (a request, and the `days` its task could happen), the database
        first leaves out those the rules would surely refuse (see `prefilter`)."""
        query, parameters = near_query(community, latitude, longitude, radius_km)
        where = prefilter(suited_to, list(days)) if suited_to is not None else []
        rows = self.session.scalars(query.where(*where), parameters).all()
        found = [(v, distance_km(latitude, longitude, v.latitude, v.longitude)) for v in rows]
        return sorted([(v, d) for v, d in found if d <= radius_km], key=lambda item: (item[1], item[0].name))

    def in_community(self, community: str) -> list[Volunteer]:
        """Every volunteer of a community, whatever their status."""
        return self.session.scalars(sa.select(Volunteer).where(Volunteer.community == community)).all()

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


class OfferRepository:
    """The offers made (they are stored with their request)."""

    def __init__(self, session: Session):
        self.session = session

    def get(self, offer_id: uuid.UUID, fresh: bool = False) -> Offer | None:
        """An offer by id; `fresh` reads it again (after its request was locked)."""
        return self.session.get(Offer, offer_id, populate_existing=fresh)

    def codes_in_use(self) -> set[str]:
        """The codes of offers open or accepted: a new offer's code must not be one of them."""
        return set(self.session.scalars(sa.select(Offer.code).where(Offer.status.in_(("open", "accepted")))))

    def reserve_code(self, code: str) -> bool:
        """Take a code for an offer this transaction makes; False if it cannot have it. On PostgreSQL two
        transactions making offers for different requests must not pick the same code: the second would wait on
        the first's row in the unique index (and, holding its own request's lock, could deadlock with it). So the
        code is held with a transaction-level advisory lock, tried without waiting, and then looked up again
        (a statement after the lock sees every offer committed before it). SQLite has one writer at a time."""
        if self.session.get_bind().dialect.name != "postgresql":
            return True
        if not self.session.scalar(sa.text("SELECT pg_try_advisory_xact_lock(:space, :code)"),
                                   {"space": OFFER_CODES, "code": int(code)}):
            return False
        return self.session.scalar(sa.select(Offer.id).where(Offer.code == code, Offer.status.in_(("open", "accepted")))
                                   .limit(1)) is None

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

    def tasks_of(self, volunteer_id: uuid.UUID) -> list[tuple[Offer, MatchRequest]]:
        """A volunteer's tasks with their requests, latest accepted first."""
        return [tuple(row) for row in self.session.execute(
            sa.select(Offer, MatchRequest).join(MatchRequest, Offer.request_id == MatchRequest.request_id)
            .where(Offer.volunteer_id == volunteer_id, Offer.status.in_(HOLDING))
            .order_by(Offer.answered_at.desc()))]


class MatchingUnitOfWork(SqlUnitOfWork):
    """One transaction over matching's database: `uow.volunteers`, `uow.requests`, `uow.offers`, the answers kept
    for Idempotency-Keys (`uow.answers`), and its outbox."""

    def open(self, session: Session) -> None:
        """Attach matching's repositories to this transaction's session."""
        self.answers = idempotency.Answers(session, idempotency_keys)
        self.volunteers = VolunteerRepository(session)
        self.requests = RequestRepository(session)
        self.offers = OfferRepository(session)

