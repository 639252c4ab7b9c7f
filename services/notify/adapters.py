"""Notify's tables (every SMS sent and received, the phones, its outbox and inbox), the repositories over them,
its unit of work, and what it talks to outside: the SMS gateways (Twilio, or the development one that records
to var/sms/sent.jsonl), Twilio's webhook signatures, and the simulator's phone."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import uuid
import xml.etree.ElementTree as ElementTree
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import phonenumbers
import requests
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Session, aliased, sessionmaker

from services.notify.domain import Contact, InboundMessage, OutgoingMessage, Scope, SendFailed, SurveyAsk
from services.notify.messages import segments
from shared import scoping
from shared.clock import utcnow
from shared.config import Settings
from shared.db import UtcDateTime, is_postgres
from shared.outbox import Doorbell, Outbox
from shared.revocation import Revocations
from shared.unit_of_work import SqlUnitOfWork
from shared.web import page_of


log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


outbox = Outbox.for_base(Base)
revocations = Revocations.for_base(Base)
# Rung when a transaction that queued an SMS commits: it wakes the sender, in the worker whose handler queued it.
queued = Doorbell()


class Holds:
    """Told what a transaction held for the quiet hours, once (and only if) it commits: the development gateway
    records it for the `make run` window (`listener`, set by the worker; None tells no one)."""

    KEY = "ccs.notify.holds"  # session.info: what the transaction holds, told if it commits

    def __init__(self):
        self.listener = None

    def tell_after_commit(self, session: Session, notice: dict[str, Any]) -> None:
        """Tell the listener of `notice` when this session's transaction commits."""
        session.info.setdefault(self.KEY, []).append(notice)


holds = Holds()


@sa.event.listens_for(Session, "after_commit")
def _tell_holds(session: Session) -> None:
    for notice in session.info.pop(Holds.KEY, ()):
        if holds.listener is not None:
            try:
                holds.listener(notice)
            except OSError as exc:  # what is committed stands: only the `make run` window misses a line
                log.warning("could not record an SMS held for the quiet hours: %s", exc)


@sa.event.listens_for(Session, "after_rollback")
def _forget_holds(session: Session) -> None:
    session.info.pop(Holds.KEY, None)

contacts = sa.Table(
    "contacts", Base.metadata,
    sa.Column("phone", sa.String(20), primary_key=True),
    sa.Column("language", sa.String(8)),
    sa.Column("opted_out_at", UtcDateTime),
    sa.Column("opted_in_at", UtcDateTime),
    sa.Column("invalid_at", UtcDateTime),
    sa.Column("invalid_reason", sa.String(200)),
)

outgoing_messages = sa.Table(
    "outgoing_messages", Base.metadata,
    sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
    sa.Column("key", sa.String(80), nullable=False, unique=True),
    sa.Column("purpose", sa.String(20), nullable=False),
    sa.Column("to_phone", sa.String(20), nullable=False, index=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(12), nullable=False, default="queued", index=True),
    sa.Column("provider_sid", sa.String(64), index=True),
    sa.Column("error", sa.Text),
    sa.Column("correlation_id", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utcnow),
    sa.Column("sent_at", UtcDateTime),
    sa.Column("next_attempt_at", UtcDateTime, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("delivered_at", UtcDateTime),
    sa.Column("from_phone", sa.String(20)),  # the community's sender number
    sa.Column("community", sa.String(64), index=True),  # whose message it is: reads are scoped by it
    sa.Column("traceparent", sa.String(55)),  # the trace it was queued in, when tracing is on (shared/tracing.py)
    sa.Column("request_id", sa.Uuid),  # the request an offer's or a task's SMS is about
    sa.Index("ix_outgoing_messages_to_phone_request", "to_phone", "request_id"),
)

inbound_messages = sa.Table(
    "inbound_messages", Base.metadata,
    sa.Column("message_sid", sa.String(64), primary_key=True),
    sa.Column("from_phone", sa.String(20), nullable=False, index=True),
    sa.Column("to_phone", sa.String(20), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("keyword", sa.String(12)),
    sa.Column("code", sa.String(4)),
    sa.Column("received_at", UtcDateTime, nullable=False, default=utcnow),
    sa.Column("attention", sa.String(16)),  # INBOX_REASONS: in the coordinators' inbox until dealt with
    sa.Column("dealt_with_at", UtcDateTime),
    sa.Column("dealt_with_by", sa.String(200)),
    sa.Column("request_id", sa.Uuid, index=True),  # in the inbox: the request of the last SMS that phone was sent
    sa.Index("ix_inbound_messages_attention", "attention", "dealt_with_at"),
)

# What each run of the nightly retention job did, and each erasure it carried out: counts and request ids only.
retention_runs = sa.Table(
    "retention_runs", Base.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(12), nullable=False),  # "nightly" or "erasure"
    sa.Column("day", sa.Date, index=True, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("counts", sa.JSON, default=dict, nullable=False),
    sa.Column("request_ids", sa.JSON, default=list, nullable=False),
)

# Survey questions asked by SMS and not yet answered or ended (domain.SurveyAsk): how a reply is known as an answer.
survey_asks = sa.Table(
    "survey_asks", Base.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("phone", sa.String(20), nullable=False, index=True),
    sa.Column("survey_id", sa.Uuid, nullable=False),
    sa.Column("question_id", sa.String(64), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("of", sa.Integer, nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("asked_at", UtcDateTime, nullable=False),
    sa.Column("answered_at", UtcDateTime),
    sa.Column("closed_at", UtcDateTime),
    sa.UniqueConstraint("survey_id", "question_id"),
)

# The domain's classes are the rows (cosmicpython's imperative mapping): `OutgoingMessage.key` is also a column.
Base.registry.map_imperatively(Contact, contacts)
Base.registry.map_imperatively(OutgoingMessage, outgoing_messages)
Base.registry.map_imperatively(InboundMessage, inbound_messages)
Base.registry.map_imperatively(SurveyAsk, survey_asks)


def _skip_locked(session: Session, query):
    """On PostgreSQL, lock the rows a query takes, skipping those another sender holds."""
    return query.with_for_update(skip_locked=True) if is_postgres(session) else query


def _detached(session: Session, rows: list) -> list:
    """Rows to read after the unit of work has ended (read-only use cases end without committing)."""
    for row in rows:
        if row in session:
            session.expunge(row)
    return rows


# --- repositories ----------------------------------------------------------------------------------------------

class ContactRepository:
    """The phones we text or hear from."""

    def __init__(self, session: Session):
        self.session = session

    def get(self, phone: str) -> Contact | None:
        """The phone's contact, if we have one."""
        return self.session.get(Contact, phone)

    def of(self, phone: str) -> Contact:
        """The phone's contact, made when we have none yet."""
        contact = self.session.get(Contact, phone)
        if contact is None:
            contact = Contact(phone)
            self.session.add(contact)
        return contact


class MessageRepository:
    """The messages we send: queued, being sent, and what became of them."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, message: OutgoingMessage) -> None:
        """Keep a new message; the sender hears of it when the transaction commits."""
        self.session.add(message)
        queued.ring_after_commit(self.session)

    def held(self, message: OutgoingMessage, until: datetime) -> None:
        """A new message waits out the quiet hours until then (in its community's time): said once it is kept."""
        holds.tell_after_commit(self.session, {"to": message.to_phone, "purpose": message.purpose,
                                               "community": message.community, "body": message.body,
                                               "until": until.isoformat(), "zone": str(until.tzinfo)})

    def get(self, message_id: uuid.UUID) -> OutgoingMessage | None:
        """One message."""
        return self.session.get(OutgoingMessage, message_id)

    def has_key(self, key: str) -> bool:
        """True when a message with this key was queued before."""
        return self.session.scalar(sa.select(OutgoingMessage.id).where(OutgoingMessage.key == key)) is not None

    def with_key(self, key: str, lock: bool = False) -> OutgoingMessage | None:
        """The message with this key, if one was queued; `lock` reads it afresh and locks it (on PostgreSQL) until
        the transaction ends, so a sender claiming it at the same moment is waited for, not overwritten."""
        query = sa.select(OutgoingMessage).where(OutgoingMessage.key == key)
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        return self.session.scalar(query)

    def by_provider_sid(self, sid: str) -> OutgoingMessage | None:
        """The message the provider knows by this SID."""
        return self.session.scalar(sa.select(OutgoingMessage).where(OutgoingMessage.provider_sid == sid))

    def waiting_about(self, request_ids: list[uuid.UUID]) -> list[OutgoingMessage]:
        """The messages about these requests still waiting to go (held for the quiet hours too), read afresh and
        locked (on PostgreSQL) so a sender claiming one at this moment is waited for."""
        if not request_ids:
            return []
        return list(self.session.scalars(sa.select(OutgoingMessage).where(
            OutgoingMessage.request_id.in_(request_ids), OutgoingMessage.status == "queued")
            .order_by(OutgoingMessage.id).with_for_update().execution_options(populate_existing=True)))

    def helpers_of(self, request_ids: list[uuid.UUID]) -> dict[str, uuid.UUID]:
        """The volunteers who had a task of these requests (they were sent its details), by phone, each with the
        first such request."""
        if not request_ids:
            return {}
        rows = self.session.execute(sa.select(OutgoingMessage.to_phone, OutgoingMessage.request_id).where(
            OutgoingMessage.request_id.in_(request_ids), OutgoingMessage.purpose == "confirmation")
            .order_by(OutgoingMessage.created_at))
        helpers: dict[str, uuid.UUID] = {}
        for phone, request_id in rows:
            helpers.setdefault(phone, request_id)
        return helpers

    def queued_with_keys(self, keys: list[str]) -> list[OutgoingMessage]:
        """The messages with these keys that are still waiting to go."""
        return list(self.session.scalars(sa.select(OutgoingMessage).where(OutgoingMessage.key.in_(keys),
                                                                          OutgoingMessage.status == "queued")))

    def next_due(self, now: datetime) -> OutgoingMessage | None:
        """The oldest queued message that is due, locked against other senders."""
        query = sa.select(OutgoingMessage).where(
            OutgoingMessage.status == "queued",
            sa.or_(OutgoingMessage.next_attempt_at.is_(None), OutgoingMessage.next_attempt_at <= now),
        ).order_by(OutgoingMessage.created_at).limit(1)
        return self.session.scalars(_skip_locked(self.session, query)).first()

    def next_due_at(self) -> datetime | None:
        """When the sender next has something to do: the earliest time a queued message is due (one due at once
        since it was queued), or a message being sent counts as left by a stopped sender; None when neither waits."""
        return self.session.scalar(sa.select(sa.func.min(sa.func.coalesce(
            OutgoingMessage.next_attempt_at, OutgoingMessage.created_at))).where(
            OutgoingMessage.status.in_(("queued", "sending"))))

    def left_sending(self, now: datetime) -> list[OutgoingMessage]:
        """The messages still `sending` after they should have been recorded as sent, locked."""
        query = sa.select(OutgoingMessage).where(OutgoingMessage.status == "sending",
                                                 OutgoingMessage.next_attempt_at <= now)
        return list(self.session.scalars(_skip_locked(self.session, query)).all())

    def texted_before(self, phone: str) -> bool:
        """True when we have texted this phone anything but an answer to its own texts."""
        return self.session.scalar(sa.select(OutgoingMessage.id).where(
            OutgoingMessage.to_phone == phone, OutgoingMessage.purpose != "answer").limit(1)) is not None

    def asked_wellbeing(self, phone: str, since: datetime) -> bool:
        """True when a wellbeing check-in was queued for this phone since `since` (and not cancelled): a score it
        sends now answers it."""
        return self.session.scalar(sa.select(OutgoingMessage.id).where(
            OutgoingMessage.to_phone == phone, OutgoingMessage.purpose == "wellbeing",
            OutgoingMessage.created_at >= since, OutgoingMessage.status != "cancelled").limit(1)) is not None

    def last_request_texted(self, phone: str, community: str | None) -> uuid.UUID | None:
        """The request of the newest SMS this community sent this phone about one (an offer, a task's details or
        reminders, a withdrawal), if any: what a reply from that phone is about."""
        return self.session.scalar(sa.select(OutgoingMessage.request_id).where(
            OutgoingMessage.to_phone == phone, OutgoingMessage.request_id.is_not(None),
            OutgoingMessage.community == community).order_by(OutgoingMessage.created_at.desc()).limit(1))

    def newest_first(self, scope: Scope, to_phone: str | None, pagination_parameters) -> list[OutgoingMessage]:
        """One page of the messages the scope's communities sent (to one phone, if given), newest first."""
        query = sa.select(OutgoingMessage).where(_sent_in(scope)).order_by(OutgoingMessage.created_at.desc())
        if to_phone is not None:
            query = query.where(OutgoingMessage.to_phone == to_phone)
        return _detached(self.session, page_of(self.session, query, pagination_parameters))


class InboundRepository:
    """The messages phones sent us."""

    def __init__(self, session: Session):
        self.session = session

    def get(self, message_sid: str) -> InboundMessage | None:
        """The message the provider knows by this SID, if we have it."""
        return self.session.get(InboundMessage, message_sid)

    def add(self, message: InboundMessage) -> None:
        """Keep a message a phone sent."""
        self.session.add(message)

    def waiting_about(self, request_id: uuid.UUID) -> int:
        """How many messages about the request wait in the inbox."""
        self.session.flush()
        return self.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage).where(
            InboundMessage.request_id == request_id, InboundMessage.attention.is_not(None),
            InboundMessage.dealt_with_at.is_(None)))

    def latest_from(self, phone: str) -> InboundMessage | None:
        """The newest message this phone sent us (to tell which community's number it texted)."""
        return self.session.scalars(sa.select(InboundMessage).where(InboundMessage.from_phone == phone)
                                    .order_by(InboundMessage.received_at.desc()).limit(1)).first()


def _sent_in(scope: Scope) -> sa.ColumnElement[bool]:
    """The messages we sent that the scope reads: its communities'."""
    return scoping.in_scope(OutgoingMessage.community, scope)


def _received_in(scope: Scope) -> sa.ColumnElement[bool]:
    """The messages phones sent that the scope reads: to its communities' numbers, or to a number that is no
    community's."""
    return sa.or_(InboundMessage.to_phone.in_(scope.ours), InboundMessage.to_phone.not_in(scope.every))


class ConversationRepository:
    """The conversations coordinators read: the messages in a coordinator's scope both ways, i.e. those their
    communities sent, and those phones sent to their communities' numbers (or to a number that is no
    community's, which nobody else could see); never another community's message to the same phone. Every
    method takes the scope. Rows come back detached, to read after the unit of work."""

    def __init__(self, session: Session):
        self.session = session

    def _phones(self, scope: Scope):
        """The phones in scope, as a subquery with one column, `phone`."""
        return sa.union(
            sa.select(OutgoingMessage.to_phone.label("phone")).where(_sent_in(scope)),
            sa.select(InboundMessage.from_phone.label("phone")).where(_received_in(scope)),
        ).subquery()

    def _latest(self, model, phone, at, where) -> dict[str, Any]:
        """Each phone's newest row of `model` among those `where` keeps, by phone."""
        ranked = sa.select(model, sa.func.row_number().over(partition_by=phone, order_by=at.desc()).label("n")) \
            .where(where).subquery()
        row = aliased(model, ranked)
        rows = _detached(self.session, list(self.session.scalars(sa.select(row).where(ranked.c.n == 1))))
        return {getattr(m, phone.key): m for m in rows}

    def latest_sent(self, scope: Scope) -> dict[str, OutgoingMessage]:
        """Each in-scope phone's newest message from the scope's communities."""
        return self._latest(OutgoingMessage, OutgoingMessage.to_phone,
                            sa.func.coalesce(OutgoingMessage.sent_at, OutgoingMessage.created_at), _sent_in(scope))

    def latest_received(self, scope: Scope) -> dict[str, InboundMessage]:
        """Each in-scope phone's newest message to the scope's numbers."""
        return self._latest(InboundMessage, InboundMessage.from_phone, InboundMessage.received_at,
                            _received_in(scope))

    def inbox(self, scope: Scope, limit: int) -> list[InboundMessage]:
        """The scope's messages waiting for a coordinator, oldest first."""
        return _detached(self.session, list(self.session.scalars(
            sa.select(InboundMessage).where(_received_in(scope), InboundMessage.attention.is_not(None),
                                            InboundMessage.dealt_with_at.is_(None))
            .order_by(InboundMessage.received_at).limit(limit))))

    def received(self, scope: Scope, message_sid: str) -> InboundMessage | None:
        """One message the scope received, to change; None if it is not the scope's."""
        return self.session.scalars(sa.select(InboundMessage).where(
            _received_in(scope), InboundMessage.message_sid == message_sid).with_for_update()).first()

    def texted(self, scope: Scope) -> set[str]:
        """The phones the scope's communities texted anything but answers."""
        return set(self.session.scalars(sa.select(OutgoingMessage.to_phone).distinct().where(
            _sent_in(scope), OutgoingMessage.purpose != "answer")))

    def contacts(self, scope: Scope) -> dict[str, Contact]:
        """The in-scope phones' contacts."""
        rows = list(self.session.scalars(sa.select(Contact).where(
            Contact.phone.in_(sa.select(self._phones(scope).c.phone)))))
        return {c.phone: c for c in _detached(self.session, rows)}

    def in_scope(self, scope: Scope, phone: str) -> bool:
        """True when the phone is one this scope sees."""
        phones = self._phones(scope)
        return self.session.scalar(sa.select(phones.c.phone).where(phones.c.phone == phone).limit(1)) is not None

    def with_phone(self, scope: Scope, phone: str) -> tuple[list[OutgoingMessage], list[InboundMessage],
                                                          Contact | None]:
        """Every message in scope to and from one phone, and its contact."""
        outgoing = list(self.session.scalars(sa.select(OutgoingMessage).where(OutgoingMessage.to_phone == phone,
                                                                              _sent_in(scope))))
        inbound = list(self.session.scalars(sa.select(InboundMessage).where(InboundMessage.from_phone == phone,
                                                                            _received_in(scope))))
        contact = self.session.get(Contact, phone)
        return (_detached(self.session, outgoing), _detached(self.session, inbound),
                _detached(self.session, [contact])[0] if contact else None)

    def received_by_phones(self, scope: Scope, statuses: tuple[str, ...]) -> tuple[list[OutgoingMessage],
                                                                                  list[InboundMessage]]:
        """What phones received from the scope's communities (in these statuses), and what those phones sent to
        the scope's numbers."""
        received = list(self.session.scalars(sa.select(OutgoingMessage).where(
            OutgoingMessage.status.in_(statuses), _sent_in(scope))))
        numbers = {m.to_phone for m in received}
        sent = list(self.session.scalars(sa.select(InboundMessage).where(InboundMessage.from_phone.in_(numbers),
                                                                         _received_in(scope))))
        return _detached(self.session, received), _detached(self.session, sent)


class RetentionRepository:
    """The texts of SMS, as retention and erasure remove them (the records that they were sent or received stay:
    to whom, why, when, how it went), and the record of each run."""

    def __init__(self, session: Session):
        self.session = session

    def blank_sent(self, where: list, limit: int) -> int:
        """Blank the text of up to `limit` SMS that `where` chooses and still have one, claimed with SKIP LOCKED on
        PostgreSQL; one still waiting to go is cancelled (it would go empty). How many."""
        t = outgoing_messages.c
        ids = self.session.scalars(_skip_locked(self.session, sa.select(t.id).where(t.body != "", *where)
                                                .order_by(t.created_at).limit(limit))).all()
        if ids:
            self.session.execute(sa.update(outgoing_messages).where(t.id.in_(ids)).values(body=""))
            self.session.execute(sa.update(outgoing_messages).where(t.id.in_(ids), t.status == "queued").values(
                status="cancelled", next_attempt_at=None))
        return len(ids)

    def blank_received(self, where: list, limit: int) -> int:
        """Blank the text of up to `limit` received SMS that `where` chooses and still have one, and the copy of
        each in the `sms.received` event notify published; claimed as `blank_sent` claims; how many."""
        t = inbound_messages.c
        sids = self.session.scalars(_skip_locked(self.session, sa.select(t.message_sid).where(t.body != "", *where)
                                                 .order_by(t.received_at).limit(limit))).all()
        if not sids:
            return 0
        self.session.execute(sa.update(inbound_messages).where(t.message_sid.in_(sids)).values(body=""))
        events = self.session.scalars(sa.select(outbox.table).where(
            outbox.table.event_type == "sms.received",
            outbox.table.body["payload"]["message_sid"].as_string().in_(sids))).all()
        for event in events:
            event.body = {**event.body, "payload": {**event.body["payload"], "body": ""}}
        return len(sids)

    def sent_older_than(self, community: str, before: datetime) -> list:
        """Which SMS are the community's, older than `before`, and no longer waiting to go."""
        t = outgoing_messages.c
        return [t.community == community, t.created_at < before, t.status.not_in(("queued", "sending"))]

    def received_older_than(self, number: str | None, before: datetime, others: list[str] = ()) -> list:
        """Which received SMS came to this number (None: to none of `others`) and are older than `before`."""
        t = inbound_messages.c
        to = t.to_phone == number if number is not None else t.to_phone.not_in(others)
        return [to, t.received_at < before]

    def sent_about(self, community: str, request_ids: list[uuid.UUID]) -> list:
        """Which sent SMS are about these requests of the community."""
        return [outgoing_messages.c.community == community, outgoing_messages.c.request_id.in_(request_ids)]

    def received_about(self, request_ids: list[uuid.UUID]) -> list:
        """Which received SMS were about these requests (in the coordinators' inbox)."""
        return [inbound_messages.c.request_id.in_(request_ids)]

    def held_about(self, request_ids: list[uuid.UUID]) -> dict[str, list[dict[str, Any]]]:
        """Every SMS about these requests, sent and received, as rows (a subject access export)."""
        sent = self.session.execute(sa.select(outgoing_messages).where(outgoing_messages.c.request_id.in_(
            request_ids)).order_by(outgoing_messages.c.created_at)).mappings().all()
        received = self.session.execute(sa.select(inbound_messages).where(inbound_messages.c.request_id.in_(
            request_ids)).order_by(inbound_messages.c.received_at)).mappings().all()
        return {"sent": [dict(row) for row in sent], "received": [dict(row) for row in received]}

    def ran_on(self, kind: str, day) -> bool:
        """Whether a run of this kind was recorded for this day."""
        return self.session.scalar(sa.select(sa.func.count()).select_from(retention_runs).where(
            retention_runs.c.kind == kind, retention_runs.c.day == day)) > 0

    def record(self, kind: str, at: datetime, counts: dict[str, Any], request_ids: list[uuid.UUID] = ()) -> None:
        """Record a run: what it did, and for an erasure which requests."""
        self.session.execute(sa.insert(retention_runs).values(kind=kind, day=at.date(), at=at, counts=counts,
                                                              request_ids=[str(i) for i in request_ids]))


class SurveyAskRepository:
    """Survey questions a phone was asked and has not answered."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, ask: SurveyAsk) -> bool:
        """Keep a question asked, closing the phone's earlier ones; False if it was kept before (a redelivery)."""
        if self.session.scalar(sa.select(SurveyAsk).where(survey_asks.c.survey_id == ask.survey_id,
                                                          survey_asks.c.question_id == ask.question_id)):
            return False
        for earlier in self.open_to(ask.phone):
            earlier.closed_at = ask.asked_at
        self.session.add(ask)
        return True

    def open_to(self, phone: str) -> list[SurveyAsk]:
        """The phone's questions not answered or ended, newest first (locked: one answer each)."""
        return list(self.session.scalars(sa.select(SurveyAsk).where(
            survey_asks.c.phone == phone, survey_asks.c.answered_at.is_(None), survey_asks.c.closed_at.is_(None))
            .order_by(survey_asks.c.asked_at.desc(), survey_asks.c.id.desc()).with_for_update()))


class NotifyUnitOfWork(SqlUnitOfWork):
    """One transaction over notify's database: `uow.contacts`, `uow.messages`, `uow.inbound`,
    `uow.conversations`."""

    contacts: ContactRepository
    messages: MessageRepository
    inbound: InboundRepository
    conversations: ConversationRepository

    def __init__(self, sessions: sessionmaker):
        super().__init__(sessions, outbox)

    def open(self, session: Session) -> None:
        """Attach the repositories to this transaction's session."""
        self.contacts = ContactRepository(session)
        self.messages = MessageRepository(session)
        self.inbound = InboundRepository(session)
        self.conversations = ConversationRepository(session)
        self.retention = RetentionRepository(session)
        self.survey_asks = SurveyAskRepository(session)


# --- SMS gateways ------------------------------------------------------------------------------------------------

class SmsGateway(Protocol):
    """Sends one SMS (from the community's own number, when given) and returns the provider's id for it; raises
    SendFailed saying whether to retry, or that the number opted out or cannot take SMS."""

    def send(self, to: str, body: str, from_: str | None = None) -> str: ...


# Twilio's error codes that say something about the number rather than the message.
OPTED_OUT_CODES = {21610}  # the person texted STOP: Twilio will not deliver to them
INVALID_CODES = {21211, 21217, 21614}  # not a valid number; not a number that can take SMS (a landline)


def outcome_of(exc: Exception) -> tuple[str, str]:
    """What a failed send means: ("retry" | "opted_out" | "invalid" | "failed", a reason without personal data)."""
    from twilio.base.exceptions import TwilioRestException, TwilioServiceException

    if isinstance(exc, (TwilioRestException, TwilioServiceException)):
        reason = f"{exc.status} {exc.code}" if exc.code else str(exc.status)
        if exc.code in OPTED_OUT_CODES:
            return "opted_out", reason
        if exc.code in INVALID_CODES:
            return "invalid", reason
        if exc.status == 429 or exc.status >= 500:
            return "retry", reason
        return "failed", reason
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, OSError)):
        return "retry", type(exc).__name__
    return "failed", type(exc).__name__


class DevelopmentGateway:
    """Sends nothing: records each message in var/sms/sent.jsonl and prints it; and each message held for the
    quiet hours, with until when, in var/sms/held.jsonl (the `make run` window shows both)."""

    def __init__(self, folder: Path):
        self.path = folder / "sms" / "sent.jsonl"
        self.held_path = folder / "sms" / "held.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def held(self, notice: dict[str, Any]) -> None:
        """Record a message held for the quiet hours (`MessageRepository.held` says what), and print it."""
        with self._lock, self.held_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({**notice, "at": utcnow().isoformat()}) + "\n")
        print(f"[development SMS gateway] held until {notice['until']} ({notice['zone']}): to {notice['to']}",
              flush=True)

    def send(self, to: str, body: str, from_: str | None = None) -> str:
        """Record and print the message."""
        sid = "SMdev" + uuid.uuid4().hex[:27]
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"sid": sid, "to": to, "from": from_, "body": body,
                                         "at": utcnow().isoformat()}) + "\n")
        except OSError as exc:
            raise SendFailed(*outcome_of(exc)) from exc
        print(f"[development SMS gateway] to {to}: {body}", flush=True)
        return sid


class TwilioGateway:
    """Sends through Twilio's Messages API with the real `twilio` client.

    From a Messaging Service when one is configured (Twilio then picks the sender from its pool), else from the
    community's own number, else the deployment's TWILIO_FROM_NUMBER. Twilio reports delivery to /sms/status.

    One client per sending thread: Twilio's HTTP client keeps the last request and response on itself."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._threads = threading.local()
        self.from_number = settings.twilio_from_number
        self.messaging_service_sid = settings.twilio_messaging_service_sid
        self.status_callback = f"{settings.public_url}/sms/status"

    def client(self):
        """This thread's Twilio client."""
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        client = getattr(self._threads, "client", None)
        if client is None:
            client = self._threads.client = Client(self.settings.twilio_account_sid, self.settings.twilio_auth_token,
                                                   http_client=TwilioHttpClient(timeout=15))
            if self.settings.twilio_base_url:
                client.api.base_url = self.settings.twilio_base_url
        return client

    def send(self, to: str, body: str, from_: str | None = None) -> str:
        """Create the message at Twilio; returns its SID. Twilio's refusals raise SendFailed."""
        sender = ({"messaging_service_sid": self.messaging_service_sid} if self.messaging_service_sid
                  else {"from_": from_ or self.from_number})
        try:
            message = self.client().messages.create(to=to, body=body, status_callback=self.status_callback, **sender)
        except Exception as exc:
            raise SendFailed(*outcome_of(exc)) from exc
        return message.sid


def gateway_for(settings: Settings) -> SmsGateway:
    """Twilio when credentials are configured, else the development gateway."""
    if settings.uses_twilio:
        return TwilioGateway(settings)
    return DevelopmentGateway(settings.var_dir)


# --- Twilio's webhooks ---------------------------------------------------------------------------------------------

def signature_for(settings: Settings, path: str, form: dict[str, str]) -> str:
    """The X-Twilio-Signature Twilio would send with `form` to our public URL + `path` (for the simulator)."""
    from twilio.request_validator import RequestValidator

    return RequestValidator(settings.webhook_token).compute_signature(settings.public_url + path, form)


def signed_by_twilio(settings: Settings, path: str, form: dict[str, str], signature: str) -> bool:
    """True when `signature` is Twilio's (or, in development, the simulator's) for `form` posted to our public
    URL + `path`: the public URL from configuration, so it still matches behind a proxy that reached us by
    another host name."""
    from twilio.request_validator import RequestValidator

    return RequestValidator(settings.webhook_token).validate(settings.public_url + path, form, signature)


class SimulatedPhone:
    """A phone texting us, as the SMS simulator plays it: Twilio's form, signed as Twilio signs it, posted to this
    service's own /sms/inbound (at `address`, where this web process listens)."""

    def __init__(self, settings: Settings, address: str):
        self.settings, self.address = settings, address

    def form(self, sender: str, to: str, body: str) -> dict[str, str]:
        """The fields Twilio posts to the inbound webhook for an SMS from `sender` to our number `to`."""
        sid = "SM" + secrets.token_hex(16)

        def country(number: str) -> str:
            try:
                return phonenumbers.region_code_for_number(phonenumbers.parse(number)) or ""
            except phonenumbers.NumberParseException:
                return ""

        return {"ToCountry": country(to), "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid,
                "SmsStatus": "received", "Body": body, "FromCountry": country(sender), "To": to,
                "NumSegments": str(segments(body).count), "MessageSid": sid,
                "AccountSid": self.settings.twilio_account_sid or "AC" + "0" * 32, "From": sender,
                "ApiVersion": "2010-04-01"}

    def text(self, sender: str, to: str, body: str) -> dict[str, str]:
        """Send the SMS; what came of it: {"answer": the text sent straight back} or {"error": why it failed}."""
        fields = self.form(sender, to, body)
        signature = signature_for(self.settings, "/sms/inbound", fields)
        try:
            answered = requests.post(self.address + "/sms/inbound", data=fields, timeout=15,
                                     headers={"X-Twilio-Signature": signature})
        except requests.RequestException as err:
            return {"error": f"The webhook did not answer ({type(err).__name__})."}
        if not answered.ok:
            return {"error": f"The webhook answered {answered.status_code}."}
        return {"answer": answer_in(answered.text)}


def answer_in(twiml: str) -> str | None:
    """The text of the <Message> a TwiML answer sends back, if any."""
    try:
        root = ElementTree.fromstring(twiml)
    except ElementTree.ParseError:
        return None
    texts = [(m.findtext("Body") or m.text or "").strip() for m in root.iter("Message")]
    return "\n".join(t for t in texts if t) or None
