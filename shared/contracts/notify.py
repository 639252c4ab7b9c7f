"""The events notify publishes: SMS received, sent and failed, and phones that opted out, back in, or cannot
take texts."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from marshmallow import validate

from shared.contracts import EventPayload, contract, rule
from shared.contracts.intake import OFFER, REQUEST
from shared.contracts.matching import PHONE
from shared.taxonomy import OPTED_VIA

MESSAGE = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"


@contract("sms.received", 1, example={
    "message_sid": "SM0123456789abcdef0123456789abcdef", "from_phone": PHONE, "to_phone": "+447700900000",
    "body": "YES 4821", "keyword": "YES", "code": "4821"})
class SmsReceived(EventPayload):
    """A text from a phone, with what the reply parser understood of it (keyword: see notify's `Reply`). It carries
    the message as sent, so only matching, which must act on it, hears it (never metrics: shared/topology.py
    PERSONAL)."""

    message_sid: str
    from_phone: str
    to_phone: str
    body: str
    keyword: str | None = None
    code: str | None = None
    hours: float | None = None
    away_from: date | None = None  # AWAY: the days away, both included, when the parser could read them
    away_until: date | None = None
    text: str | None = None  # CONCERN: the volunteer's words (the whole message, or what follows CONCERN <code>)
    score: int | None = None  # WELLBEING: their answer (1 to 5) to the check-in notify asked them lately


@contract("sms.sent", 1, example={"message_id": MESSAGE, "purpose": "offer",
                                  "provider_sid": "SMfedcba9876543210fedcba9876543210", "offer_id": OFFER})
class SmsSent(EventPayload):
    """A message went; for an offer, its time to answer starts now."""

    message_id: uuid.UUID
    purpose: str
    provider_sid: str | None  # None: a crash left it unconfirmed (see notify's sender)
    offer_id: uuid.UUID | None = None


@contract("sms.held", 1, example={"request_id": REQUEST, "offer_id": OFFER, "until": "2026-11-26T08:00:00+00:00"})
class SmsHeld(EventPayload):
    """An offer's SMS waits for the community's quiet hours to end: it goes at `until`, not now (so a coordinator
    is not told it was texted)."""

    request_id: uuid.UUID
    offer_id: uuid.UUID
    until: datetime


@contract("sms.waiting", 1, example={"request_id": REQUEST, "waiting": 2, "as_of": "2026-11-26T09:15:00+00:00"})
class SmsWaiting(EventPayload):
    """How many SMS about a request wait in the coordinators' inbox (free text, a reply nobody could act on), as of
    `as_of`: sent when one arrives and when a coordinator deals with one. An SMS is about the request of the last
    text that phone was sent about a request. A count, never the messages: the board puts the request first."""

    request_id: uuid.UUID
    waiting: int = rule(validate.Range(min=0))
    as_of: datetime


@contract("sms.failed", 1, example={"message_id": MESSAGE, "purpose": "offer", "reason": "undelivered",
                                    "offer_id": OFFER})
class SmsFailed(EventPayload):
    """A message that could not be sent or delivered."""

    message_id: uuid.UUID
    purpose: str
    reason: str
    offer_id: uuid.UUID | None = None


@contract("contact.opted_out", 1, example={"phone": PHONE, "at": "2026-11-25T21:14:00+00:00", "source": "keyword"})
class ContactOptedOut(EventPayload):
    """A phone opted out of SMS (STOP, or Twilio's error 21610): matching stops offering to it."""

    phone: str
    at: datetime
    source: str = rule(validate.OneOf(OPTED_VIA))


@contract("contact.opted_in", 1, example={"phone": PHONE, "at": "2026-11-26T08:02:00+00:00", "source": "keyword"})
class ContactOptedIn(ContactOptedOut):
    """A phone opted back in (START): matching may offer to it again."""


@contract("contact.invalid", 1, example={"phone": "+441253000111", "at": "2026-11-25T10:00:00+00:00",
                                         "reason": "21614: not a mobile number"})
class ContactInvalid(EventPayload):
    """Twilio says a number cannot take SMS (21211 invalid, 21614 a landline): matching stops offering to it and
    the coordinator is told."""

    phone: str
    at: datetime
    reason: str


@contract("survey.answered", 1, example={
    "survey_id": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d", "question_id": "ons4_life_satisfaction", "answer": 7,
    "message_sid": "SM0123456789abcdef0123456789abcdef", "at": "2026-12-01T10:15:00+00:00"})
class SurveyAnswered(EventPayload):
    """A person answered the survey question notify last sent them (`survey.question`) with a number from 0 to 10
    (read from "7", "seven", "sept", "7/10"). An answer tied to a survey, which intake ties to the person: intake
    alone hears it (shared/topology.py PERSONAL)."""

    survey_id: uuid.UUID
    question_id: str
    answer: int = rule(validate.Range(0, 10))
    message_sid: str
    at: datetime
