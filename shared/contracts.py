"""Event contracts: the envelope, one marshmallow schema per (type, version), and an example of each.

Producers build events with `make_event`, which validates strictly; consumers read them with
`load_event`, which ignores fields they do not know.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from shared import clock
from shared.taxonomy import KINDS

__all__ = ["Event", "ValidationError", "EVENTS", "EXAMPLES", "make_event", "load_event", "producer_of"]


class Payload(Schema):
    """Base of every payload schema: consumers drop unknown fields."""

    class Meta:
        unknown = EXCLUDE


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PARTS_OF_DAY = ("morning", "afternoon", "evening")


class WhenFields(Payload):
    """When help is wanted: a one-off window, or days and a part of the day ("any weekday afternoon")."""

    window_start = fields.AwareDateTime(allow_none=True, load_default=None)
    window_end = fields.AwareDateTime(allow_none=True, load_default=None)
    window_days = fields.List(fields.Str(validate=validate.OneOf(DAYS)), allow_none=True, load_default=None)
    window_part = fields.Str(allow_none=True, load_default=None, validate=validate.OneOf(PARTS_OF_DAY))


class RequestSubmittedV1(WhenFields):
    """A request matching should find someone for. Carries no name, phone, address or notes."""

    request_id = fields.UUID(required=True)
    community = fields.Str(required=True)
    source = fields.Str(load_default="coordinator")
    support_type = fields.Str(required=True, validate=validate.OneOf(sorted(KINDS)))
    urgency = fields.Str(load_default="routine", validate=validate.OneOf(["routine", "soon", "urgent"]))
    latitude = fields.Float(required=True, validate=validate.Range(-90, 90))
    longitude = fields.Float(required=True, validate=validate.Range(-180, 180))
    area = fields.Str(load_default="", dump_default="")
    repeat_every_weeks = fields.Int(allow_none=True, load_default=None)
    repeat_occurrences = fields.Int(load_default=1)
    volunteer_language = fields.Str(allow_none=True, load_default=None)
    volunteer_gender = fields.Str(allow_none=True, load_default=None)
    person_ref = fields.Str(load_default="")
    is_carer = fields.Bool(load_default=False)
    referrer_organisation = fields.Str(allow_none=True, load_default=None)


class RequestUpdatedV1(RequestSubmittedV1):
    """The matching-relevant fields of a request after a coordinator changed it."""


class RequestCancelledV1(Payload):
    request_id = fields.UUID(required=True)
    reason = fields.Str(load_default="")


class OfferMadeV1(WhenFields):
    offer_id = fields.UUID(required=True)
    request_id = fields.UUID(required=True)
    volunteer_id = fields.UUID(required=True)
    phone = fields.Str(required=True)
    code = fields.Str(required=True, validate=validate.Regexp(r"^\d{4}$"))
    support_type = fields.Str(required=True, validate=validate.OneOf(sorted(KINDS)))
    area = fields.Str(required=True)
    urgency = fields.Str(load_default="routine", validate=validate.OneOf(["routine", "soon", "urgent"]))
    community = fields.Str(allow_none=True, load_default=None)
    round = fields.Int(load_default=1)
    occurrence = fields.Int(load_default=1)
    occurrences = fields.Int(load_default=1)
    language = fields.Str(allow_none=True, load_default=None)  # the volunteer's first language, for the SMS


class OfferAcceptedV1(WhenFields):
    """A volunteer has the task (by YES, or a coordinator's assignment); the window is for reminders."""

    offer_id = fields.UUID(required=True)
    request_id = fields.UUID(required=True)
    volunteer_id = fields.UUID(required=True)
    phone = fields.Str(required=True)
    code = fields.Str(required=True)
    by = fields.Str(load_default="volunteer", validate=validate.OneOf(["volunteer", "coordinator"]))
    community = fields.Str(allow_none=True, load_default=None)
    language = fields.Str(allow_none=True, load_default=None)


class TaskDetailsSharedV1(Payload):
    """Intake's answer to an acceptance: what the volunteer who accepted, and only they, may be told.

    It carries personal data, so it goes to notify alone; the details are null where the person did not consent
    to sharing their contact details (the volunteer is then told the coordinator will call)."""

    offer_id = fields.UUID(required=True)
    request_id = fields.UUID(required=True)
    phone = fields.Str(required=True)  # the volunteer's
    code = fields.Str(required=True)
    language = fields.Str(allow_none=True, load_default=None)
    community = fields.Str(allow_none=True, load_default=None)
    shared = fields.Bool(required=True)
    first_name = fields.Str(allow_none=True, load_default=None)
    address = fields.Str(allow_none=True, load_default=None)
    person_phone = fields.Str(allow_none=True, load_default=None)


class VolunteerRegisteredV1(Payload):
    """A volunteer joined (registered by a coordinator, or imported). No name or phone: counts only."""

    volunteer_id = fields.UUID(required=True)
    community = fields.Str(required=True)
    status = fields.Str(required=True)


class VolunteerStatusChangedV1(VolunteerRegisteredV1):
    """A volunteer paused (by SMS or a coordinator), came back, or left."""

    previous = fields.Str(required=True)


class ContactOptedV1(Payload):
    """A phone opted out of SMS (STOP, or Twilio's error 21610) or back in (START); matching stops or resumes
    offering to the volunteer with that phone."""

    phone = fields.Str(required=True)
    at = fields.AwareDateTime(required=True)
    source = fields.Str(required=True, validate=validate.OneOf(["keyword", "provider"]))


class ContactInvalidV1(Payload):
    """Twilio says a number cannot take SMS (21211 invalid, 21614 a landline): matching stops offering to it and
    the coordinator is told."""

    phone = fields.Str(required=True)
    at = fields.AwareDateTime(required=True)
    reason = fields.Str(required=True)


class ReplyUnresolvedV1(Payload):
    """A volunteer's SMS that matching could not act on, so notify can say why: an unknown number, a bare YES
    with several offers open, a code that is not theirs or no longer open."""

    phone = fields.Str(required=True)
    reason = fields.Str(required=True, validate=validate.OneOf(
        ["unknown_sender", "several_open", "no_such_offer", "nothing_open"]))
    keyword = fields.Str(allow_none=True, load_default=None)
    code = fields.Str(allow_none=True, load_default=None)
    codes = fields.List(fields.Str(), load_default=list)
    language = fields.Str(allow_none=True, load_default=None)


class OfferWithdrawnV1(Payload):
    """An open offer taken back: someone else said yes first, or the request was cancelled."""

    offer_id = fields.UUID(required=True)
    request_id = fields.UUID(required=True)
    volunteer_id = fields.UUID(required=True)
    phone = fields.Str(required=True)
    code = fields.Str(required=True)
    reason = fields.Str(required=True, validate=validate.OneOf(["taken", "cancelled"]))


class TaskCompletedV1(Payload):
    request_id = fields.UUID(required=True)
    offer_id = fields.UUID(required=True)
    volunteer_id = fields.UUID(required=True)
    community = fields.Str(required=True)
    support_type = fields.Str(required=True, validate=validate.OneOf(sorted(KINDS)))
    hours = fields.Float(allow_none=True, load_default=None)
    occurrence = fields.Int(load_default=1)
    occurrences = fields.Int(load_default=1)


class TaskGivenBackV1(Payload):
    """The volunteer who accepted cancelled; the request is being matched again."""

    request_id = fields.UUID(required=True)
    offer_id = fields.UUID(required=True)
    volunteer_id = fields.UUID(required=True)


class CheckExpiringV1(Payload):
    volunteer_id = fields.UUID(required=True)
    community = fields.Str(required=True)
    phone = fields.Str(required=True)
    check = fields.Str(required=True)
    expires_on = fields.Date(required=True)


class RequestMatchedV1(Payload):
    request_id = fields.UUID(required=True)
    offer_id = fields.UUID(required=True)
    volunteer_id = fields.UUID(required=True)


class RequestUnmatchedV1(Payload):
    request_id = fields.UUID(required=True)
    reason = fields.Str(required=True)


class SmsReceivedV1(Payload):
    message_sid = fields.Str(required=True)
    from_phone = fields.Str(required=True)
    to_phone = fields.Str(required=True)
    body = fields.Str(required=True)
    keyword = fields.Str(allow_none=True, load_default=None)
    code = fields.Str(allow_none=True, load_default=None)
    hours = fields.Float(allow_none=True, load_default=None)


class SmsSentV1(Payload):
    message_id = fields.UUID(required=True)
    purpose = fields.Str(required=True)
    provider_sid = fields.Str(required=True, allow_none=True)  # None: a crash left it unconfirmed (notify/sms.py)
    offer_id = fields.UUID(allow_none=True, load_default=None)


class SmsFailedV1(Payload):
    """A message that could not be sent or delivered."""

    message_id = fields.UUID(required=True)
    purpose = fields.Str(required=True)
    reason = fields.Str(required=True)
    offer_id = fields.UUID(allow_none=True, load_default=None)


@dataclass(frozen=True)
class Contract:
    """What an event type is at one version: who produces it and the schema of its payload."""

    type: str
    version: int
    producer: str
    schema: type[Payload]


EVENTS: dict[tuple[str, int], Contract] = {
    (c.type, c.version): c
    for c in [
        Contract("request.submitted", 1, "intake", RequestSubmittedV1),
        Contract("request.updated", 1, "intake", RequestUpdatedV1),
        Contract("request.cancelled", 1, "intake", RequestCancelledV1),
        Contract("offer.made", 1, "matching", OfferMadeV1),
        Contract("offer.accepted", 1, "matching", OfferAcceptedV1),
        Contract("reply.unresolved", 1, "matching", ReplyUnresolvedV1),
        Contract("task.details_shared", 1, "intake", TaskDetailsSharedV1),
        Contract("request.matched", 1, "matching", RequestMatchedV1),
        Contract("request.unmatched", 1, "matching", RequestUnmatchedV1),
        Contract("offer.withdrawn", 1, "matching", OfferWithdrawnV1),
        Contract("task.completed", 1, "matching", TaskCompletedV1),
        Contract("task.given_back", 1, "matching", TaskGivenBackV1),
        Contract("volunteer.check_expiring", 1, "matching", CheckExpiringV1),
        Contract("volunteer.registered", 1, "matching", VolunteerRegisteredV1),
        Contract("volunteer.status_changed", 1, "matching", VolunteerStatusChangedV1),
        Contract("sms.received", 1, "notify", SmsReceivedV1),
        Contract("sms.sent", 1, "notify", SmsSentV1),
        Contract("sms.failed", 1, "notify", SmsFailedV1),
        Contract("contact.opted_out", 1, "notify", ContactOptedV1),
        Contract("contact.opted_in", 1, "notify", ContactOptedV1),
        Contract("contact.invalid", 1, "notify", ContactInvalidV1),
    ]
}

_EXAMPLE_REQUEST = "6f1c2d5e-8a41-4c57-9d0e-1b2a3c4d5e6f"
_EXAMPLE_OFFER = "0b7e8f9a-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
_EXAMPLE_VOLUNTEER = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"

EXAMPLES: dict[tuple[str, int], dict[str, Any]] = {
    ("request.submitted", 1): {
        "request_id": _EXAMPLE_REQUEST,
        "community": "fylde-coast",
        "source": "coordinator",
        "support_type": "shopping",
        "urgency": "routine",
        "latitude": 53.8175,
        "longitude": -3.0357,
        "area": "FY1",
        "window_start": "2026-11-25T14:00:00+00:00",
        "window_end": "2026-11-25T16:00:00+00:00",
        "window_days": None,
        "window_part": None,
        "repeat_every_weeks": 1,
        "repeat_occurrences": 6,
        "volunteer_language": "en",
        "volunteer_gender": None,
        "person_ref": "p_4f1c2a9d0b7e",
        "is_carer": False,
        "referrer_organisation": None,
    },
    ("request.cancelled", 1): {"request_id": _EXAMPLE_REQUEST, "reason": "The family have arranged help."},
    ("offer.made", 1): {
        "offer_id": _EXAMPLE_OFFER,
        "request_id": _EXAMPLE_REQUEST,
        "volunteer_id": _EXAMPLE_VOLUNTEER,
        "phone": "+447700900123",
        "code": "4821",
        "support_type": "shopping",
        "area": "FY1",
        "urgency": "routine",
        "community": "fylde-coast",
        "round": 1,
        "occurrence": 1,
        "occurrences": 1,
        "window_start": None,
        "window_end": None,
        "window_days": ["mon", "tue", "wed", "thu", "fri"],
        "window_part": "afternoon",
        "language": "en",
    },
    ("offer.accepted", 1): {
        "offer_id": _EXAMPLE_OFFER,
        "request_id": _EXAMPLE_REQUEST,
        "volunteer_id": _EXAMPLE_VOLUNTEER,
        "phone": "+447700900123",
        "code": "4821",
        "by": "volunteer",
        "community": "fylde-coast",
        "language": "en",
        "window_start": "2026-11-25T14:00:00+00:00",
        "window_end": "2026-11-25T16:00:00+00:00",
        "window_days": None,
        "window_part": None,
    },
    ("task.details_shared", 1): {
        "offer_id": _EXAMPLE_OFFER,
        "request_id": _EXAMPLE_REQUEST,
        "phone": "+447700900123",
        "code": "4821",
        "language": "en",
        "community": "fylde-coast",
        "shared": True,
        "first_name": "Margaret",
        "address": "12 Dickson Road, Blackpool FY1 2AB",
        "person_phone": "+441253000111",
    },
    ("volunteer.registered", 1): {"volunteer_id": _EXAMPLE_VOLUNTEER, "community": "fylde-coast", "status": "active"},
    ("volunteer.status_changed", 1): {"volunteer_id": _EXAMPLE_VOLUNTEER, "community": "fylde-coast",
                                      "status": "paused", "previous": "active"},
    ("contact.opted_out", 1): {"phone": "+447700900123", "at": "2026-11-25T21:14:00+00:00", "source": "keyword"},
    ("contact.opted_in", 1): {"phone": "+447700900123", "at": "2026-11-26T08:02:00+00:00", "source": "keyword"},
    ("contact.invalid", 1): {"phone": "+441253000111", "at": "2026-11-25T10:00:00+00:00",
                             "reason": "21614: not a mobile number"},
    ("reply.unresolved", 1): {
        "phone": "+447700900123",
        "reason": "several_open",
        "keyword": "YES",
        "code": None,
        "codes": ["4821", "5532"],
        "language": "en",
    },
    ("offer.withdrawn", 1): {
        "offer_id": _EXAMPLE_OFFER,
        "request_id": _EXAMPLE_REQUEST,
        "volunteer_id": _EXAMPLE_VOLUNTEER,
        "phone": "+447700900123",
        "code": "4821",
        "reason": "taken",
    },
    ("task.completed", 1): {
        "request_id": _EXAMPLE_REQUEST,
        "offer_id": _EXAMPLE_OFFER,
        "volunteer_id": _EXAMPLE_VOLUNTEER,
        "community": "fylde-coast",
        "support_type": "shopping",
        "hours": 1.5,
        "occurrence": 1,
        "occurrences": 6,
    },
    ("task.given_back", 1): {"request_id": _EXAMPLE_REQUEST, "offer_id": _EXAMPLE_OFFER,
                             "volunteer_id": _EXAMPLE_VOLUNTEER},
    ("volunteer.check_expiring", 1): {
        "volunteer_id": _EXAMPLE_VOLUNTEER,
        "community": "fylde-coast",
        "phone": "+447700900123",
        "check": "criminal_record",
        "expires_on": "2026-12-20",
    },
    ("request.matched", 1): {
        "request_id": _EXAMPLE_REQUEST,
        "offer_id": _EXAMPLE_OFFER,
        "volunteer_id": _EXAMPLE_VOLUNTEER,
    },
    ("request.unmatched", 1): {"request_id": _EXAMPLE_REQUEST,
                               "reason": "no active volunteer with that skill in range"},
    ("sms.received", 1): {
        "message_sid": "SM0123456789abcdef0123456789abcdef",
        "from_phone": "+447700900123",
        "to_phone": "+447700900000",
        "body": "YES 4821",
        "keyword": "YES",
        "code": "4821",
    },
    ("sms.sent", 1): {
        "message_id": "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a",
        "purpose": "offer",
        "provider_sid": "SMfedcba9876543210fedcba9876543210",
        "offer_id": _EXAMPLE_OFFER,
    },
    ("sms.failed", 1): {
        "message_id": "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a",
        "purpose": "offer",
        "reason": "undelivered",
        "offer_id": _EXAMPLE_OFFER,
    },
}


@dataclass(frozen=True)
class Event:
    """An event as a consumer sees it: the envelope fields and the loaded payload."""

    event_id: uuid.UUID
    type: str
    version: int
    occurred_at: datetime
    producer: str
    correlation_id: str
    payload: dict[str, Any]


class Envelope(Schema):
    """The wire format every event shares."""

    class Meta:
        unknown = EXCLUDE

    event_id = fields.UUID(required=True)
    type = fields.Str(required=True)
    version = fields.Int(required=True, strict=True)
    occurred_at = fields.AwareDateTime(required=True)
    producer = fields.Str(required=True)
    correlation_id = fields.Str(required=True)
    payload = fields.Dict(required=True)


def producer_of(event_type: str) -> str:
    """The service that produces an event type (and so the exchange it is published on)."""
    for (name, _), contract in EVENTS.items():
        if name == event_type:
            return contract.producer
    raise KeyError(event_type)


def make_event(event_type: str, payload: dict[str, Any], *, correlation_id: str | None = None,
               version: int = 1) -> dict[str, Any]:
    """Build a wire-ready envelope, validating the payload strictly (unknown fields are a bug)."""
    contract = EVENTS[(event_type, version)]
    schema = contract.schema(unknown=RAISE)
    loaded = schema.load({key: _wire(value) for key, value in payload.items()})
    event_id = uuid.uuid4()
    return Envelope().dump({
        "event_id": event_id,
        "type": event_type,
        "version": version,
        "occurred_at": clock.utcnow(),
        "producer": contract.producer,
        "correlation_id": correlation_id or str(event_id),
        "payload": schema.dump(loaded),
    })


def load_event(body: Any) -> Event:
    """Read an envelope and its payload; raises ValidationError naming what is wrong."""
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["event body is not a JSON object"]})
    envelope = Envelope().load(body)
    contract = EVENTS.get((envelope["type"], envelope["version"]))
    if contract is None:
        raise ValidationError({"type": [f"unknown event {envelope['type']} v{envelope['version']}"]})
    try:
        payload = contract.schema().load(envelope["payload"])
    except ValidationError as err:
        raise ValidationError({"payload": err.messages}) from err
    return Event(payload=payload, **{k: v for k, v in envelope.items() if k != "payload"})


def _wire(value: Any) -> Any:
    """A payload value as it travels: UUIDs and datetimes as strings."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


EXAMPLES[("request.updated", 1)] = {**EXAMPLES[("request.submitted", 1)], "urgency": "urgent"}
