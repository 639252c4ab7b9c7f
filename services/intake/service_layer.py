"""Intake's use cases: each takes a unit of work, the actor it acts for and the settings it needs, and returns a
result or raises a domain error (domain.IntakeError). None reads Flask's request or the environment."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from services.intake.directory import DirectoryEntry, Sheet, nearest
from services.intake.surveys import NOT_SENT, ONS4, CommunityQuestion, Survey, may_text
from services.intake.domain import (MATCHING_FIELDS, SIGN_IN_WINDOW, AuditEntry, CarerLink, Concern, FailedSignIn,
                                    NotFound, NotLinkable, NotMergeable, Organisation, OrganisationExists, Passwords,
                                    Person, SameOrganisation, SupportRequest, TooManySignIns, User, UserExists,
                                    bereavement_offer, best_match, check_password, columns_from, died_reason,
                                    locked_for, person_ref, revocation)
from shared.auth import SYSTEM, Actor
from shared.idempotency import Created, Idempotency, IdempotencyKey, IdempotencyKeyInUse, keep, replay
from shared.clock import utcnow
from shared.communities import get as community
from shared.taxonomy import CONCERN_ACTIONS
from shared.config import Settings
from shared.contracts import Event
from shared.contracts.intake import (ConcernClosed, ConcernOpened, PersonDeathShared, PersonDied, PersonErased,
                                    RequestCancelled, RequestSignposted, RequestSubmitted, RequestUpdated,
                                    SurveyAnswerRecorded, TokenRevoked)


@dataclass
class Page:
    """Which rows of a list to give: from `first_item`, at most `page_size`; `item_count` is set to the total.
    (flask-smorest's pagination parameters have the same shape.)"""

    first_item: int = 0
    page_size: int = 200
    item_count: int | None = None


# --- requests for support ---------------------------------------------------------------------------------------------


def submit_request(uow, actor: Actor, data: dict[str, Any], settings: Settings, *, source: str = "coordinator",
                   idempotency: Idempotency | None = None,
                   render: Callable[[SupportRequest], dict[str, Any]] | None = None,
                   document: dict[str, Any] | None = None, status_code: int = 201,
                   signpost_to: uuid.UUID | None = None) -> Created:
    """Store a new request (a coordinator's, a referral, or a FHIR ServiceRequest as `document`) with its
    consents, timeline, audit entry and `request.submitted` (not yet for one a coordinator must check first: see
    SupportRequest.held). With `signpost_to`, a directory entry of the actor's community, it is closed as it is
    made, signposted to that entry, in the same transaction (NotFound, and nothing written, for any other entry):
    matching never hears of it (see closed_before_matching). With an Idempotency-Key, once: a retry with the same
    body gets the first answer again.
    `render` makes the answer kept for the key (with `status_code`), in the same transaction.

    Everything is written at the commit, the key's answer too (one statement on PostgreSQL): a key taken already
    fails that write and nothing is kept, and then the first answer is given (IdempotencyKeyReused if it was made
    with another body; IdempotencyKeyInUse if the create that took it is gone without a trace)."""
    try:
        with uow:
            columns = columns_from(data)
            columns.setdefault("source", source)
            request = SupportRequest.submit(actor, columns, data["consent"], document)  # every default filled in
            entry = None if signpost_to is None else _entry_to_signpost(uow, actor, request, signpost_to)
            if entry is not None:  # closed as it is made (before it is added: its rows are taken as they are)
                request.signpost(entry.id, entry.name, actor.subject)
            _find_person(uow, request)
            if data.get("cares_for"):
                _cares_for(uow, actor, request, data["cares_for"])
            uow.requests.add(request)
            uow.audit.add(AuditEntry.of(actor, "create", request.id, columns))
            if entry is not None:  # matching is never asked
                _signposted(uow, actor, request, entry, settings, told_matching=False)
            elif not request.held:
                uow.publish(request.for_matching(RequestSubmitted, settings.secret_key),
                            correlation_id=str(request.id))
            created = Created(made=request, body=render(request) if render else {}, status_code=status_code)
            if idempotency is not None:
                uow.answers.add(IdempotencyKey.remember(actor, idempotency, created.status_code, created.body))
            uow.commit()
        return created
    except IdempotencyKeyInUse:
        with uow:
            earlier = uow.answers.get(actor, idempotency.key)
        if earlier is None:
            raise
        earlier.check(idempotency)
        return Created(made=None, body=earlier.response, status_code=earlier.status_code, replayed=True)


def _find_person(uow, request: SupportRequest) -> None:
    """Link a new request to its person's record: the community's record that is surely theirs (the same phone
    number and name), else a new record, with one that may be theirs (the same phone, or name and date of birth)
    offered to a coordinator to confirm, never merged silently."""
    found, sure = best_match(uow.people.like(request.community, request.person_phone, request.person_name), request)
    if found is not None and found.died_on is not None:  # nothing is offered about someone who died
        why = (f"{found.name}, who may be this person, is recorded as having died on {found.died_on:%d %B %Y}: "
               "check with whoever asked before any volunteer is asked.")
        request.to_check.append({"field": "person.died", "why": why, "value": None})
        request.note("to check", why, request.created_by)
        request.note("waiting", "Not offered to volunteers until a coordinator has checked it", request.created_by)
    if sure:
        request.person_id = found.id
        found.heard_of(request)
        return
    person = Person.of(request)
    uow.people.add(person)
    request.person_id = person.id
    if found is not None:
        request.maybe_person_id = found.id
        request.note("same person?", f"May be someone already known ({' and '.join(found.likeness(request))}): "
                                     "a coordinator is asked to confirm", request.created_by)


def _cares_for(uow, actor: Actor, request: SupportRequest, person_id: uuid.UUID) -> None:
    """A request for a carer names the person they care for: it is the carer's (is_carer), and the carer's record is
    linked to theirs. NotLinkable for a record not of the request's community."""
    cared = uow.people.get(person_id, actor)
    while cared is not None and cared.merged_into is not None:
        cared = uow.people.get(cared.merged_into, actor)
    if cared is None or cared.community != request.community:
        raise NotLinkable("No such record in this community.", field="cares_for")
    if cared.id == request.person_id:
        raise NotLinkable("A person cannot be their own carer.", field="cares_for")
    request.is_carer, request.cares_for_id = True, cared.id
    if uow.people.link(CarerLink(community=request.community, person_id=cared.id, carer_id=request.person_id,
                                 created_by=actor.subject)):
        uow.audit.add(AuditEntry.of(actor, "link carer", request.id, ["carer_id"], person_id=cared.id))


def update_request(uow, actor: Actor, request_id: uuid.UUID, data: dict[str, Any],
                   settings: Settings) -> SupportRequest:
    """Change an open request; matching hears (`request.updated`) only of changes that matter to it, and of a
    request held for a coordinator's check (SupportRequest.held) only once it is settled, as `request.submitted`."""
    with uow:
        request = _get(uow, request_id, actor)
        was_held = request.held
        changed = request.edit(columns_from(data), data.get("consent"), actor.subject)
        if changed:
            uow.audit.add(AuditEntry.of(actor, "update", request.id, changed))
        if was_held and not request.held:
            request.note("released", "Checked: volunteers can now be asked", actor.subject)
            uow.publish(request.for_matching(RequestSubmitted, settings.secret_key), correlation_id=str(request.id))
        elif not request.held and any(name in MATCHING_FIELDS for name in changed):
            uow.publish(request.for_matching(RequestUpdated, settings.secret_key), correlation_id=str(request.id))
        uow.commit()
    return request


def cancel_request(uow, actor: Actor, request_id: uuid.UUID, reason: str, settings: Settings) -> SupportRequest:
    """Cancel an open request and tell matching (`request.cancelled`); NotOpen if it had ended. One still held
    (never told to matching) is counted as received too (closed_before_matching)."""
    with uow:
        request = _get(uow, request_id, actor)
        held = request.held
        request.cancel(reason, actor.subject)
        uow.audit.add(AuditEntry.of(actor, "cancel", request.id, ["status"]))
        if held:
            closed_before_matching(uow, request, settings)
        uow.publish(RequestCancelled(request_id=request.id, reason=reason), correlation_id=str(request.id))
        uow.commit()
    return request


def get_request(uow, actor: Actor, request_id: uuid.UUID) -> SupportRequest:
    """One request in the actor's communities, with its consents and timeline; the view is audited."""
    with uow:
        request = _get(uow, request_id, actor)
        uow.audit.add(AuditEntry.of(actor, "view", request.id))
        uow.commit()
    return request


def list_requests(uow, actor: Actor, filters: dict[str, Any], page, search: str = "",
                  now: datetime | None = None) -> list[SupportRequest]:
    """One page of the requests in the actor's communities, those needing a coordinator at `now` first, then
    unmatched and urgent (`search`: part of a name or phone number); the listing is audited. `page` has
    `first_item` and `page_size`, and is given `item_count`."""
    with uow:
        rows = uow.requests.list(actor, filters, page, search, now or utcnow())
        uow.audit.add(AuditEntry.of(actor, "list", None, ["person_name", "area"]))
        uow.commit()
    return rows


def latest_change(uow, actor: Actor, now: datetime | None = None) -> str:
    """A mark that moves whenever the board would change: when a request in the actor's communities last changed,
    how many have offers about to time out, and how many applicants wait too long (no personal data: not
    audited)."""
    with uow:
        latest, due = uow.requests.latest_change(actor, now or utcnow())
        waiting = sum(count for _, count, _ in uow.applicants_waiting.of(actor))
    return f"{latest.isoformat() if latest else ''}/{due}/{waiting}"


def _get(uow, request_id: uuid.UUID, actor: Actor) -> SupportRequest:
    """A request within the actor's reach, or NotFound."""
    request = uow.requests.get(request_id, actor)
    if request is None:
        raise NotFound("No such request.")
    return request


# --- people, across their requests ------------------------------------------------------------------------------------


@dataclass
class PersonRecord:
    """A person's record with what their page shows: their requests (newest first), requests whose coordinator is
    asked whether they are this person, and other records that may be theirs (to merge)."""

    person: Person
    requests: list[SupportRequest]
    asking: list[SupportRequest]
    others: list[Person]
    carers: list[Person]
    cares_for: list[Person]


def get_person(uow, actor: Actor, person_id: uuid.UUID) -> PersonRecord:
    """A person's record in the actor's communities, with their requests (a merged record: the one it was merged
    into); the view is audited. NotFound otherwise."""
    with uow:
        person = _person(uow, actor, person_id)
        found = PersonRecord(person, uow.people.requests_of(person.id), uow.people.offering(person.id),
                             uow.people.others(person), uow.people.carers_of(person.id),
                             uow.people.cared_for_by(person.id))
        uow.audit.add(AuditEntry.of(actor, "view person", None, person_id=person.id))
        uow.commit()
    return found


def person_of(uow, actor: Actor, person_id: uuid.UUID) -> Person:
    """A record in the actor's reach (followed to the one it was merged into), alone: for a form that names them."""
    with uow:
        person = _person(uow, actor, person_id)
        uow.commit()
    return person


def _person(uow, actor: Actor, person_id: uuid.UUID) -> Person:
    """A record in the actor's reach, followed to the one it was merged into; NotFound otherwise."""
    person = uow.people.get(person_id, actor)
    for _ in range(10):  # merges chain at most this deep in practice; a loop would be a bug, not a wait
        if person is None or person.merged_into is None:
            break
        person = uow.people.get(person.merged_into, actor)
    if person is None:
        raise NotFound("No such person.")
    return person


def merge_people(uow, actor: Actor, person_id: uuid.UUID, other_id: uuid.UUID) -> Person:
    """Merge another record of the community into this one: its requests move here, it points here from now on,
    and the audit log says who did it. NotFound for a record out of reach; NotMergeable for the same record."""
    with uow:
        person = _merge(uow, actor, person_id, other_id)
        uow.commit()
    return person


def _merge(uow, actor: Actor, person_id: uuid.UUID, other_id: uuid.UUID) -> Person:
    """The merge itself, in the caller's unit of work."""
    person, other = _person(uow, actor, person_id), uow.people.get(other_id, actor)
    if other is None or other.community != person.community:
        raise NotMergeable("No such record in this person's community.")
    person.merge(other)
    moved = uow.people.requests_of(other.id)
    for request in moved:
        request.person_id = person.id
        request.note("same person", "Found to be the same person as another record: merged into it", actor.subject)
        uow.audit.add(AuditEntry.of(actor, "merge", request.id, ["person_id"], person_id=person.id))
    for request in uow.people.offering(other.id) + uow.people.offering(person.id):
        request.maybe_person_id = None if request.person_id == person.id else person.id
    for request in uow.people.caring_for(other.id):
        request.cares_for_id = person.id
    uow.people.move_links(other, person)
    uow.audit.add(AuditEntry.of(actor, "merge", None, ["merged_into"], person_id=other.id))
    return person


def link_carer(uow, actor: Actor, person_id: uuid.UUID, carer_id: uuid.UUID) -> Person:
    """Record that another record of the community is one of this person's carers (audited); NotFound for a
    person out of reach, NotLinkable for a carer who is not of their community, or is them."""
    with uow:
        person = _person(uow, actor, person_id)
        carer = uow.people.get(carer_id, actor)
        if carer is None or carer.community != person.community or carer.merged_into is not None:
            raise NotLinkable("No such record in this person's community.")
        if uow.people.link(CarerLink(community=person.community, person_id=person.id, carer_id=carer.id,
                                     created_by=actor.subject)):
            uow.audit.add(AuditEntry.of(actor, "link carer", None, ["carer_id"], person_id=person.id))
        uow.commit()
    return person


def unlink_carer(uow, actor: Actor, person_id: uuid.UUID, carer_id: uuid.UUID) -> Person:
    """Forget that someone cares for this person (audited); NotFound for a person out of reach, or no such carer."""
    with uow:
        person = _person(uow, actor, person_id)
        if not uow.people.unlink(person.id, carer_id):
            raise NotFound("No such carer of this person.")
        uow.audit.add(AuditEntry.of(actor, "unlink carer", None, ["carer_id"], person_id=person.id))
        uow.commit()
    return person


@dataclass
class Death:
    """What recording a death did: the record, the requests it closed, and the bereavement requests made for
    their carers (waiting for the carers' consent)."""

    person: Person
    closed: list[SupportRequest]
    offered: list[SupportRequest]


def record_death(uow, actor: Actor, person_id: uuid.UUID, died_on, settings: Settings) -> Death:
    """Record that a person died, once (AlreadyDied after): every open request of theirs closes with that reason
    (their referrers hear it), matching stops them and withdraws their offers quietly (`person.died`, no name),
    notify cancels every SMS still waiting about any of their requests and tells the volunteers who helped them,
    by first name (`person.death_shared`, to notify alone), and each carer gets a bereavement support request,
    held until a coordinator records that they want it. NotFound for a record out of reach."""
    with uow:
        person = _person(uow, actor, person_id)
        person.record_death(died_on)
        reason = died_reason(died_on)
        theirs = uow.people.requests_of(person.id)
        closed, stopped = [], []  # every open request; those matching has, to stop
        for request in theirs:
            if request.is_open:
                held = request.held
                request.close_for_death(reason, actor.subject)
                uow.audit.add(AuditEntry.of(actor, "cancel", request.id, ["status"], person_id=person.id))
                if held:
                    closed_before_matching(uow, request, settings)
                else:
                    stopped.append(request.id)
                closed.append(request)
        offered = []
        for carer in uow.people.carers_of(person.id):
            latest = next(iter(uow.people.requests_of(carer.id)), None)
            if carer.died_on is None and latest is not None:
                offer = bereavement_offer(carer, latest, person, actor)
                uow.requests.add(offer)
                uow.audit.add(AuditEntry.of(actor, "create", offer.id, ["bereavement"], person_id=carer.id))
                offered.append(offer)
        uow.audit.add(AuditEntry.of(actor, "record death", None, ["died_on"], person_id=person.id))
        uow.publish(PersonDied(community=person.community, person_ref=person_ref(person.id, settings.secret_key),
                               request_ids=stopped, died_on=died_on, carers_offered=len(offered)),
                    correlation_id=str(person.id))
        uow.publish(PersonDeathShared(community=person.community, request_ids=[r.id for r in theirs],
                                      first_name=person.first_name), correlation_id=str(person.id))
        uow.commit()
    return Death(person, closed, offered)


def record_monitoring(uow, actor: Actor, person_id: uuid.UUID, consent: bool, answers: dict[str, Any],
                      settings: Settings) -> Person:
    """Record a person's consent to equity monitoring and their answers (audited, which answers changed but not
    what they are), and tell metrics the bands, groups and decile it counts by (`person.monitored`: nothing without
    consent, so a withdrawn consent makes metrics forget). NotFound for a record out of reach."""
    with uow:
        person = _person(uow, actor, person_id)
        country = community(person.community).country
        person.record_monitoring(consent, answers, country, actor.subject, utcnow())
        uow.audit.add(AuditEntry.of(actor, "record monitoring", None, ["monitoring"], person_id=person.id))
        uow.publish(person.monitored(country, settings.secret_key, utcnow().date()),
                    correlation_id=str(person.id))
        uow.commit()
    return person


def find_people(uow, actor: Actor, text: str) -> list[Person]:
    """Records of the actor's community whose name contains the text (for linking a carer)."""
    with uow:
        found = uow.people.named(actor.community, text)
        uow.commit()
    return found


def maybe_same(uow, actor: Actor, request: SupportRequest) -> tuple[Person, list[str]] | None:
    """The record a request may be for, and why, while a coordinator has not said (for its page)."""
    if request.maybe_person_id is None:
        return None
    with uow:
        person = uow.people.get(request.maybe_person_id, actor)
        uow.commit()
    return (person, person.likeness(request)) if person is not None else None


def same_person(uow, actor: Actor, request_id: uuid.UUID, same: bool) -> SupportRequest:
    """A coordinator says whether a request is for the person it may be for: the same (its record is merged into
    theirs) or not (it is not asked again). Nothing happens when nothing was asked."""
    with uow:
        request = _get(uow, request_id, actor)
        if request.maybe_person_id is not None:
            maybe, request.maybe_person_id = request.maybe_person_id, None
            if same:
                _merge(uow, actor, maybe, request.person_id)
            else:
                request.note("not the same person", "A coordinator said this is someone else", actor.subject)
                uow.audit.add(AuditEntry.of(actor, "not same person", request.id, ["maybe_person_id"],
                                            person_id=maybe))
        uow.commit()
    return request


# --- referrers and health systems -------------------------------------------------------------------------------------


def list_referrals(uow, actor: Actor, page) -> list[SupportRequest]:
    """One page of the referrals the actor made, newest first."""
    with uow:
        rows = uow.requests.list_referrals(actor, page)
        uow.commit()  # a read ends with a commit: a rollback would expire what it read
    return rows


def get_referral(uow, actor: Actor, request_id: uuid.UUID) -> SupportRequest:
    """A referral the actor made, as it stands now; NotFound otherwise."""
    with uow:
        request = uow.requests.get_referral(request_id, actor)
        uow.commit()
    if request is None:
        raise NotFound("No such referral.")
    return request


def get_service_request(uow, actor: Actor, request_id: uuid.UUID) -> SupportRequest:
    """A FHIR ServiceRequest the actor sent, as it stands now; NotFound otherwise (other referrals too)."""
    with uow:
        request = uow.requests.get_referral(request_id, actor)
        uow.commit()
    if request is None or request.source != "health_system":
        raise NotFound("No such ServiceRequest.")
    return request


# --- matching's events ------------------------------------------------------------------------------------------------


def follow_matching(uow, event: Event) -> None:
    """Note what matching did on the request's timeline and move its status on; after an acceptance, share the
    person's details with that volunteer. Runs in the handler's unit of work, which the caller commits."""
    request = uow.requests.get(event.payload.request_id, SYSTEM)
    if request is None:
        return
    request.follow(event.type, event.payload, event.occurred_at)
    if event.type == "offer.accepted":
        share_details(uow, request, event)
    elif event.type == "task.completed" and request.status == "completed":  # a recurring one: after its last
        survey_after_task(uow, request, event.occurred_at, utcnow())


def answers_due(uow, event: Event) -> None:
    """Matching says until when an offer sent may be answered: the board says when they are about to time out."""
    request = uow.requests.get(event.payload.request_id, SYSTEM)
    if request is not None:
        request.answers_due(event.payload.due_at)


def messages_waiting(uow, event: Event) -> None:
    """Notify says how many SMS about a request wait in its inbox: the board puts it first while any do."""
    request = uow.requests.get(event.payload.request_id, SYSTEM)
    if request is not None:
        request.messages_waiting(event.payload.waiting, event.payload.as_of)


def offer_texts_held(uow, event: Event) -> None:
    """An offer's SMS waits for the quiet hours to end: the timeline says until when (once for a batch)."""
    request = uow.requests.get(event.payload.request_id, SYSTEM)
    if request is not None:
        request.texts_held_until(event.payload.until, community(request.community).zone, event.occurred_at)


# --- the safeguarding log: volunteers' concerns ---------------------------------------------------------------------


def open_concern(uow, event: Event) -> None:
    """A volunteer's concern (concern.raised, from matching): opened in the safeguarding log on the request's record,
    once however often it is delivered; the request goes to the top of the board, and metrics hears a concern was
    opened (never its words). Runs in the handler's unit of work, which the caller commits."""
    raised = event.payload
    if uow.concerns.get(raised.concern_id, SYSTEM) is not None:
        return
    request = uow.requests.get(raised.request_id, SYSTEM)
    if request is None:  # never dropped: retried, then kept as a dead letter for an administrator
        raise NotFound(f"No request {raised.request_id} for concern {raised.concern_id}.")
    now = utcnow()
    uow.concerns.add(Concern(id=raised.concern_id, request_id=request.id, community=request.community,
                             volunteer_id=raised.volunteer_id, text=raised.text, raised_at=raised.raised_at,
                             opened_at=now))
    request.concerns_open += 1
    request.note("concern", "A volunteer raised a concern: see Concerns", "matching", at=raised.raised_at)
    uow.publish(ConcernOpened(concern_id=raised.concern_id, community=request.community,
                              support_type=request.support_type, occurred_at=now))


def applicants_waiting(uow, event: Event) -> None:
    """Keep how many of a community's applicants wait too long, as matching says (the board reminds the
    coordinators). Runs in the handler's unit of work, which the caller commits."""
    said = event.payload
    uow.applicants_waiting.record(said.community, said.waiting_too_long, said.wait_days, said.as_of)


def waiting_applicants(uow, actor: Actor) -> list[tuple[str, int, int]]:
    """(community, how many, the days allowed) for the actor's communities with applicants waiting too long."""
    with uow:
        return uow.applicants_waiting.of(actor)


def list_concerns(uow, actor: Actor, request_id: uuid.UUID | None = None,
                  page=None) -> list[tuple[Concern, SupportRequest]]:
    """The concerns in the actor's communities (about one request, if given), open first, newest first (one page
    of them, if `page` is given), each with its request; the listing is audited."""
    with uow:
        found = uow.concerns.list(actor, request_id, page)
        about = uow.requests.of_ids([concern.request_id for concern in found], SYSTEM)
        rows = [(concern, about[concern.request_id]) for concern in found]
        uow.audit.add(AuditEntry.of(actor, "list concerns", request_id))
        uow.commit()
    return rows


def _concern(uow, actor: Actor, concern_id: uuid.UUID) -> Concern:
    """A concern in the actor's communities, or NotFound."""
    concern = uow.concerns.get(concern_id, actor)
    if concern is None:
        raise NotFound("No such concern.")
    return concern


def get_concern(uow, actor: Actor, concern_id: uuid.UUID) -> tuple[Concern, SupportRequest]:
    """One concern with its actions and its request; the view is audited."""
    with uow:
        concern = _concern(uow, actor, concern_id)
        request = uow.requests.get(concern.request_id, SYSTEM)
        uow.audit.add(AuditEntry.of(actor, "view concern", concern.request_id))
        uow.commit()
    return concern, request


def act_on_concern(uow, actor: Actor, concern_id: uuid.UUID, action: str, note: str, close: bool,
                   key: Idempotency | None = None,
                   render: Callable[[Concern], dict[str, Any]] = lambda concern: {}) -> Created:
    """Append what a coordinator did about a concern to the log (ConcernClosed once it is closed); with `close`,
    close it: the request leaves the top of the board when none of its concerns is open, and metrics hears which
    action closed it (never the note). With an Idempotency-Key, once: a retry gets the first answer (`render`ed in
    the same transaction) again, and the log is not added to twice."""
    with uow:
        concern = _concern(uow, actor, concern_id)
        if (earlier := replay(uow.answers, actor, key)) is not None:
            return earlier
        request = uow.requests.get(concern.request_id, SYSTEM)
        now = utcnow()
        concern.act(action, note, actor.subject, now, close)
        uow.audit.add(AuditEntry.of(actor, "act on concern", concern.request_id, ["concern"]))
        if close:
            request.concerns_open = max(request.concerns_open - 1, 0)
            request.note("concern", f"A concern was closed: {CONCERN_ACTIONS[action]}", actor.subject, at=now)
            uow.publish(ConcernClosed(concern_id=concern.id, community=concern.community,
                                      support_type=request.support_type, occurred_at=now, action=action))
        uow.flush()
        created = keep(uow.answers, actor, key, concern, render(concern))
        uow.commit()
    return created


def share_details(uow, request: SupportRequest, event: Event) -> None:
    """Tell notify (`task.details_shared`) what the volunteer who accepted may know of the person."""
    uow.publish(request.details_for(event.payload), correlation_id=event.correlation_id)


# --- people who sign in -----------------------------------------------------------------------------------------------


def create_user(uow, passwords: Passwords, email: str, name: str, role: str, communities: list[str],
                organisation: str | None, password: str) -> User:
    """A new user who can sign in and be issued tokens; WeakPassword if the password would be easy to guess,
    UserExists if the email address is taken."""
    check_password(password, passwords, email)
    with uow:
        if uow.users.by_email(email) is not None:
            raise UserExists(f"a user {email} already exists")
        user = User(email=email, name=name, role=role, communities=communities, organisation=organisation,
                    password_hash=passwords.hash(password))
        uow.users.add(user)
        uow.commit()
    return user


def active_user(uow, email: str) -> User | None:
    """The active user with this email address (any case), or None."""
    with uow:
        user = uow.users.active(email.strip().lower())
        uow.commit()
    return user


def sign_in(uow, passwords: Passwords, email: str, password: str, address: str = "", now=None) -> User | None:
    """The active user whose email and password these are, or None.

    While this account, or this address, has failed SIGN_IN_LIMIT times within SIGN_IN_WINDOW, TooManySignIns
    (with the seconds to wait), whatever the password: it is not even checked. A failure counts against both; a
    success clears the account's. A hash made the old way is made again with the password just given."""
    account, now = email.strip().lower()[:200], now or utcnow()
    with uow:
        by_account, by_address = uow.sign_ins.failures(account, address, now - SIGN_IN_WINDOW)
        wait = max(locked_for(by_account, now), locked_for(by_address, now) if address else 0)
        if wait:
            raise TooManySignIns(wait)
        user = uow.users.active(account)
        if user is None or not passwords.matches(user.password_hash, password):
            uow.sign_ins.add(FailedSignIn(account=account, address=address, at=now))
            uow.commit()
            return None
        if passwords.needs_rehash(user.password_hash):
            user.password_hash = passwords.hash(password)
        uow.sign_ins.forget(account)
        uow.commit()
    return user


def revoke_tokens(uow, settings: Settings, *, jti: str | None = None, subject: str | None = None,
                  now=None) -> TokenRevoked:
    """Revoke one API token by its id, or every token of `subject` issued before `now` (token times are on the
    machine's clock): kept in intake's `revoked_tokens`, and published as `token.revoked` for every other service.
    InvalidRevocation if it names no token."""
    revoked = revocation(settings.secret_key, jti=jti, subject=subject, now=now)
    with uow:
        uow.revoked_tokens.add(revoked)
        uow.publish(revoked)
        uow.commit()
    return revoked


# --- the register of organisations ------------------------------------------------------------------------------------


def list_organisations(uow, actor: Actor) -> list[Organisation]:
    """The organisations of the actor's communities, by name."""
    with uow:
        found = uow.organisations.list(actor)
        uow.commit()
    return found


def get_organisation(uow, actor: Actor, organisation_id: uuid.UUID) -> tuple[Organisation, list[Any]]:
    """One organisation of the actor's communities with its latest webhook deliveries; NotFound otherwise."""
    with uow:
        organisation = uow.organisations.get(organisation_id, actor)
        if organisation is None:
            raise NotFound("No such organisation.")
        deliveries = uow.webhook_deliveries.recent(organisation.id)
        uow.commit()
    return organisation, deliveries


def organisation_named(uow, actor: Actor, name: str | None) -> Organisation | None:
    """The actor's community's organisation of that name, if it is in the register."""
    if not name:
        return None
    with uow:
        found = uow.organisations.named(actor.community, name)
        uow.commit()
    return found


def add_organisation(uow, actor: Actor, details: dict[str, Any]) -> Organisation:
    """A new organisation in the actor's community; OrganisationExists if the name is taken there."""
    with uow:
        if uow.organisations.named(actor.community, details["name"]) is not None:
            raise OrganisationExists(f"{details['name']} is already in the register")
        organisation = Organisation(community=actor.community, name=details["name"], type=details["type"])
        organisation.change(**details)
        uow.organisations.add(organisation)
        uow.publish(organisation.as_changed(), correlation_id=str(organisation.id))
        uow.commit()
    return organisation


def change_organisation(uow, actor: Actor, organisation_id: uuid.UUID, details: dict[str, Any]) -> Organisation:
    """New details for an organisation of the actor's communities; NotFound, or OrganisationExists for a name
    another organisation there has."""
    with uow:
        organisation = uow.organisations.get(organisation_id, actor)
        if organisation is None:
            raise NotFound("No such organisation.")
        namesake = uow.organisations.named(organisation.community, details["name"])
        if namesake is not None and namesake.id != organisation.id:
            raise OrganisationExists(f"{details['name']} is already in the register")
        organisation.change(**details)
        uow.organisations.saved(organisation)
        uow.publish(organisation.as_changed(), correlation_id=str(organisation.id))
        uow.commit()
    return organisation


def merge_organisations(uow, actor: Actor, duplicate_id: uuid.UUID, into_id: uuid.UUID) -> Organisation:
    """One organisation entered twice (or spelled two ways) becomes one: the duplicate's referrals, accounts and
    webhook deliveries move to the organisation it is merged into (which takes its webhook if it has none), and it
    leaves the register. Published, so that metrics counts the two as one partner from then on, and on every
    period it counts again. NotFound unless both are in one of the actor's communities, together; SameOrganisation
    for one merged into itself."""
    with uow:
        duplicate = uow.organisations.get(duplicate_id, actor)
        into = uow.organisations.get(into_id, actor)
        if duplicate is None or into is None or duplicate.community != into.community:
            raise NotFound("No such organisation in this community.")
        if duplicate.id == into.id:
            raise SameOrganisation("Choose another organisation to merge it into.")
        into.absorb(duplicate)
        uow.organisations.merge(duplicate, into)
        uow.audit.add(AuditEntry.of(actor, "merge organisations", None,
                                    [f"organisation {duplicate.id} into {into.id}"]))
        uow.publish(duplicate.as_changed(merged_into=into.id), correlation_id=str(into.id))
        uow.publish(into.as_changed(), correlation_id=str(into.id))
        uow.commit()
    return into


# --- the signposting directory ----------------------------------------------------------------------------------------


def directory(uow, actor: Actor, kind: str | None = None, near: tuple[float, float] | None = None,
              within_km: float | None = None, retired: bool = False) -> list[tuple[DirectoryEntry, float | None]]:
    """The actor's community's entries offering `kind` (any when None), nearest to `near` first (with their
    distance), or by name; retired ones only when asked for (listed last)."""
    with uow:
        entries = uow.directory.of(actor, actor.community, retired=retired)
        uow.commit()
    latitude, longitude = near if near else (None, None)
    found = nearest(entries, kind, latitude, longitude, within_km)
    if retired:
        found += [(e, None) for e in entries if e.retired and (not kind or kind in e.kinds)]
    return found


def get_entry(uow, actor: Actor, entry_id: uuid.UUID) -> DirectoryEntry:
    """One entry of the actor's communities; NotFound otherwise."""
    with uow:
        entry = uow.directory.get(entry_id, actor)
        uow.commit()
    if entry is None:
        raise NotFound("No such service in the directory.")
    return entry


def _linked(uow, community_slug: str, details: dict[str, Any]) -> dict[str, Any]:
    """The details with the organisation linked to the register when it is there by that name."""
    named = details.get("organisation") and uow.organisations.named(community_slug, details["organisation"])
    return {**details, "organisation_id": named.id if named else None}


def add_entry(uow, actor: Actor, details: dict[str, Any]) -> DirectoryEntry:
    """A new entry in the actor's community."""
    with uow:
        entry = DirectoryEntry(community=actor.community, **_linked(uow, actor.community, details))
        uow.directory.add(entry)
        uow.commit()
    return entry


def change_entry(uow, actor: Actor, entry_id: uuid.UUID, details: dict[str, Any]) -> DirectoryEntry:
    """New details for an entry of the actor's communities (`retired` True retires it, False restores it)."""
    with uow:
        entry = uow.directory.get(entry_id, actor)
        if entry is None:
            raise NotFound("No such service in the directory.")
        entry.change(_linked(uow, entry.community, details) if "organisation" in details else details)
        uow.commit()
    return entry


def import_directory(uow, actor: Actor, sheet: Sheet) -> dict[str, Any]:
    """Add a file's entries to the actor's community, all or none: while any has a problem nothing is written.
    An entry with an id the community imported before updates that one (a feed imported again)."""
    if sheet.problems:
        return {"imported": 0, "updated": 0, "rows": sheet.rows, "skipped": sheet.skipped, "errors": sheet.problems}
    with uow:
        known = uow.directory.by_external_id(actor.community, [e["external_id"] for e in sheet.entries
                                                               if e.get("external_id")])
        added = updated = 0
        for details in sheet.entries:
            details = _linked(uow, actor.community, {**details, "retired": details.get("retired", False)})
            entry = known.get(details.get("external_id"))
            if entry is None:
                entry = DirectoryEntry(community=actor.community, **details)
                uow.directory.add(entry)
                if entry.external_id:
                    known[entry.external_id] = entry
                added += 1
            else:
                entry.change(details)
                updated += 1
        uow.commit()
    return {"imported": added, "updated": updated, "rows": sheet.rows, "skipped": sheet.skipped, "errors": []}


def signpost(uow, actor: Actor, request_id: uuid.UUID, entry_id: uuid.UUID, settings: Settings) -> SupportRequest:
    """Close an open request by pointing the person to an entry of its community's directory: its outcome and
    timeline say so, the referrer hears, matching stops looking and metrics counts it (`request.signposted`).
    NotFound for an entry of another community or a retired one; NotOpen if the request had ended."""
    with uow:
        request = _get(uow, request_id, actor)
        entry = _entry_to_signpost(uow, actor, request, entry_id)
        told_matching = not request.held
        request.signpost(entry.id, entry.name, actor.subject)
        _signposted(uow, actor, request, entry, settings, told_matching=told_matching)
        uow.commit()
    return request


def _entry_to_signpost(uow, actor: Actor, request: SupportRequest, entry_id: uuid.UUID) -> DirectoryEntry:
    """An active entry of the request's community's directory; NotFound for any other."""
    entry = uow.directory.get(entry_id, actor)
    if entry is None or entry.retired or entry.community != request.community:
        raise NotFound("No such service in this community's directory.")
    return entry


def _signposted(uow, actor: Actor, request: SupportRequest, entry: DirectoryEntry, settings: Settings, *,
                told_matching: bool) -> None:
    """The audit entry and events of a request just signposted; one matching was never told of (held, or made
    signposted) is counted as received as well, and matching is told there is nothing to stop."""
    uow.audit.add(AuditEntry.of(actor, "signpost", request.id, ["status"]))
    if not told_matching:
        closed_before_matching(uow, request, settings)
    uow.publish(RequestSignposted(request_id=request.id, community=request.community,
                                  support_type=request.support_type, entry_id=entry.id,
                                  asked_matching=told_matching),
                correlation_id=str(request.id))


def closed_before_matching(uow, request: SupportRequest, settings: Settings) -> None:
    """For a request that ends before matching was ever told of it (signposted as it is made, or cancelled or
    signposted while held): its `request.submitted`, marked `closed`. Matching ignores it, so no one is offered
    it; metrics counts it as a request received as it counts every other, once, from its own request.submitted
    fact, so that "requests received" stays the sum of its breakdowns and includes every request signposted or
    cancelled. (The alternative, metrics guessing "received" from an outcome whose request it never saw, would
    need the request's source and pseudonym on every outcome, and would miscount when an outcome overtakes its
    request on the bus.)"""
    uow.publish(request.for_matching(RequestSubmitted, settings.secret_key, closed=True),
                correlation_id=str(request.id))


def signposted_entry(uow, actor: Actor, request: SupportRequest) -> DirectoryEntry | None:
    """The entry a request was signposted to (retired since, too), for its page."""
    if request.signposted_to is None:
        return None
    with uow:
        entry = uow.directory.names({request.signposted_to}).get(request.signposted_to)
        uow.commit()
    return entry if entry is not None and entry.community == request.community else None


# --- retention and erasure --------------------------------------------------------------------------------------------

RETENTION_BATCH = 200  # requests claimed by one transaction of the nightly job


def apply_retention(unit_of_work: Callable, now: datetime, communities: dict, batch: int = RETENTION_BATCH,
                    ) -> dict[str, dict[str, int]]:
    """The nightly retention job: in each community, pseudonymise the person's details of every closed request with
    nothing happening to it for the community's `closed_request_days`, and remove the audit entries older than its
    `audit_log_days`, and the concerns closed longer ago than its `safeguarding_log_days`; drop the documents closed
    requests still hold. Each batch of requests is claimed (SKIP LOCKED)
    and done in a transaction of its own, so two runs at once do each request once, and a second run finds nothing
    left to do. Records the run (counts by community, no personal data); the counts."""
    counts: dict[str, dict[str, int]] = {}
    for slug, place in communities.items():
        keeps = place.keeps
        done = {"pseudonymised": 0, "copies_scrubbed": 0, "audit_entries_removed": 0, "concerns_removed": 0}
        while True:
            with unit_of_work() as uow:
                claimed = uow.retention.closed_and_quiet(slug, now - timedelta(days=keeps.closed_request_days),
                                                         batch)
                for request in claimed:
                    done["copies_scrubbed"] += uow.retention.scrub_copies(request.id, request.forget_person(now))
                uow.flush()
                for person in uow.people.quiet(list({r.person_id for r in claimed if r.person_id})):
                    for record in uow.people.family(person.id):  # and the records merged into it
                        record.forget()
                uow.commit()
            done["pseudonymised"] += len(claimed)
            if len(claimed) < batch:
                break
        with unit_of_work() as uow:
            done["audit_entries_removed"] = uow.retention.drop_audit_before(
                slug, now - timedelta(days=keeps.audit_log_days))
            # KEPT LONGER: the safeguarding log's concerns are kept for the community's `safeguarding_log_days` after
            # they were closed, never the shorter closed_request_days; an open one is kept however old
            done["concerns_removed"] = uow.retention.drop_concerns_closed_before(
                slug, now - timedelta(days=keeps.safeguarding_log_days))
            uow.commit()
        counts[slug] = done
    dropped = 0
    while True:
        with unit_of_work() as uow:
            claimed = uow.retention.closed_with_documents(batch)
            for request in claimed:
                request.closing()
            uow.commit()
        dropped += len(claimed)
        if len(claimed) < batch:
            break
    with unit_of_work() as uow:
        uow.retention.record("nightly", now.date(), now, {"documents_dropped": dropped, **counts})
        uow.commit()
    return {**counts, "all": {"documents_dropped": dropped}}


def retention_due(uow, day) -> bool:
    """Whether the nightly job has yet to run for `day`."""
    with uow:
        return not uow.retention.ran_on("nightly", day)


def requests_of_person(uow, person_id: uuid.UUID, lock: bool = False) -> list[SupportRequest]:
    """The requests of the person with this id (with `lock`, locked for the caller's transaction); NotFound if there
    is none.

    `person_id` is a person's record (their requests, and those of every record merged into it), or one request's
    id (then its person's requests, all of them)."""
    found: list[SupportRequest] = []
    record = uow.people.get(person_id, SYSTEM)
    if record is None:  # a request's id: its person's record, if it has one
        found = uow.retention.of([person_id], lock=lock)
        record = uow.people.get(found[0].person_id, SYSTEM) if found and found[0].person_id else None
    if record is not None:
        ids = [r.id for each in uow.people.family(record.id) for r in uow.people.requests_of(each.id)]
        found = uow.retention.of(ids or [person_id], lock=lock)
    if not found:
        raise NotFound(f"No person or request {person_id}.")
    return found


def records_of_person(uow, found: list[SupportRequest]) -> list[Person]:
    """The person's records these requests belong to, with every record merged into them."""
    return [record for person_id in {r.person_id for r in found if r.person_id}
            for record in uow.people.family(person_id)]


def erase_person(uow, actor: Actor, person_id: uuid.UUID, now: datetime) -> list[SupportRequest]:
    """Erase a person at their request: their details removed from each of their requests and every copy intake
    keeps (idempotency answers, events, webhook deliveries; `forget_person`), and each other service told
    (`person.erased`, with the requests' ids alone) to remove what it holds about those requests. The requests stay,
    with their status, so every count stays the same. Recorded in the audit log and the retention runs: who, when,
    which requests. The requests erased."""
    with uow:
        found = requests_of_person(uow, person_id, lock=True)
        for record in records_of_person(uow, found):
            record.forget()
        for request in found:
            uow.retention.scrub_copies(request.id, request.forget_person(now))
            request.note("erased", "The person's details were erased at their request", actor.subject, at=now)
            uow.audit.add(AuditEntry.of(actor, "erase", request.id, ["person"]))
        by_community: dict[str, list[uuid.UUID]] = {}
        for request in found:
            by_community.setdefault(request.community, []).append(request.id)
        for slug, ids in by_community.items():
            uow.publish(PersonErased(community=slug, request_ids=ids), correlation_id=str(ids[0]))
        uow.retention.record("erasure", now.date(), now, {slug: {"requests": len(ids)}
                                                          for slug, ids in by_community.items()},
                             actor=actor.subject, request_ids=[r.id for r in found])
        uow.commit()
    return found


def export_person(uow, actor: Actor, person_id: uuid.UUID) -> dict[str, Any]:
    """Everything intake holds about a person (subject access): each of their requests with its consents and
    timeline, and who saw or changed their details (the audit log). The export is audited too."""
    with uow:
        found = requests_of_person(uow, person_id)
        audit = uow.retention.audit_about([r.id for r in found])
        for request in found:
            uow.audit.add(AuditEntry.of(actor, "export", request.id))
        held = {"records": [{"id": str(p.id), "community": p.community, "name": p.name, "phone": p.phone,
                             "date_of_birth": p.date_of_birth.isoformat() if p.date_of_birth else None,
                             "address": p.address, "postcode": p.postcode,
                             "died_on": p.died_on and p.died_on.isoformat(),
                             "merged_into": p.merged_into and str(p.merged_into)}
                            for p in records_of_person(uow, found)],
                "requests": [request.as_held() for request in found],
                "audit_log": [{"at": e.at.isoformat(), "actor": e.actor, "role": e.role, "action": e.action,
                               "request_id": str(e.request_id), "fields": e.fields} for e in audit]}
        uow.commit()
    return held


# --- surveys by SMS (services/intake/surveys.py) ----------------------------------------------------------------------


def survey_after_task(uow, request: SupportRequest, completed_at: datetime, now: datetime) -> None:
    """The request's help is over (its task done; a recurring request's last): make its survey, once per request (a
    redelivered event makes none), and begin it now unless it waits (a bereaved person's, some weeks)."""
    if uow.surveys.of_request(request.id) is not None:
        return
    survey = Survey.after(request.community, request.id, request.support_type, request.is_carer, completed_at,
                          uow.surveys.questions(SYSTEM, request.community),
                          community(request.community).bereavement_survey_weeks)
    uow.surveys.add(survey)
    if survey.due_at <= now:
        ask_next(uow, survey, request)


def ask_next(uow, survey: Survey, request: SupportRequest | None = None) -> None:
    """Send the survey's next question, if the person may still be texted (their consent to SMS, a phone, no death
    recorded: checked each time); otherwise stop it, saying why on the request's timeline."""
    request = request or uow.requests.get(survey.request_id, SYSTEM)
    person = uow.people.get(request.person_id, SYSTEM) if request is not None and request.person_id else None
    why = "no_phone" if request is None else may_text(request.consent("sms_contact"), request.person_phone,
                                                      person is not None and person.died_on is not None)
    if why is not None:
        if survey.stop(why) and request is not None:
            request.note("survey", f"Survey not sent: {NOT_SENT[why]}")
        return
    question = survey.next_question(request.person_phone, request.preferred_language,
                                    community(survey.community).survey_reminder_hours)
    if question is None:
        request.note("survey", f"Survey answered ({len(survey.questions)} questions)")
        return
    if question.number == 1:
        request.note("survey", f"Survey sent by SMS ({question.of} questions)")
    uow.publish(question)


def send_due_surveys(unit_of_work: Callable, now: datetime) -> int:
    """Begin every survey whose time has come (a bereaved person's, some weeks after their support); how many."""
    with unit_of_work() as uow:
        due = uow.surveys.due(now)
        for survey in due:
            ask_next(uow, survey)
        uow.commit()
    return len(due)


def record_survey_answer(uow, event: Event) -> None:
    """A person answered their survey's current question (notify read the number): keep it, count it in metrics
    with nothing that ties it to them, and ask the next question. An answer to a question no longer out (a late
    second reply, a survey stopped) is dropped; one already kept is not kept twice."""
    answered = event.payload
    survey = uow.surveys.get(answered.survey_id, lock=True)
    if survey is None or survey.current is None or survey.current["id"] != answered.question_id:
        return
    if not uow.surveys.record_answer(survey.id, answered.question_id, answered.answer, answered.at):
        return
    uow.publish(SurveyAnswerRecorded(community=survey.community, respondent=survey.respondent,
                                     question_id=answered.question_id, answer=answered.answer,
                                     answered_at=answered.at, completes=survey.asked == len(survey.questions)))
    ask_next(uow, survey)


def stop_surveys_to(uow, event: Event) -> None:
    """A phone replied STOP: every survey asking it ends there."""
    for survey in uow.surveys.going_to(event.payload.phone):
        if survey.stop("opted_out"):
            request = uow.requests.get(survey.request_id, SYSTEM)
            if request is not None:
                request.note("survey", f"Survey stopped: {NOT_SENT['opted_out']}")


def survey_questions(uow, actor: Actor) -> dict[str, Any]:
    """What the survey page shows: the ONS4 questions every survey asks, and the actor's community's own."""
    with uow:
        return {"ons4": ONS4, "own": uow.surveys.questions(actor, actor.community)}


def add_survey_question(uow, actor: Actor, data: dict[str, Any]) -> CommunityQuestion:
    """Add a question the actor's community asks after ONS4 (SurveyError says what to change)."""
    with uow:
        question = CommunityQuestion(community=actor.community, respondent=data.get("respondent", ""),
                                     text=data.get("text", ""), text_fr=data.get("text_fr", ""),
                                     created_by=actor.subject)
        uow.surveys.add_question(question)
        uow.audit.add(AuditEntry.of(actor, "survey.question_add", None, ["text"]))
        uow.commit()
        return question


def retire_survey_question(uow, actor: Actor, question_id: uuid.UUID, now: datetime) -> None:
    """Stop asking a community question in new surveys (NotFound outside the actor's communities)."""
    with uow:
        question = uow.surveys.question(question_id, actor)
        if question is None:
            raise NotFound("No such survey question in your community.")
        question.retired_at = question.retired_at or now
        uow.audit.add(AuditEntry.of(actor, "survey.question_stop", None, ["text"]))
        uow.commit()
