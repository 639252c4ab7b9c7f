"""The events intake publishes: requests to match, their changes and cancellations, and the details a volunteer
who accepted may be told."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from marshmallow import validate

from shared import equity
from shared.contracts import EventPayload, contract, rule
from shared.taxonomy import CONCERN_ACTIONS, DAYS, KINDS, ORGANISATION_TYPES, PARTS_OF_DAY, RHYTHMS, SOURCES, URGENCIES

REQUEST = "6f1c2d5e-8a41-4c57-9d0e-1b2a3c4d5e6f"
OFFER = "0b7e8f9a-1c2d-4e3f-8a9b-0c1d2e3f4a5b"


@dataclass(frozen=True, kw_only=True)
class When(EventPayload):
    """When help is wanted: a one-off window, or days and a part of the day ("any weekday afternoon")."""

    window_start: datetime | None = None
    window_end: datetime | None = None
    window_days: list[str] | None = rule(validate.ContainsOnly(DAYS), default=None)
    window_part: str | None = rule(validate.OneOf(PARTS_OF_DAY), default=None)


SUBMITTED_EXAMPLE = {
    "request_id": REQUEST, "community": "fylde-coast", "source": "coordinator", "support_type": "shopping",
    "urgency": "routine", "latitude": 53.8175, "longitude": -3.0357, "area": "FY1",
    "window_start": "2026-11-25T14:00:00+00:00", "window_end": "2026-11-25T16:00:00+00:00", "window_days": None,
    "window_part": None, "repeat_every_weeks": 1, "repeat_occurrences": 6, "volunteer_language": "en",
    "volunteer_gender": None, "person_ref": "p_4f1c2a9d0b7e", "is_carer": False, "referrer_organisation": None,
}


@contract("request.submitted", 1, example=SUBMITTED_EXAMPLE)
class RequestSubmitted(When):
    """A request matching should find someone for. Carries no name, phone, address or notes.

    `closed`: the request ended before volunteers were ever asked (signposted as it was made, or cancelled or
    signposted while held for a coordinator's check): matching takes nothing in, and metrics counts it as a request
    received like any other (so "received" and "signposted" or "cancelled" agree)."""

    request_id: uuid.UUID
    community: str
    support_type: str = rule(validate.OneOf(sorted(KINDS)))
    latitude: float = rule(validate.Range(-90, 90))
    longitude: float = rule(validate.Range(-180, 180))
    closed: bool = False
    source: str = rule(validate.OneOf(SOURCES), default="coordinator")
    urgency: str = rule(validate.OneOf(URGENCIES), default="routine")
    area: str = ""
    repeat_every_weeks: int | None = None
    repeat_occurrences: int = 1
    volunteer_language: str | None = None
    volunteer_gender: str | None = None
    person_ref: str = ""
    is_carer: bool = False
    referrer_organisation: str | None = None
    befriending_rhythm: str | None = rule(validate.OneOf(RHYTHMS), default=None, description=(
        "A befriending request: one volunteer visits at this rhythm until the match ends (offered once)."))
    review_on: date | None = rule(default=None, description="A befriending match's first review.")
    follows_a_death: bool = rule(default=False, description=(
        "Bereavement support offered to a carer after the person they cared for died, now that they took it up "
        "(a coordinator recorded their consent): metrics counts it as taken up."))


@contract("request.updated", 1, example={**SUBMITTED_EXAMPLE, "urgency": "urgent"})
class RequestUpdated(RequestSubmitted):
    """The matching-relevant fields of a request after a coordinator changed it."""


@contract("request.cancelled", 1, example={"request_id": REQUEST, "reason": "The family have arranged help."})
class RequestCancelled(EventPayload):
    """A coordinator cancelled a request: matching withdraws its offers."""

    request_id: uuid.UUID
    reason: str = ""


@contract("request.signposted", 1, example={
    "request_id": REQUEST, "community": "fylde-coast", "support_type": "home_visit",
    "entry_id": "9d3e1c2b-4a5f-4b6c-8d7e-0f1a2b3c4d5e"})
class RequestSignposted(EventPayload):
    """A coordinator pointed the person to a service in the community's directory instead of a volunteer: the
    request is closed. Matching stops looking (as for a cancellation); metrics counts signposting by kind of help.
    Carries no name, and nothing of the person."""

    request_id: uuid.UUID
    community: str
    support_type: str = rule(validate.OneOf(sorted(KINDS)))
    entry_id: uuid.UUID | None = None
    asked_matching: bool = rule(default=True, description="False when matching never heard of the request (it was "
                                "closed before volunteers were asked): it has nothing to stop.")


@contract("task.details_shared", 1, example={
    "offer_id": OFFER, "request_id": REQUEST, "phone": "+447700900123", "code": "4821", "language": "en",
    "community": "fylde-coast", "shared": True, "first_name": "Margaret",
    "address": "12 Dickson Road, Blackpool FY1 2AB", "person_phone": "+441253000111"})
class TaskDetailsShared(EventPayload):
    """Intake's answer to an acceptance: what the volunteer who accepted, and only they, may be told.

    It carries personal data, so it goes to notify alone; the details are null where the person did not consent
    to sharing their contact details (the volunteer is then told the coordinator will call)."""

    offer_id: uuid.UUID
    request_id: uuid.UUID
    phone: str  # the volunteer's
    code: str
    shared: bool
    language: str | None = None
    community: str | None = None
    first_name: str | None = None
    address: str | None = None
    person_phone: str | None = None


@contract("person.died", 1, example={
    "community": "fylde-coast", "person_ref": "p_4f1c2a9d0b7e", "request_ids": [REQUEST], "died_on": "2026-12-03"})
class PersonDied(EventPayload):
    """A coordinator recorded that a person died: their open requests (`request_ids`) are closed. Matching stops
    them and withdraws their offers without the usual "no longer needed" text (notify hears of the death from
    `person.death_shared`, and tells the volunteers who helped); metrics counts the death. No name."""

    community: str
    person_ref: str
    request_ids: list[uuid.UUID]
    died_on: date
    carers_offered: int = rule(default=0, description="How many of their carers were offered bereavement "
                                                      "support (a request each, waiting for their consent).")


@contract("person.monitored", 1, example={
    "community": "fylde-coast", "person_ref": "p_4f1c2a9d0b7e", "consented": True, "age_band": "75-84",
    "sex": "female", "ethnic_group": "white", "first_language": "en", "disability": "prefer_not_to_say",
    "deprivation_decile": "2"})
class PersonMonitored(EventPayload):
    """A person's equity monitoring as a coordinator last recorded it, for metrics to count the people supported
    by each (shared/equity.py): bands, groups and the deprivation decile of where they live, under the person's
    pseudonym; no name, no date of birth, no postcode. Without their consent (`consented` false: never given, or
    withdrawn) every answer is null, and metrics forgets what it had."""

    community: str
    person_ref: str
    consented: bool
    age_band: str | None = rule(validate.OneOf((*equity.AGE_BANDS, equity.PREFER_NOT)), default=None)
    sex: str | None = rule(validate.OneOf((*equity.SEXES, equity.PREFER_NOT)), default=None)
    ethnic_group: str | None = rule(validate.OneOf((*equity.ETHNIC_GROUPS, equity.PREFER_NOT)), default=None)
    first_language: str | None = rule(validate.OneOf((*equity.FIRST_LANGUAGES, equity.PREFER_NOT)), default=None)
    disability: str | None = rule(validate.OneOf((*equity.DISABILITY, equity.PREFER_NOT)), default=None)
    deprivation_decile: str | None = rule(validate.OneOf((*equity.DECILES, equity.UNKNOWN)), default=None)


@contract("person.death_shared", 1, example={
    "community": "fylde-coast", "request_ids": [REQUEST], "first_name": "Margaret"})
class PersonDeathShared(EventPayload):
    """What the volunteers who were matched with a person who died may be told: their first name. It carries
    personal data, so it goes to notify alone, which cancels every SMS still waiting about the person's requests
    (every request of theirs, open or not) and texts each volunteer who had one of their tasks."""

    community: str
    request_ids: list[uuid.UUID]
    first_name: str | None = None


@contract("token.revoked", 1, example={"jti": "3f2a9c1d5e7b4a608c9d0e1f2a3b4c5d", "subject_digest": None,
                                       "issued_before": None})
class TokenRevoked(EventPayload):
    """An API token no longer lets anyone in: one token by its id (`jti`), or every token of one holder issued before
    `issued_before`. The holder is named only by a keyed digest of their subject (shared/revocation.py), never by
    their email address. Every service keeps it and refuses the token with 401."""

    jti: str | None = rule(validate.Regexp(r"^[0-9a-f]{32}$"), default=None)
    subject_digest: str | None = rule(validate.Regexp(r"^[0-9a-f]{64}$"), default=None)
    issued_before: datetime | None = None


@contract("person.erased", 1, example={"community": "fylde-coast", "request_ids": [REQUEST]})
class PersonErased(EventPayload):
    """A person's details were erased from intake at their request (`ccs person erase`): each service that holds
    anything of theirs about these requests removes it too (notify the texts about them, matching its pseudonymous
    link between them). Carries no personal data: the requests by id alone."""

    community: str
    request_ids: list[uuid.UUID]


@contract("organisation.changed", 1, example={
    "organisation_id": "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "community": "fylde-coast", "name": "Fylde Coast PCN",
    "type": "pcn", "adopted_on": "2026-03-01", "merged_into": None})
class OrganisationChanged(EventPayload):
    """An organisation in a community's register as it now is: added, changed, or merged into another (a duplicate
    an administrator found: `merged_into` names the one it is now part of, and its name is then an alias of that
    one). Metrics counts partnerships by organisation and type, and the providers that adopted a compassionate
    communities approach. An organisation is not a person: its name may travel."""

    organisation_id: uuid.UUID
    community: str
    name: str
    type: str = rule(validate.OneOf(sorted(ORGANISATION_TYPES)))
    adopted_on: date | None = None
    merged_into: uuid.UUID | None = None


CONCERN = "5d4c3b2a-1f0e-5d9c-8b7a-6f5e4d3c2b1a"


@contract("concern.opened", 1, example={"concern_id": CONCERN, "community": "fylde-coast",
                                        "support_type": "shopping", "occurred_at": "2026-11-25T17:40:01+00:00"})
class ConcernOpened(EventPayload):
    """A volunteer's concern was opened in the safeguarding log, for counting: no words, no person, no volunteer."""

    concern_id: uuid.UUID
    community: str
    support_type: str = rule(validate.OneOf(sorted(KINDS)))
    occurred_at: datetime


@contract("concern.closed", 1, example={"concern_id": CONCERN, "community": "fylde-coast",
                                        "support_type": "shopping", "occurred_at": "2026-11-26T10:05:00+00:00",
                                        "action": "referred_gp"})
class ConcernClosed(ConcernOpened):
    """A coordinator closed a concern with the action taken (never their note), for counting."""

    action: str = rule(validate.OneOf(sorted(CONCERN_ACTIONS)))


SURVEY = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
RESPONDENTS = ("carer", "service_user", "bereaved")


@contract("survey.question", 1, example={
    "survey_id": SURVEY, "request_id": REQUEST, "question_id": "ons4_life_satisfaction", "phone": "+447700900123",
    "language": "en",
    "community": "fylde-coast", "text": "Overall, how satisfied are you with your life nowadays? Reply 0 (not at all) "
    "to 10 (completely).", "number": 1, "of": 4, "reminder_hours": 48})
class SurveyQuestion(EventPayload):
    """One question of a survey by SMS for notify to send to the person (under their `sms_contact` consent, which
    intake checked, and never to someone recorded as died). Notify holds it for the quiet hours, routes the reply
    from that phone to intake as `survey.answered`, and sends one reminder of the survey's first question after
    `reminder_hours` (0: none). It carries a phone number, so it goes to notify alone."""

    survey_id: uuid.UUID
    request_id: uuid.UUID  # the request whose help it follows: a death recorded cancels a question still waiting
    question_id: str
    phone: str
    text: str
    community: str
    language: str | None = None
    number: int = 1
    of: int = 1
    reminder_hours: int = 0


@contract("survey.answer_recorded", 1, example={
    "community": "fylde-coast", "respondent": "carer", "question_id": "ons4_life_satisfaction", "answer": 7,
    "answered_at": "2026-12-01T10:15:00+00:00", "completes": False})
class SurveyAnswerRecorded(EventPayload):
    """One answer to a survey question, for counting: the community, who answered (a carer, a service user, a bereaved
    person), the question and the answer (0 to 10); `completes` when it was the survey's last. No person, no phone,
    no survey: answers cannot be linked to each other or to anyone."""

    community: str
    respondent: str = rule(validate.OneOf(RESPONDENTS))
    question_id: str = rule(validate.Length(1, 64))
    answer: int = rule(validate.Range(0, 10))
    answered_at: datetime
    completes: bool = False
