"""The events matching publishes: offers and their answers, how each request ended, and volunteers' changes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from marshmallow import validate

from shared.contracts import EventPayload, contract, part, rule
from shared.contracts.intake import OFFER, REQUEST, When
from shared.taxonomy import ACCEPTED_BY, BEFRIENDING_END_REASONS, KINDS, RHYTHMS, UNRESOLVED_BECAUSE, \
    URGENCIES, VIEW_ANSWERS, VOLUNTEER_STATUSES, WELLBEING_SCORES, WITHDRAWN_BECAUSE

VOLUNTEER = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
PHONE = "+447700900123"


@dataclass(frozen=True, kw_only=True)
class AboutRequest(EventPayload):
    """An event matching publishes about one request (offers, their answers, how the request ended).

    `sequence` numbers a request's events 1, 2, 3 ... in the order matching published them (it counts them on the
    request's row, under the request's lock), so a consumer can tell which is the latest whatever order they
    arrive in. It defaults to 0 so that an event published before the field existed still loads: 0 means "not
    numbered", older than every numbered event."""

    sequence: int = rule(validate.Range(min=0), default=0,
                         description="Per request, strictly increasing in the order matching published; 0: not "
                                     "numbered (published before sequences existed).")


@contract("offer.made", 1, example={
    "offer_id": OFFER, "request_id": REQUEST, "volunteer_id": VOLUNTEER, "phone": PHONE, "code": "4821",
    "support_type": "shopping", "area": "FY1", "urgency": "routine", "community": "fylde-coast", "round": 1,
    "occurrence": 1, "occurrences": 1, "window_start": None, "window_end": None,
    "window_days": ["mon", "tue", "wed", "thu", "fri"], "window_part": "afternoon", "language": "en"})
class OfferMade(When, AboutRequest):
    """A volunteer is asked: only the kind of help, the postcode district, the window and a reference."""

    offer_id: uuid.UUID
    request_id: uuid.UUID
    volunteer_id: uuid.UUID
    phone: str
    code: str = rule(validate.Regexp(r"^\d{4}$"))
    support_type: str = rule(validate.OneOf(sorted(KINDS)))
    community: str
    area: str = ""
    urgency: str = rule(validate.OneOf(URGENCIES), default="routine")
    round: int = 1
    occurrence: int = 1
    occurrences: int = 1
    language: str | None = None  # the volunteer's first language, for the SMS
    rhythm: str | None = rule(validate.OneOf(RHYTHMS), default=None,
                              description="An ongoing befriending match, visited at this rhythm (else a task).")


@contract("offer.accepted", 1, example={
    "offer_id": OFFER, "request_id": REQUEST, "volunteer_id": VOLUNTEER, "phone": PHONE, "code": "4821",
    "by": "volunteer", "community": "fylde-coast", "language": "en", "window_start": "2026-11-25T14:00:00+00:00",
    "window_end": "2026-11-25T16:00:00+00:00", "window_days": None, "window_part": None})
class OfferAccepted(When, AboutRequest):
    """A volunteer has the task (by YES, or a coordinator's assignment); the window is for reminders."""

    offer_id: uuid.UUID
    request_id: uuid.UUID
    volunteer_id: uuid.UUID
    phone: str
    code: str
    community: str
    by: str = rule(validate.OneOf(ACCEPTED_BY), default="volunteer")
    language: str | None = None
    occurrence: int = rule(validate.Range(min=1), default=1,
                           description="Which occurrence of a recurring request the task is (1: the first or only).")


@contract("offer.withdrawn", 1, example={
    "offer_id": OFFER, "request_id": REQUEST, "volunteer_id": VOLUNTEER, "phone": PHONE, "code": "4821",
    "reason": "taken", "community": "fylde-coast", "language": "en"})
class OfferWithdrawn(AboutRequest):
    """An offer taken back: someone else said yes first, the request was cancelled (an accepted one too), or the
    volunteer opted out of SMS."""

    offer_id: uuid.UUID
    request_id: uuid.UUID
    volunteer_id: uuid.UUID
    phone: str
    code: str
    reason: str = rule(validate.OneOf(WITHDRAWN_BECAUSE))
    community: str  # whose quiet hours and sender number the "it has been taken" text keeps to
    language: str | None = None


@contract("offer.answer_due", 1, example={"request_id": REQUEST, "offer_id": OFFER,
                                          "due_at": "2026-11-25T10:30:00+00:00"})
class OfferAnswerDue(EventPayload):
    """An offer's SMS went: the volunteer has until `due_at` to answer before the offer times out and the next
    volunteers are asked (so the board can say a request's offers are about to time out)."""

    request_id: uuid.UUID
    offer_id: uuid.UUID
    due_at: datetime


@contract("reply.unresolved", 1, example={
    "phone": PHONE, "reason": "several_open", "keyword": "YES", "code": None, "codes": ["4821", "5532"],
    "language": "en"})
class ReplyUnresolved(EventPayload):
    """A volunteer's SMS that matching could not act on, so notify can say why: an unknown number, a bare YES
    with several offers open, a code that is not theirs or no longer open."""

    phone: str
    reason: str = rule(validate.OneOf(UNRESOLVED_BECAUSE))
    keyword: str | None = None
    code: str | None = None
    codes: list[str] = rule(default_factory=list)
    language: str | None = None


@part
class TaskLine(When):
    """One of a volunteer's tasks as an SMS lists it to them: the code, the kind of help, the postcode district
    and the window; never the person."""

    code: str = rule(validate.Regexp(r"^\d{4}$"))
    support_type: str = rule(validate.OneOf(sorted(KINDS)))
    area: str = ""


@contract("reply.answered", 1, example={
    "phone": PHONE, "message_sid": "SM0123456789abcdef0123456789abcdef", "answer": "tasks", "community": "fylde-coast",
    "language": "en", "tasks": [{"code": "4821", "support_type": "shopping", "area": "FY1",
                                 "window_start": "2026-12-09T14:00:00+00:00", "window_end": "2026-12-09T16:00:00+00:00",
                                 "window_days": None, "window_part": None}],
    "away_from": None, "away_until": None, "year": None, "year_hours": None, "year_tasks": None, "link": None})
class ReplyAnswered(EventPayload):
    """A volunteer asked about themselves by SMS (MY, AWAY, HOURS; `message_sid` is their text's), and this is
    matching's answer for notify to text back: their upcoming tasks (`tasks`), the time away it recorded
    (`away`), that it could not read the dates (`away_unclear`), or their hours this year (`hours`: `year_hours`
    over `year_tasks` tasks). Someone who texted JOIN is answered `join`, with the `link` to the community's page
    for applying."""

    phone: str
    message_sid: str
    answer: str = rule(validate.OneOf(VIEW_ANSWERS))
    community: str
    language: str | None = None
    tasks: list[TaskLine] = rule(default_factory=list)
    away_from: date | None = None
    away_until: date | None = None
    year: int | None = None
    year_hours: float | None = None  # not a task's hours: what the volunteer gave in `year`, over `year_tasks`
    year_tasks: int | None = None
    link: str | None = None  # join: the community's page for applying


@contract("concern.raised", 1, example={
    "concern_id": "5d4c3b2a-1f0e-5d9c-8b7a-6f5e4d3c2b1a", "request_id": REQUEST, "community": "fylde-coast",
    "volunteer_id": VOLUNTEER, "text": "She seemed confused and had not eaten.",
    "raised_at": "2026-11-25T17:40:00+00:00"})
class ConcernRaised(EventPayload):
    """A volunteer texted a worry about the person whose task they hold (CONCERN): intake opens it in the
    safeguarding log. `concern_id` is made from the SMS's sid, so a redelivered text opens nothing twice.

    It carries the volunteer's words, so intake alone may subscribe to it (shared/topology.py PERSONAL keeps it from
    metrics, and no other consumer is bound to it): the concern's text goes no further than intake, whose own
    events about concerns (concern.opened, concern.closed) carry none."""

    concern_id: uuid.UUID
    request_id: uuid.UUID
    community: str
    volunteer_id: uuid.UUID
    text: str = rule(validate.Length(min=1, max=1600))
    raised_at: datetime


@contract("request.matched", 1, example={"request_id": REQUEST, "offer_id": OFFER, "volunteer_id": VOLUNTEER})
class RequestMatched(AboutRequest):
    """A volunteer has the request's task (of its current occurrence: a recurring request is matched once per
    occurrence, and again when a volunteer gives the task back)."""

    request_id: uuid.UUID
    offer_id: uuid.UUID
    volunteer_id: uuid.UUID
    occurrence: int = rule(validate.Range(min=1), default=1,
                           description="Which occurrence of a recurring request the task is (1: the first or only).")


@contract("request.unmatched", 1, example={"request_id": REQUEST,
                                           "reason": "no active volunteer with that skill in range"})
class RequestUnmatched(AboutRequest):
    """Nobody could be found; the reason is for the coordinator."""

    request_id: uuid.UUID
    reason: str


@contract("task.completed", 1, example={
    "request_id": REQUEST, "offer_id": OFFER, "volunteer_id": VOLUNTEER, "community": "fylde-coast",
    "support_type": "shopping", "hours": 1.5, "occurrence": 1, "occurrences": 6})
class TaskCompleted(AboutRequest):
    """The volunteer reported the task (one occurrence of a recurring request) done."""

    request_id: uuid.UUID
    offer_id: uuid.UUID
    volunteer_id: uuid.UUID
    community: str
    support_type: str = rule(validate.OneOf(sorted(KINDS)))
    hours: float | None = None
    occurrence: int = 1
    occurrences: int = 1


@contract("task.given_back", 1, example={"request_id": REQUEST, "offer_id": OFFER, "volunteer_id": VOLUNTEER})
class TaskGivenBack(AboutRequest):
    """The volunteer who accepted cancelled; the request is being matched again."""

    request_id: uuid.UUID
    offer_id: uuid.UUID
    volunteer_id: uuid.UUID


@contract("task.volunteer_opted_out", 1, example={
    "request_id": REQUEST, "offer_id": OFFER, "volunteer_id": VOLUNTEER, "code": "4821", "community": "fylde-coast"})
class TaskVolunteerOptedOut(AboutRequest):
    """The volunteer who has a request's task opted out of SMS (STOP, or Twilio's error 21610): the task stays
    theirs, but no reminder or detail will reach them by text, so the coordinator is told to call them."""

    request_id: uuid.UUID
    offer_id: uuid.UUID
    volunteer_id: uuid.UUID
    code: str
    community: str


@contract("volunteer.check_expiring", 1, example={
    "volunteer_id": VOLUNTEER, "community": "fylde-coast", "phone": PHONE, "check": "criminal_record",
    "expires_on": "2026-12-20", "check_name": "Criminal record check (DBS, or vulnerable sector check in Ontario)"})
class CheckExpiring(EventPayload):
    """A volunteer's check or training runs out soon: they and the coordinator are told once. `check` is the
    community's key for it (each community defines its own checks), `check_name` its name there (empty in events
    from before communities named their checks: the taxonomy's name then)."""

    volunteer_id: uuid.UUID
    community: str
    phone: str
    check: str = rule(validate.Regexp(r"^[a-z][a-z0-9_]{1,31}$"))
    expires_on: date
    check_name: str = rule(validate.Length(max=200), default="")


@contract("volunteer.registered", 1, example={"volunteer_id": VOLUNTEER, "community": "fylde-coast",
                                              "status": "active"})
class VolunteerRegistered(EventPayload):
    """A volunteer joined (registered by a coordinator, or imported). No name or phone: counts only."""

    volunteer_id: uuid.UUID
    community: str
    status: str = rule(validate.OneOf(VOLUNTEER_STATUSES))


@contract("volunteer.status_changed", 1, example={"volunteer_id": VOLUNTEER, "community": "fylde-coast",
                                                  "status": "paused", "previous": "active"})
class VolunteerStatusChanged(VolunteerRegistered):
    """A volunteer paused (by SMS or a coordinator), came back, or left."""

    previous: str = rule(validate.OneOf(VOLUNTEER_STATUSES))


MATCH = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"


@contract("befriending.started", 1, example={
    "match_id": MATCH, "request_id": REQUEST, "offer_id": OFFER, "volunteer_id": VOLUNTEER,
    "community": "fylde-coast", "support_type": "home_visit", "rhythm": "weekly", "started_on": "2026-12-07",
    "review_on": "2027-03-07"})
class BefriendingStarted(AboutRequest):
    """A volunteer took a befriending request: a match that lasts, visited at its rhythm, until it is ended."""

    match_id: uuid.UUID
    request_id: uuid.UUID
    offer_id: uuid.UUID
    volunteer_id: uuid.UUID
    community: str
    support_type: str = rule(validate.OneOf(sorted(KINDS)))
    rhythm: str = rule(validate.OneOf(RHYTHMS))
    started_on: date
    review_on: date


@contract("befriending.visit_logged", 1, example={
    "match_id": MATCH, "request_id": REQUEST, "volunteer_id": VOLUNTEER, "community": "fylde-coast",
    "support_type": "home_visit", "visited_on": "2026-12-14", "hours": 1.5, "visit": 1})
class BefriendingVisitLogged(EventPayload):
    """The volunteer of a befriending match texted DONE: one visit (its hours, and which visit it was); the match
    goes on."""

    match_id: uuid.UUID
    request_id: uuid.UUID
    volunteer_id: uuid.UUID
    community: str
    support_type: str = rule(validate.OneOf(sorted(KINDS)))
    visited_on: date
    hours: float | None = None
    visit: int = rule(validate.Range(min=1), default=1)


@contract("befriending.visit_overdue", 1, example={
    "match_id": MATCH, "request_id": REQUEST, "volunteer_id": VOLUNTEER, "community": "fylde-coast",
    "phone": PHONE, "code": "4821", "language": "en", "rhythm": "weekly", "since": "2026-12-14",
    "overdue_on": "2026-12-24"})
class BefriendingVisitOverdue(EventPayload):
    """No visit of a befriending match was logged for its rhythm and three days more since `since` (the last
    visit, or the start): its volunteer is reminded once, gently, and the coordinator sees it. No names."""

    match_id: uuid.UUID
    request_id: uuid.UUID
    volunteer_id: uuid.UUID
    community: str
    phone: str
    code: str
    language: str | None = None
    rhythm: str = rule(validate.OneOf(RHYTHMS))
    since: date
    overdue_on: date


@contract("befriending.ended", 1, example={
    "match_id": MATCH, "request_id": REQUEST, "offer_id": OFFER, "volunteer_id": VOLUNTEER,
    "community": "fylde-coast", "support_type": "home_visit", "reason": "person_moved", "visits": 11, "weeks": 13,
    "phone": PHONE, "code": "4821", "language": "en"})
class BefriendingEnded(AboutRequest):
    """A befriending match ended, with the reason: the request is completed and its volunteer thanked. How many
    visits and weeks it lasted, and nothing that names the person."""

    match_id: uuid.UUID
    request_id: uuid.UUID
    offer_id: uuid.UUID
    volunteer_id: uuid.UUID
    community: str
    support_type: str = rule(validate.OneOf(sorted(KINDS)))
    reason: str = rule(validate.OneOf(sorted(BEFRIENDING_END_REASONS)))
    visits: int = rule(validate.Range(min=0))
    weeks: int = rule(validate.Range(min=0))
    phone: str
    code: str
    language: str | None = None


@contract("applicant.applied", 1, example={"applicant_id": VOLUNTEER, "community": "fylde-coast", "phone": PHONE,
                                           "language": "en"})
class ApplicantApplied(EventPayload):
    """Someone applied to volunteer on the community's public page: notify texts them an acknowledgement. No name:
    the phone to text, and the language to text in."""

    applicant_id: uuid.UUID
    community: str
    phone: str
    language: str | None = None


@contract("applicants.waiting", 1, example={"community": "fylde-coast", "waiting_too_long": 2, "wait_days": 14,
                                            "as_of": "2026-12-07T09:00:00+00:00"})
class ApplicantsWaiting(EventPayload):
    """How many of a community's applicants have waited at their stage longer than it allows (`wait_days`), as of a
    time: sent by matching's timers when the number changes, so the coordinators' board reminds them. A count: no
    one is named."""

    community: str
    waiting_too_long: int = rule(validate.Range(min=0))
    wait_days: int = rule(validate.Range(min=1))
    as_of: datetime


# --- training sessions --------------------------------------------------------------------------------------------

SESSION = "3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a0f9"
INVITATION = "6f5e4d3c-2b1a-4f0e-9d8c-7b6a5f4e3d2c"


@contract("training.invited", 1, example={
    "invitation_id": INVITATION, "session_id": SESSION, "community": "fylde-coast", "phone": PHONE, "language": "en",
    "code": "5172", "topic": "Bereavement support", "starts_at": "2026-12-14T10:00:00+00:00",
    "where": "Blackpool Library"})
class TrainingInvited(EventPayload):
    """Someone is invited to a training session: notify texts them the topic, day and place with the invitation's
    code to answer YES or NO. Nothing else about them (shared/topology.py PERSONAL keeps it from metrics)."""

    invitation_id: uuid.UUID
    session_id: uuid.UUID
    community: str
    phone: str
    language: str | None = None
    code: str = rule(validate.Regexp(r"^\d{4}$"))
    topic: str
    starts_at: datetime
    where: str = rule(description="The place, or 'online'.")


@contract("training.answered", 1, example={
    "invitation_id": INVITATION, "session_id": SESSION, "community": "fylde-coast", "phone": PHONE, "language": "en",
    "message_sid": "SM0123456789abcdef0123456789abcdef", "answer": "accepted", "code": "5172",
    "topic": "Bereavement support", "starts_at": "2026-12-14T10:00:00+00:00", "where": "Blackpool Library"})
class TrainingAnswered(EventPayload):
    """A YES or NO to an invitation (or a YES signing up to a public session) was taken: notify texts back that
    they are booked (`accepted`), on the waiting list as it is full (`full`), or that their NO is noted
    (`declined`), once per text (`message_sid`)."""

    invitation_id: uuid.UUID
    session_id: uuid.UUID
    community: str
    phone: str
    language: str | None = None
    message_sid: str
    answer: str = rule(validate.OneOf(("accepted", "full", "declined")))
    code: str = rule(validate.Regexp(r"^\d{4}$"))
    topic: str
    starts_at: datetime
    where: str


@contract("training.attended", 1, example={
    "invitation_id": INVITATION, "session_id": SESSION, "community": "fylde-coast", "public": "future_life_planning",
    "attendee": "b1946ac92492d2347c6235b4d2611184a1f3c5e7d9b1a3c5e7f9a1b3c5d7e9f1", "attended_on": "2026-12-14",
    "granted": None})
class TrainingAttended(EventPayload):
    """Someone attended a session, as a coordinator recorded: metrics counts people accessing education by
    distinct `attendee` (a keyed digest of their phone, never the phone: the same person at two sessions is one
    person). `public` is the kind of public session (none: volunteer training); `granted` the check it gave."""

    invitation_id: uuid.UUID
    session_id: uuid.UUID
    community: str
    public: str | None = None
    attendee: str = rule(validate.Length(equal=64))
    attended_on: date
    granted: str | None = rule(validate.Regexp(r"^[a-z][a-z0-9_]{1,31}$"), default=None)  # a community's check key


CHECK_IN = "5c4b3a2d-1e0f-4a9b-8c7d-6e5f4a3b2c1e"


@contract("wellbeing.prompted", 1, example={"checkin_id": CHECK_IN, "volunteer_id": VOLUNTEER,
                                            "community": "fylde-coast", "phone": PHONE, "language": "en",
                                            "due_on": "2026-12-07"})
class WellbeingPrompted(EventPayload):
    """An active volunteer's wellbeing check-in is due (once per volunteer per due date): notify asks them by SMS how
    they are finding volunteering (1 to 5, or TALK); metrics counts it. The phone is for notify; nothing else names
    them."""

    checkin_id: uuid.UUID
    volunteer_id: uuid.UUID
    community: str
    phone: str
    language: str | None = None
    due_on: date


@contract("wellbeing.answered", 1, example={"checkin_id": CHECK_IN, "community": "fylde-coast", "score": 4,
                                            "talk": False, "low": False})
class WellbeingAnswered(EventPayload):
    """A volunteer answered their check-in: a score (1 to 5), or asked to talk (TALK, `score` None), once per
    check-in. No volunteer id or phone: metrics counts the answers and their scores, never who gave them. `low`: the
    score was at or below the community's `wellbeing_low_score` (a coordinator was asked to call)."""

    checkin_id: uuid.UUID
    community: str
    score: int | None = rule(validate.OneOf(WELLBEING_SCORES), default=None)
    talk: bool = False
    low: bool = False
