"""Matching's use cases: one function each, given a unit of work (`uow.volunteers`, `uow.requests`, `uow.offers`,
`uow.publish`), the acting user or the event, the policy and the time.

Lock order. Several matching workers (and, for a moment after a lost timer lock, two timer leaders) change the same
requests at once, so every use case takes its locks in one order, and none waits for a lock while holding a lock
that comes later in it:

1. the request's row (`uow.requests.lock`, or `uow.requests.claim` in a timer job, which skips a request another
   transaction holds); when a use case changes several requests (an opt-out), it locks them all first, in the
   order of their ids. A request not stored yet is held by its id (`uow.requests.lock_new`) before its row exists,
   so that its request.submitted, request.updated and request.cancelled are judged one at a time;
2. then its offers (and a befriending request's match, `uow.befriending.of_offer` or `get(..., lock=True)`):
   read again once the request is locked (`uow.offers.get(..., fresh=True)`) and only then
   changed. No use case changes an offer without holding its request, so an offer's row is never waited for; an
   offer's code is taken without waiting (`uow.offers.reserve_codes`), so two requests' cascades never wait on
   each other in the offers' unique index;
3. volunteers last, if at all: a use case that changes a volunteer holds no request lock (a coordinator's change,
   PAUSE and RESUME, contact.opted_in and contact.invalid) or has taken all of its requests' locks first (an
   opt-out). Making an offer to a volunteer takes only the foreign key's share lock on their row, after the
   request's lock, as the order says.

Check reminders lock the rows of the checks they remind of (skipping those another run holds), and nothing else;
so do overdue-visit reminders, the rows of the befriending matches they remind of. A wellbeing check-in's answer
locks that check-in's row alone; the check-in timer locks nothing (each check-in is inserted once, by its unique key).
The handlers of sms.sent, sms.failed, the replies (YES, NO, DONE, CANCEL), contact.opted_out, request.updated and
request.cancelled, the expiry timer and its cascades, and a coordinator's assignment and rerun all follow it.
"""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Callable

from services.matching.domain import (ANSWERS, APPLICATIONS_PER_HOUR, HOLDING, INVITATION_ANSWERS, INVITED_STAGES,
                                      LIVE, NOTIFY_ANSWERS, REQUEST_FIELDS, REVIEW_AFTER_MONTHS, SOON_DAYS, VIEWS,
                                      Applicant, BefriendingMatch, Candidate, CheckIn, CheckRuleChange, CheckRules,
                                      CheckType, Conflict, Contribution, Invalid, Invitation, KindRequirement,
                                      MatchRequest, NotFound, Offer, Place, Policy, TooManyApplications,
                                      TrainingSession, Volunteer, VolunteerCheck, assess, attendee_digest,
                                      check_in_id, check_type_problems, concern_id, concern_tasks, explain, facts_for,
                                      is_low, months_after, next_batch, next_check_in, overdue_on, rule_text,
                                      task_slots, time_away_problems, why_unmatched)
from shared import clock, gazetteer
from shared.auth import SYSTEM, Actor
from shared.idempotency import Created, Idempotency, keep, replay
from shared.communities import all_communities, default_slug, get as community
from shared.contracts.intake import PersonErased, RequestSubmitted
from shared.contracts.matching import (AboutRequest, ApplicantApplied, ApplicantsWaiting, BefriendingEnded,
                                       BefriendingStarted,
                                       BefriendingVisitLogged, BefriendingVisitOverdue, CheckExpiring, ConcernRaised,
                                       OfferAccepted, OfferAnswerDue, OfferMade, TaskLine,
                                       OfferWithdrawn, ReplyAnswered, ReplyUnresolved, RequestMatched, RequestUnmatched,
                                       TaskCompleted, TaskGivenBack, TaskVolunteerOptedOut, TrainingAnswered,
                                       TrainingAttended, TrainingInvited, VolunteerRegistered,
                                       VolunteerStatusChanged, WellbeingAnswered, WellbeingPrompted)
from shared.contracts.metrics import ActivityLogged
from shared.contracts.notify import SmsFailed, SmsReceived, SmsSent
from shared.taxonomy import KINDS


# --- finding and asking volunteers --------------------------------------------------------------------------------

FIRST_LOOK = 16  # how many of the nearest suited volunteers have their tasks and offers read first


def candidates_for(uow, request: MatchRequest, policy: Policy, now: datetime,
                   everyone: bool = False) -> tuple[list[Candidate], Counter]:
    """The ranked candidates for a request, and how many volunteers each rule ruled out.

    The rules on volunteers' profiles are judged in the candidate index; only the volunteers it finds suited have
    their tasks and offers read, nearest first, in runs that double, until the best batch is certain: a volunteer
    further away can rank higher only by having helped this person before (`continuity_km`). Then the candidates
    are the best of those read, and the counts of the last rules (weekly cap, already asked) cover only those;
    the counts of the others cover every volunteer within the request's radius. `everyone` reads the whole
    community, to tell a coordinator why nobody was found or who else could be asked. So does the first round of
    a recurring request's next occurrence, whose regular volunteer is asked first wherever they are in the order."""
    zone = community(request.community).zone
    slots = task_slots(request, zone, now.astimezone(zone).date())
    found, excluded = uow.volunteers.suited(request, slots, policy, everyone)
    complete = everyone or (request.round == 0 and request.previous_volunteer() is not None)
    bonus = policy.continuity_km if request.person_ref else 0.0
    candidates: list[Candidate] = []
    read = 0
    while read < len(found):
        upto = len(found) if complete else min(len(found), max(2 * read, FIRST_LOOK))
        run, read = found[read:upto], upto
        ids = [s.id for s in run]
        facts = facts_for(request, [(s, s.distance_km) for s in run],
                          uow.offers.recent_load(ids, now - timedelta(days=policy.recent_days)),
                          uow.offers.held_by(ids), now)
        ranked, ruled_out = assess(run, facts, policy)
        candidates = sorted(candidates + ranked, key=lambda c: (c.score, c.volunteer.name))
        excluded += ruled_out
        if read < len(found) and len(candidates) >= policy.batch_size and candidates[policy.batch_size - 1].score \
                < round(found[read].distance_km - bonus - 1e-9, 3):
            break  # nobody not yet read can rank among the best batch
    return candidates, excluded


def _publish(uow, request: MatchRequest, event: AboutRequest) -> None:
    """Publish an event about a request: the one place matching does, so each carries the request's next
    sequence number (`MatchRequest.numbered`; the request is locked, or new in this unit of work)."""
    uow.publish(request.numbered(event), correlation_id=request.correlation_id)


def make_offers(uow, request: MatchRequest, chosen: list[tuple[Volunteer, float]], now: datetime,
                taken: set[str] | None = None) -> list[Offer]:
    """Offer a request's current occurrence to volunteers (each with their distance), each with a code no open or
    accepted offer has: the one place offers are made, whether matching asks or a coordinator assigns. `taken`,
    the codes known to be in use (read once before), spares reading them again; a code is only a candidate until
    `uow.offers.reserve_codes` takes it."""
    codes = _free_codes(uow, len(chosen), taken)
    return [request.offer_to(volunteer, code, now, distance) for (volunteer, distance), code in zip(chosen, codes)]


def _free_codes(uow, count: int, taken: set[str] | None = None) -> list[str]:
    """`count` codes no open or accepted offer, and no training invitation still to answer or attend, has; held for
    this transaction (`uow.offers.reserve_codes`, all of a batch's at once). The one place codes are chosen, for
    offers and invitations alike. `taken` (read here if not given) gains every code given, or found in use."""
    taken = uow.offers.codes_in_use() if taken is None else taken
    codes: list[str] = []
    while len(codes) < count:
        drawn: list[str] = []
        while len(drawn) < count - len(codes):
            if (code := f"{secrets.randbelow(9000) + 1000}") not in taken:
                drawn.append(code)
                taken.add(code)  # given now, or in use or being given by another transaction: not drawn again
        codes += uow.offers.reserve_codes(drawn)
    return codes


def _free_code(uow, taken: set[str] | None = None) -> str:
    """One code, as `_free_codes` chooses them."""
    return _free_codes(uow, 1, taken)[0]


def _offer_next(uow, request: MatchRequest, policy: Policy, now: datetime) -> None:
    """Offer the request to the next batch of the best volunteers not yet asked; with nobody left, or after the
    last round, it is unmatched with the reasons."""
    asked = len(request.asked())
    if request.round >= policy.max_rounds:
        _unmatched(uow, request, f"{asked} volunteers asked in {request.round} rounds; nobody said yes")
        return
    candidates, _ = candidates_for(uow, request, policy, now)
    batch = uow.volunteers.loaded(next_batch(request, candidates, policy))
    if not batch:
        _, excluded = candidates_for(uow, request, policy, now, everyone=True)
        _unmatched(uow, request, why_unmatched(asked, excluded, uow.checks.rules(request.community)))
        return
    request.round += 1
    # Every offer this transaction made is flushed (the search flushed first), so `reserve_codes` sees every code in
    # use: they need not all be read.
    offers = make_offers(uow, request, [(c.volunteer, c.distance_km) for c in batch], now, taken=set())
    for candidate, offer in zip(batch, offers):
        _publish(uow, request, OfferMade(
            offer_id=offer.id, request_id=request.request_id, volunteer_id=offer.volunteer_id,
            phone=candidate.volunteer.phone, code=offer.code, support_type=request.support_type, area=request.area,
            urgency=request.urgency, community=request.community, round=request.round,
            occurrence=request.occurrence, occurrences=request.repeat_occurrences,
            language=candidate.volunteer.first_language, rhythm=request.befriending_rhythm, **request.when()))


def _unmatched(uow, request: MatchRequest, reason: str) -> None:
    """Give up on a request and tell the coordinator why."""
    request.give_up(reason)
    _publish(uow, request, RequestUnmatched(request_id=request.request_id, reason=request.unmatched_reason))


def _next_round_if_all_answered(uow, request: MatchRequest, policy: Policy, now: datetime) -> None:
    """When nobody in the current batch can still say yes, ask the next batch."""
    if request.waiting_on_nobody():
        _offer_next(uow, request, policy, now)


def _accept(uow, request: MatchRequest, offer: Offer, now: datetime, by: str = "volunteer") -> None:
    """The volunteer has the task: every other open offer for the occurrence is withdrawn."""
    offer.accept(now)
    request.status = "matched"
    uow.flush()  # the one-accepted-offer index refuses a second acceptance here
    for other in request.current_offers():
        if other is not offer and other.status == "open":
            _withdraw(uow, request, other, "taken")
    _publish(uow, request, OfferAccepted(
        offer_id=offer.id, request_id=request.request_id, volunteer_id=offer.volunteer_id, phone=offer.volunteer.phone,
        code=offer.code, by=by, community=request.community, language=offer.volunteer.first_language,
        occurrence=offer.occurrence, **request.when()))
    _publish(uow, request, RequestMatched(request_id=request.request_id, offer_id=offer.id,
                                          volunteer_id=offer.volunteer_id, occurrence=offer.occurrence))
    if request.befriending_rhythm:
        _start_befriending(uow, request, offer, now)


def _withdraw(uow, request: MatchRequest, offer: Offer, reason: str) -> None:
    """Take back an offer (open, or accepted when the request is cancelled) and tell the volunteer, in their
    language and within their community's quiet hours."""
    offer.status = "withdrawn"
    _publish(uow, request, OfferWithdrawn(
        offer_id=offer.id, request_id=request.request_id, volunteer_id=offer.volunteer_id, phone=offer.volunteer.phone,
        code=offer.code, reason=reason, community=request.community, language=offer.volunteer.first_language))


# --- requests, from intake ----------------------------------------------------------------------------------------

def take_request(uow, details: RequestSubmitted, policy: Policy, now: datetime,
                 correlation_id: str | None = None) -> None:
    """Take a new request into matching and make the first offers.

    Events about one request can arrive out of order: if its update came first, matching already has the newer
    details and has offered it; if its cancellation came first, it is taken in as cancelled and never offered.
    The request's id is held first, so a cancellation handled at the same moment waits for it, and then sees it."""
    uow.requests.lock_new(details.request_id)
    if uow.requests.get(details.request_id, SYSTEM) is not None:
        return
    request = MatchRequest(request_id=details.request_id, correlation_id=correlation_id or str(details.request_id),
                           **{name: getattr(details, name) for name in REQUEST_FIELDS})
    uow.requests.add(request)
    if uow.requests.cancelled_early(details.request_id):
        request.status = "cancelled"
    else:
        uow.flush()
        _offer_next(uow, request, policy, now)
    uow.commit()


def update_request(uow, details: RequestSubmitted, policy: Policy, now: datetime,
                   correlation_id: str | None = None) -> None:
    """Keep matching's copy of a request current while it may still be matched (open, unmatched and waiting for a
    coordinator to run it again, or matched with occurrences to come): an update carries every field matching
    uses, and a corrected kind of help is what the next round, run or occurrence looks for."""
    request = uow.requests.lock(details.request_id, SYSTEM) or _lock_new(uow, details.request_id)
    if request is None:  # it overtook its request.submitted, whose details are older
        take_request(uow, details, policy, now, correlation_id)
    elif request.status in ("open", "unmatched", "matched"):
        request.update_details(details)
        uow.commit()


def _lock_new(uow, request_id: uuid.UUID) -> MatchRequest | None:
    """For a request not found: hold its id, then look again (it may have been being taken in), locking it if it
    is there now."""
    uow.requests.lock_new(request_id)
    return uow.requests.lock(request_id, SYSTEM)


def cancel_request(uow, request_id: uuid.UUID, now: datetime | None = None) -> None:
    """Stop matching a cancelled request, and withdraw its offers (a volunteer who had accepted is told too; a
    befriending match ends with it)."""
    _cancel(uow, request_id, "cancelled", now)
    uow.commit()


def person_died(uow, request_ids: list[uuid.UUID], now: datetime | None = None) -> None:
    """Stop matching every open request of a person who died, repeats too, and withdraw their offers as "died":
    notify then sends no "no longer needed" text (it tells the volunteers who helped them itself); a befriending
    match ends with the reason "died". In one transaction, the requests locked in the order of their ids."""
    for request_id in sorted(set(request_ids)):
        _cancel(uow, request_id, "died", now)
    uow.commit()


def _cancel(uow, request_id: uuid.UUID, why: str, now: datetime | None = None) -> None:
    """Stop a request and withdraw its open and accepted offers, saying why; one not heard of yet is kept as
    cancelled for when it comes."""
    request = uow.requests.lock(request_id, SYSTEM) or _lock_new(uow, request_id)
    if request is None:  # the cancellation overtook its request: keep it for when the request comes
        uow.requests.note_cancelled_early(request_id)
    else:
        request.status = "cancelled"
        for offer in request.offers:
            if offer.status == "accepted" and request.befriending_rhythm:
                _close_befriending(uow, offer, now or clock.utcnow(), "died" if why == "died" else None)
            if offer.status in ("open", "accepted"):
                _withdraw(uow, request, offer, why)


# --- what volunteers text, and what notify says of the texts sent to them -------------------------------------

def reply(uow, sms: SmsReceived, policy: Policy, now: datetime, correlation_id: str | None = None,
          public_url: str = "") -> None:
    """Act on what a volunteer texted: YES, NO, DONE, CANCEL with a code (or without, when only one offer fits);
    PAUSE, RESUME; MY, AWAY, HOURS (answered through notify as reply.answered); CONCERN (to intake as
    concern.raised, the volunteer's receipt through notify as reply.answered); a score (WELLBEING) or TALK answering
    their wellbeing check-in (wellbeing.answered, and a score's thanks as reply.answered). (STOP and START arrive as
    contact.opted_out and contact.opted_in.) What cannot be acted on is sent back to notify as reply.unresolved,
    saying why. JOIN, from anyone, is answered with the link to the page for applying of the community whose
    number they texted (`public_url` is where the pages are)."""
    volunteer = uow.volunteers.by_phone(sms.from_phone)
    if sms.keyword == "JOIN":
        _join_link(uow, sms, public_url, correlation_id)
    elif sms.keyword in INVITATION_ANSWERS and _answer_invitation(uow, volunteer, sms, now, correlation_id):
        pass  # a YES or NO to a training invitation (from a volunteer, an applicant or anyone signing up)
    elif volunteer is None:
        if sms.keyword not in NOTIFY_ANSWERS:
            _unresolved(uow, sms, correlation_id, "unknown_sender")
    elif sms.keyword is None:  # notify answered it, unless it never texted them: then say how to answer
        if not uow.offers.any_to(volunteer.id):
            _unresolved(uow, sms, correlation_id, "nothing_open", volunteer)
    elif sms.keyword in ("PAUSE", "RESUME"):
        if volunteer.status != "left":
            _change_status(uow, volunteer, "paused" if sms.keyword == "PAUSE" else "active")
    elif sms.keyword in ANSWERS:
        _answer(uow, volunteer, sms, policy, now, correlation_id)
    elif sms.keyword in VIEWS:
        _own_view(uow, volunteer, sms, now, correlation_id)
    elif sms.keyword == "CONCERN" and sms.text:
        _concern(uow, volunteer, sms, now, correlation_id)
    elif sms.keyword in ("WELLBEING", "TALK"):
        _check_in_answer(uow, volunteer, sms, now, correlation_id)
    uow.commit()


def _concern(uow, volunteer: Volunteer, sms: SmsReceived, now: datetime, correlation_id: str | None) -> None:
    """A volunteer's worry about the person whose task they hold: with a code, that task of theirs; without, their
    only current or recent one. Found, the concern goes to intake alone (concern.raised, its id made from the SMS
    so a redelivery opens nothing twice) and the volunteer is told it arrived and what happens next; otherwise they
    are asked which task, with their tasks' codes (and notify puts the text before a coordinator)."""
    tasks = concern_tasks(uow.offers.of_volunteer(volunteer.id, HOLDING, sms.code), now, sms.code)
    if len(tasks) == 1:
        task = tasks[0]
        request = uow.requests.get(task.request_id, SYSTEM)
        uow.publish(ConcernRaised(concern_id=concern_id(sms.message_sid), request_id=task.request_id,
                                  community=request.community, volunteer_id=volunteer.id, text=sms.text,
                                  raised_at=now), correlation_id=correlation_id)
        answer: dict[str, Any] = {"answer": "concern_received", "tasks": [TaskLine(
            code=task.code, support_type=request.support_type, area=request.area)]}
    else:
        if sms.code is not None:  # not a code of theirs: which of their tasks (current or recent) is it?
            tasks = concern_tasks(uow.offers.of_volunteer(volunteer.id, HOLDING), now)
        requests = {t.request_id: uow.requests.get(t.request_id, SYSTEM) for t in tasks}
        answer = {"answer": "concern_which" if tasks else "concern_no_task", "tasks": [TaskLine(
            code=t.code, support_type=requests[t.request_id].support_type, area=requests[t.request_id].area)
            for t in tasks[:TASKS_LISTED]]}
    uow.publish(ReplyAnswered(phone=sms.from_phone, message_sid=sms.message_sid, community=volunteer.community,
                              language=volunteer.first_language, **answer), correlation_id=correlation_id)


TASKS_LISTED = 5  # the next tasks an SMS lists (about two segments)


def _check_in_answer(uow, volunteer: Volunteer, sms: SmsReceived, now: datetime, correlation_id: str | None) -> None:
    """A volunteer answered their wellbeing check-in with a score (WELLBEING, notify read it as one only while a
    check-in was recent) or asked to talk (TALK: notify already put it before a coordinator and answered). The
    latest open check-in takes the first answer (metrics hears it, without who); a low score is put before a
    coordinator through notify's inbox (`wellbeing_low`), and any score is thanked. A TALK with no check-in open is
    notify's alone."""
    check_in = uow.check_ins.latest_of(volunteer.id)
    answering = check_in is not None and check_in.is_open(now)
    score = sms.score if sms.keyword == "WELLBEING" else None
    low = is_low(score, community(volunteer.community).wellbeing_low_score)
    if answering:
        check_in.answer(score, now)
        uow.publish(WellbeingAnswered(checkin_id=check_in.id, community=volunteer.community, score=score,
                                      talk=score is None, low=low), correlation_id=correlation_id)
    if sms.keyword == "WELLBEING":
        uow.publish(ReplyAnswered(phone=sms.from_phone, message_sid=sms.message_sid, community=volunteer.community,
                                  language=volunteer.first_language,
                                  answer="wellbeing_low" if low and answering else "wellbeing_thanks"),
                    correlation_id=correlation_id)


def prompt_check_ins(uow, now: datetime) -> int:
    """Ask each active volunteer who can be texted how they are finding volunteering, every community's
    `wellbeing_interval_days` (from their registration, then from their last check-in's due date): one check-in per
    volunteer per due date, however many timers run at once (its unique key), each asked once (wellbeing.prompted,
    which notify texts in their language and metrics counts). How many were asked."""
    asked = 0
    for place in all_communities().values():
        today = now.astimezone(place.zone).date()
        for volunteer, last_due in uow.check_ins.due(place.slug, place.wellbeing_interval_days, today):
            registered_on = (volunteer.created_at or now).astimezone(place.zone).date()
            due_on = next_check_in(registered_on, last_due, place.wellbeing_interval_days)
            if due_on > today:
                continue
            check_in = CheckIn(id=check_in_id(volunteer.id, due_on), volunteer_id=volunteer.id,
                               community=place.slug, due_on=due_on, prompted_at=now)
            if not uow.check_ins.claim(check_in):
                continue  # another timer asked them
            uow.publish(WellbeingPrompted(checkin_id=check_in.id, volunteer_id=volunteer.id, community=place.slug,
                                          phone=volunteer.phone, language=volunteer.first_language, due_on=due_on))
            asked += 1
        uow.commit()
    return asked


# --- hours given beyond tasks: group activities run, training delivered -------------------------------------------

def add_contributions(uow, given: ActivityLogged) -> int:
    """Add the hours each volunteer gave to a group activity (or training delivered: another service may call this,
    or publish activity.logged with `source="training"`) to their own hours, once per volunteer per activity however
    often it is delivered. Volunteers not of the activity's community are left out (it was logged for that
    community's roster). How many were added."""
    added = 0
    for line in given.volunteers:
        volunteer = uow.volunteers.get(line.volunteer_id, SYSTEM)
        if volunteer is None or volunteer.community != given.community:
            continue
        added += uow.contributions.add(Contribution(
            volunteer_id=volunteer.id, community=given.community, source=given.source, source_id=given.activity_id,
            kind=given.kind, held_on=given.held_on, hours=line.hours))
    uow.commit()
    return added


def community_of_number(to_phone: str) -> str:
    """The community whose SMS number this is; the first community, for a number no community sends from."""
    return next((c.slug for c in all_communities().values() if c.sms_from == to_phone), None) or default_slug()


def _join_link(uow, sms: SmsReceived, public_url: str, correlation_id: str | None) -> None:
    """Answer JOIN with the link to the community's page for applying, in the community's language."""
    slug = community_of_number(sms.to_phone)
    uow.publish(ReplyAnswered(phone=sms.from_phone, message_sid=sms.message_sid, community=slug, answer="join",
                              language=community(slug).language, link=f"{public_url}/join/{slug}"),
                correlation_id=correlation_id)


def _own_view(uow, volunteer: Volunteer, sms: SmsReceived, now: datetime, correlation_id: str | None) -> None:
    """MY: their upcoming tasks; AWAY: record the days away (matching's rules then offer them nothing on those
    days); HOURS: their hours this year. Answered through notify, in their language; never the person's name."""
    answer: dict[str, Any] = {}
    if sms.keyword == "MY":
        tasks = upcoming(uow.offers.tasks_of(volunteer.id), now)[:TASKS_LISTED]
        answer = {"answer": "tasks", "tasks": [TaskLine(code=offer.code, support_type=request.support_type,
                                                        area=request.area, **when) for offer, request, when in tasks]}
    elif sms.keyword == "AWAY":
        today = now.astimezone(community(volunteer.community).zone).date()
        if sms.away_from is None or sms.away_until is None or time_away_problems(sms.away_from, sms.away_until,
                                                                                  today):
            answer = {"answer": "away_unclear"}
        else:
            volunteer.away(sms.away_from, sms.away_until)
            answer = {"answer": "away", "away_from": sms.away_from, "away_until": sms.away_until}
    elif sms.keyword == "HOURS":
        year = now.astimezone(community(volunteer.community).zone).year
        hours, done = uow.offers.hours_in(volunteer.id, year, community(volunteer.community).zone)
        answer = {"answer": "hours", "year": year, "year_hours": hours, "year_tasks": done}
    uow.publish(ReplyAnswered(phone=sms.from_phone, message_sid=sms.message_sid, community=volunteer.community,
                              language=volunteer.first_language, **answer), correlation_id=correlation_id)


def upcoming(tasks: list[tuple[Offer, MatchRequest]], now: datetime) -> list[tuple[Offer, MatchRequest, dict]]:
    """The tasks still to do (accepted, and not over), each with its own window (its occurrence's), soonest first;
    those without a fixed time ("any weekday afternoon") last."""
    found = []
    for offer, request in tasks:
        if offer.status != "accepted":
            continue
        when = request.when()
        if when["window_start"] and when["window_end"]:
            earlier = timedelta(weeks=(request.repeat_every_weeks or 1) * (request.occurrence - offer.occurrence))
            when = {**when, "window_start": when["window_start"] - earlier, "window_end": when["window_end"] - earlier}
            if when["window_end"] < now:
                continue
        found.append((offer, request, when))
    return sorted(found, key=lambda t: (t[2]["window_start"] is None, t[2]["window_start"] or now))


def _answer(uow, volunteer: Volunteer, sms: SmsReceived, policy: Policy, now: datetime,
            correlation_id: str | None) -> None:
    """YES, NO, DONE or CANCEL: find the one offer it is about, lock its request, and act."""
    wanted = ANSWERS[sms.keyword]
    offers = uow.offers.of_volunteer(volunteer.id, wanted, sms.code)
    if len(offers) != 1:  # a code that is not theirs or no longer open, or a bare YES with several open: say so
        reason = "several_open" if len(offers) > 1 else "no_such_offer" if sms.code else "nothing_open"
        _unresolved(uow, sms, correlation_id, reason, volunteer, [o.code for o in offers])
        return
    request = uow.requests.lock(offers[0].request_id, SYSTEM)
    offer = uow.offers.get(offers[0].id, fresh=True)
    if offer.status not in wanted:
        return  # changed while we waited for the lock
    if sms.keyword == "YES":
        if request.status == "open":
            _accept(uow, request, offer, now)
    elif sms.keyword == "NO":
        offer.decline(now)
        _next_round_if_all_answered(uow, request, policy, now)
    elif sms.keyword == "DONE":
        if request.befriending_rhythm:
            _log_visit(uow, request, offer, sms.hours, now, sms.message_sid)
        else:
            _complete(uow, request, offer, sms.hours, policy, now)
    else:  # CANCEL: the volunteer gives the task back; it goes to the front of matching again
        if request.befriending_rhythm:
            _close_befriending(uow, offer, now, "ended_by_volunteer")
        offer.give_back(now)
        request.given_back_by_volunteer()
        _publish(uow, request, TaskGivenBack(request_id=request.request_id, offer_id=offer.id,
                                             volunteer_id=volunteer.id))
        uow.flush()
        _offer_next(uow, request, policy, now)


def _complete(uow, request: MatchRequest, offer: Offer, hours: float | None, policy: Policy, now: datetime) -> None:
    """The task is done (the volunteer texted DONE, or a coordinator recorded it for them): metrics hears of it, and
    a recurring request's next occurrence is offered, to the one who did this one first."""
    offer.complete(now, hours)
    _publish(uow, request, TaskCompleted(
        request_id=request.request_id, offer_id=offer.id, volunteer_id=offer.volunteer_id, community=request.community,
        support_type=request.support_type, hours=offer.hours, occurrence=request.occurrence,
        occurrences=request.repeat_occurrences))
    if request.has_more_occurrences():
        request.next_occurrence()
        uow.flush()
        _offer_next(uow, request, policy, now)
    else:
        request.status = "completed"


def _unresolved(uow, sms: SmsReceived, correlation_id: str | None, reason: str, volunteer: Volunteer | None = None,
                codes: list[str] | None = None) -> None:
    """Ask notify to tell the sender why their SMS did nothing (and, for an unknown number, the coordinator)."""
    uow.publish(ReplyUnresolved(phone=sms.from_phone, reason=reason, keyword=sms.keyword, code=sms.code,
                                codes=codes or [], language=volunteer.first_language if volunteer else None),
                correlation_id=correlation_id)


def offer_sent(uow, sent: SmsSent, sent_at: datetime, policy: Policy) -> None:
    """An offer's SMS went: its time to answer starts now (once)."""
    if sent.offer_id is None or sent.purpose != "offer":
        return
    offer = uow.offers.get(sent.offer_id)
    if offer is None or offer.sent_at is not None:
        return
    request = uow.requests.lock(offer.request_id, SYSTEM)
    offer = uow.offers.get(offer.id, fresh=True)
    if offer.sent_at is None:
        offer.sent(sent_at, policy.minutes_to_answer(request.urgency))
        uow.publish(OfferAnswerDue(request_id=offer.request_id, offer_id=offer.id, due_at=offer.expires_at))
        uow.commit()


def offer_failed(uow, failed: SmsFailed, policy: Policy, now: datetime) -> None:
    """An offer that could not be delivered counts as declined at once. One refused because the number opted out
    (Twilio's 21610) is the volunteer opting out: notify publishes this and contact.opted_out, which reach matching
    on different queues in either order, so whichever comes first does what `opted_out` does (the offer withdrawn,
    never asked of them again), and contact.opted_out then records the time notify saw it."""
    offer = uow.offers.get(failed.offer_id) if failed.offer_id else None
    if offer is None or offer.status != "open":
        return
    if failed.reason == "opted_out":
        opted_out(uow, offer.volunteer.phone, now, policy, now)
        return
    request = uow.requests.lock(offer.request_id, SYSTEM)
    offer = uow.offers.get(offer.id, fresh=True)
    if offer.status == "open":
        offer.status = "undeliverable"
        _next_round_if_all_answered(uow, request, policy, now)
        uow.commit()


def contact_changed(uow, phone: str, opted_out_at: datetime | None) -> None:
    """A volunteer's phone cannot take texts (it counts as opted out until a coordinator records a new number), or
    opted back in: they are offered tasks by SMS only while reachable."""
    volunteer = uow.volunteers.by_phone(phone)
    if volunteer is not None:
        volunteer.sms_opted_out_at = opted_out_at
        uow.commit()


def opted_out(uow, phone: str, at: datetime, policy: Policy, now: datetime) -> None:
    """A volunteer's phone opted out of SMS (STOP, or Twilio's error 21610): nothing more is offered to them by
    SMS, and every open offer of theirs is withdrawn at once, each request's cascade moving on, so a later YES
    wins nothing. A task they hold stays theirs, and its coordinator is told to call them. In the lock order: the
    requests first, in the order of their ids, then the volunteer, then each offer, read again."""
    volunteer = uow.volunteers.by_phone(phone)
    if volunteer is None:
        return
    live = sorted(uow.offers.of_volunteer(volunteer.id, LIVE), key=lambda o: (str(o.request_id), o.created_at))
    live = [(o.id, o.request_id) for o in live]
    requests = {request_id: uow.requests.lock(request_id, SYSTEM)
                for request_id in sorted({request_id for _, request_id in live}, key=str)}
    volunteer.sms_opted_out_at = at
    uow.flush()
    for offer_id, request_id in live:
        request = requests[request_id]
        offer = uow.offers.get(offer_id, fresh=True)
        if offer.status == "open":
            _withdraw(uow, request, offer, "opted_out")
            uow.flush()
            _next_round_if_all_answered(uow, request, policy, now)
        elif offer.status == "accepted":
            _publish(uow, request, TaskVolunteerOptedOut(
                request_id=request.request_id, offer_id=offer.id, volunteer_id=volunteer.id, code=offer.code,
                community=request.community))
    uow.commit()


# --- timed jobs -------------------------------------------------------------------------------------------------
# Two may run at once (a timer leader that lost its lock and has not yet looked, beside the new one): each claims
# the rows it works on, skipping those another transaction holds, and checks them again once claimed, so every
# expiry, cascade step and reminder happens once.

def expire_offers(uow, now: datetime, policy: Policy) -> int:
    """Expire offers nobody answered in time, and ask the next batch where a whole batch has gone quiet; how many
    offers expired. Each request is claimed (skipped while a reply, report or another run has it: the next run
    looks again) and done in a transaction of its own, so its lock is held only while it is judged."""
    expired = 0
    for request_id in uow.requests.with_offers_due(now):
        request = uow.requests.claim(request_id)
        if request is None:
            continue
        due = [o for o in request.offers if o.status == "open" and o.expires_at is not None and o.expires_at <= now]
        for offer in due:
            offer.status = "expired"
        expired += len(due)
        uow.flush()
        _next_round_if_all_answered(uow, request, policy, now)
        uow.commit()
    uow.commit()
    return expired


def remind_expiring_checks(uow, today: date, days_ahead: int = SOON_DAYS) -> int:
    """Tell the volunteer and the coordinator, once, when a check expires within `days_ahead` days; how many
    reminders went. The checks due a reminder are claimed (another run at the same moment skips them, and a
    later one sees them reminded)."""
    sent = 0
    for check, volunteer in uow.volunteers.claim_checks_to_remind(today, today + timedelta(days=days_ahead)):
        if volunteer.status == "left" or not check.needs_reminder(today, days_ahead):
            continue
        check.reminded_for = check.expires_on
        uow.publish(CheckExpiring(volunteer_id=volunteer.id, community=volunteer.community,
                                  phone=volunteer.phone, check=check.check, expires_on=check.expires_on,
                                  check_name=uow.checks.rules(volunteer.community).name(check.check)))
        sent += 1
    uow.commit()
    return sent


def remind_overdue_visits(uow, today: date) -> int:
    """Remind the volunteer of each befriending match whose visit is overdue (its rhythm and GRACE_DAYS since the
    last visit or the start), once per overdue spell, and mark it for the coordinator (`befriending.visit_overdue`);
    how many reminders went. The matches are claimed (another run at the same moment skips them, and a later one
    sees them reminded)."""
    sent = 0
    for match in uow.befriending.claim_open(today):
        if not match.needs_reminder(today):
            continue
        volunteer, offer = uow.volunteers.get(match.volunteer_id, SYSTEM), uow.offers.get(match.offer_id)
        match.reminded_for = match.since
        uow.publish(BefriendingVisitOverdue(
            match_id=match.id, request_id=match.request_id, volunteer_id=match.volunteer_id,
            community=match.community, phone=volunteer.phone, code=offer.code, language=volunteer.first_language,
            rhythm=match.rhythm, since=match.since, overdue_on=overdue_on(match.rhythm, match.since)))
        sent += 1
    uow.commit()
    return sent


def remind_applicants_waiting(uow, now: datetime) -> int:
    """Tell each community's coordinators how many of its applicants have waited at their stage longer than it
    allows (its `applicant_wait_days`), when that number has changed since they were last told
    (`applicants.waiting`: the board shows it); how many communities were told."""
    waiting = {slug: 0 for slug in all_communities()}
    for slug, since in uow.applicants.waiting_since():
        if slug in waiting and now - since > timedelta(days=community(slug).applicant_wait_days):
            waiting[slug] += 1
    told = uow.applicants.told()
    changed = {slug: count for slug, count in waiting.items() if told.get(slug, 0) != count}
    for slug, count in changed.items():
        uow.applicants.tell(slug, count, now)
        uow.publish(ApplicantsWaiting(community=slug, waiting_too_long=count,
                                      wait_days=community(slug).applicant_wait_days, as_of=now))
    uow.commit()
    return len(changed)


# --- befriending: one long-term match, visited at a rhythm ------------------------------------------------------

def _today(community_slug: str, now: datetime) -> date:
    """The day it is in a community."""
    return now.astimezone(community(community_slug).zone).date()


def _start_befriending(uow, request: MatchRequest, offer: Offer, now: datetime) -> BefriendingMatch:
    """A volunteer took a befriending request: the match starts today, for review on the request's date (else
    REVIEW_AFTER_MONTHS on)."""
    started_on = _today(request.community, now)
    match = BefriendingMatch(request_id=request.request_id, offer_id=offer.id, volunteer_id=offer.volunteer_id,
                             community=request.community, support_type=request.support_type,
                             rhythm=request.befriending_rhythm, started_on=started_on,
                             review_on=request.review_on or months_after(started_on, REVIEW_AFTER_MONTHS))
    uow.befriending.add(match)
    _publish(uow, request, BefriendingStarted(
        match_id=match.id, request_id=request.request_id, offer_id=offer.id, volunteer_id=offer.volunteer_id,
        community=request.community, support_type=request.support_type, rhythm=match.rhythm,
        started_on=match.started_on, review_on=match.review_on))
    return match


def _log_visit(uow, request: MatchRequest, offer: Offer, hours: float | None, now: datetime,
               message_sid: str | None = None) -> None:
    """A befriending visit (DONE, or a coordinator recording it): logged once per text, and the match goes on."""
    match = uow.befriending.of_offer(offer.id)
    if match is None:
        return
    visit = match.log_visit(_today(request.community, now), hours, message_sid)
    if visit is None:
        return
    uow.publish(BefriendingVisitLogged(
        match_id=match.id, request_id=request.request_id, volunteer_id=offer.volunteer_id,
        community=request.community, support_type=request.support_type, visited_on=visit.visited_on,
        hours=hours, visit=match.visits), correlation_id=request.correlation_id)


def _close_befriending(uow, offer: Offer, now: datetime, reason: str | None) -> None:
    """End a match quietly as its task ends another way (given back, or its request cancelled): no thanks, no
    completion (`reason` None: the request's cancellation says why)."""
    match = uow.befriending.of_offer(offer.id)
    if match is not None and match.open:
        match.ended_on, match.end_reason = _today(match.community, now), reason


def end_befriending(uow, actor: Actor, match_id: uuid.UUID, reason: str, now: datetime) -> BefriendingMatch:
    """End a befriending match with a reason (BEFRIENDING_END_REASONS): a coordinator's choice, or a handler's
    with `SYSTEM` (when the person has died). Its volunteer is thanked, its request completes, and metrics counts
    it (`befriending.ended`: visits and weeks, no names). ValueError for a reason not in the list; Conflict for a
    match that ended already."""
    request_id = uow.befriending.request_of(match_id, actor)
    if request_id is None:
        raise NotFound("No such befriending match.")
    request = uow.requests.lock(request_id, actor)
    match = uow.befriending.get(match_id, actor, lock=True)
    match.end(_today(match.community, now), reason)
    offer = uow.offers.get(match.offer_id, fresh=True)
    volunteer = uow.volunteers.get(match.volunteer_id, SYSTEM)
    if offer.status == "accepted":
        offer.complete(now, None)
    request.status = "completed"
    _publish(uow, request, BefriendingEnded(
        match_id=match.id, request_id=request.request_id, offer_id=offer.id, volunteer_id=match.volunteer_id,
        community=match.community, support_type=match.support_type, reason=reason, visits=match.visits,
        weeks=match.weeks(match.ended_on), phone=volunteer.phone, code=offer.code,
        language=volunteer.first_language))
    uow.commit()
    return match


def end_befriending_of_request(uow, request_id: uuid.UUID, reason: str, now: datetime) -> int:
    """End every open befriending match of a request with a reason, as the system (a handler's: the person died);
    how many ended."""
    ended = 0
    for match in uow.befriending.of_request(request_id, SYSTEM):
        if match.open:
            end_befriending(uow, SYSTEM, match.id, reason, now)
            ended += 1
    return ended


@dataclass(frozen=True)
class BefriendingView:
    """A befriending match as its coordinator sees it: whether a visit is overdue and the review is due."""

    match: BefriendingMatch
    overdue: bool
    review_due: bool
    next_visit_by: date


def befriending_of(uow, actor: Actor, request_id: uuid.UUID | None, now: datetime) -> list[BefriendingView]:
    """A request's befriending matches (None: every open one) in the actor's communities, latest first, with what
    needs the coordinator."""
    views = []
    for match in uow.befriending.of_request(request_id, actor):
        today = _today(match.community, now)
        views.append(BefriendingView(match, match.overdue(today), match.review_due(today),
                                     overdue_on(match.rhythm, match.since)))
    return views


def befriending_match(uow, actor: Actor, match_id: uuid.UUID, now: datetime) -> BefriendingView:
    """One befriending match in the actor's communities; NotFound otherwise."""
    match = uow.befriending.get(match_id, actor)
    if match is None:
        raise NotFound("No such befriending match.")
    today = _today(match.community, now)
    return BefriendingView(match, match.overdue(today), match.review_due(today), overdue_on(match.rhythm, match.since))


# --- volunteers, for coordinators ---------------------------------------------------------------------------------

def _place_of(profile: dict[str, Any]) -> Place | None:
    """Where a profile says the volunteer lives: a postcode through the gazetteer (unless latitude and longitude
    are given too), or latitude and longitude alone; None if it does not say."""
    if "postcode" in profile:
        found = gazetteer.locate(profile["postcode"])
        return Place(latitude=profile.get("latitude", found.latitude), longitude=profile.get("longitude",
                     found.longitude), postcode=profile["postcode"], area=found.district)
    if "latitude" in profile:
        return Place(latitude=profile["latitude"], longitude=profile["longitude"])
    return None


def _known_checks(uow, community_slug: str, profile: dict[str, Any]) -> dict[str, Any]:
    """The profile with its checks the community's own (Invalid, naming each entry, for a check it does not have
    or has retired), each without an expiry date given expiring as its check type says (`check_expires_on`)."""
    if not profile.get("checks"):
        return profile
    rules = uow.checks.rules(community_slug)
    active = rules.active()
    unknown = {n: {"check": [f"Must be one of: {', '.join(active)}."]}
               for n, given in enumerate(profile["checks"]) if given["check"] not in active}
    if unknown:
        raise Invalid({"checks": unknown})
    checks = [{**given, "expires_on": given.get("expires_on") or rules.expires_on(given["check"], given["done_on"])}
              for given in profile["checks"]]
    return {**profile, "checks": checks}


def _register(uow, community_slug: str, profile: dict[str, Any]) -> Volunteer:
    """Add a volunteer to a community, and tell metrics they joined (their id, community and status only)."""
    profile = _known_checks(uow, community_slug, profile)
    volunteer = Volunteer(community=community_slug)
    volunteer.update(profile, _place_of(profile))
    uow.volunteers.add(volunteer)
    uow.publish(VolunteerRegistered(volunteer_id=volunteer.id, community=volunteer.community,
                                    status=volunteer.status))
    return volunteer


def _change_status(uow, volunteer: Volunteer, status: str) -> None:
    """Pause, resume or record that a volunteer left, and tell metrics when it is a change."""
    previous = volunteer.change_status(status)
    if previous is not None:
        uow.publish(VolunteerStatusChanged(volunteer_id=volunteer.id, community=volunteer.community, status=status,
                                           previous=previous))


def register_volunteer(uow, actor: Actor, profile: dict[str, Any], key: Idempotency | None = None,
                       render: Callable[[Volunteer], dict[str, Any]] = lambda v: {}) -> Created:
    """Register a trained volunteer (a validated profile) in the actor's community; with an Idempotency-Key, once:
    a retry with the same body gets the first answer (`render`ed in the same transaction) again."""
    if (earlier := replay(uow.answers, actor, key)) is not None:
        return earlier
    if uow.volunteers.phones_taken([profile["phone"]]):
        raise Conflict("A volunteer with this phone number is already registered.")
    volunteer = _register(uow, actor.community, profile)
    uow.flush()  # stored before its answer is made, with every default filled in
    created = keep(uow.answers, actor, key, volunteer, render(volunteer))
    uow.commit()
    return created


def _visible_volunteer(uow, actor: Actor, volunteer_id: uuid.UUID) -> Volunteer:
    """A volunteer of one of the actor's communities; NotFound otherwise."""
    volunteer = uow.volunteers.get(volunteer_id, actor)
    if volunteer is None:
        raise NotFound("No such volunteer.")
    return volunteer


def update_volunteer(uow, actor: Actor, volunteer_id: uuid.UUID, changes: dict[str, Any]) -> Volunteer:
    """Change a volunteer: only the fields given; checks given replace those of the same kind, time away given
    replaces the list, and a status pauses, resumes or records that they left."""
    volunteer = _visible_volunteer(uow, actor, volunteer_id)
    changes = dict(changes)
    if "phone" in changes and uow.volunteers.phones_taken([changes["phone"]], other_than=volunteer.id):
        raise Conflict("Another volunteer has this phone number.")
    changes = _known_checks(uow, volunteer.community, changes)
    if "status" in changes:
        _change_status(uow, volunteer, changes.pop("status"))
    volunteer.update(changes, _place_of(changes))
    uow.commit()
    return volunteer


@dataclass(frozen=True)
class VolunteerRecord:
    """A volunteer with their latest offers and tasks, as a coordinator looks them up."""

    volunteer: Volunteer
    offers: list[Offer]
    contributions: list[Contribution] = ()  # group activities run, training delivered: their hours
    check_ins: list[CheckIn] = ()  # wellbeing check-ins, the latest first
    year_hours: float = 0.0  # this year's hours, as HOURS by SMS says them (tasks, visits, activities)


def volunteer_record(uow, actor: Actor, volunteer_id: uuid.UUID, now: datetime | None = None) -> VolunteerRecord:
    """A volunteer, with their latest offers and tasks, the activities they ran, their check-ins, and their hours
    this year."""
    volunteer = _visible_volunteer(uow, actor, volunteer_id)
    zone = community(volunteer.community).zone
    year = (now or clock.utcnow()).astimezone(zone).year
    return VolunteerRecord(volunteer, uow.offers.latest_to(volunteer.id), uow.contributions.of_volunteer(volunteer.id),
                           uow.check_ins.of_volunteer(volunteer.id), uow.offers.hours_in(volunteer.id, year, zone)[0])


def list_volunteers(uow, actor: Actor, page, today: date, status: str | None = None,
                    expiring_within_days: int | None = None) -> list[Volunteer]:
    """One page of the actor's communities' volunteers by name: with a status, or with a check expiring soon."""
    expiring_by = today + timedelta(days=expiring_within_days) if expiring_within_days is not None else None
    return uow.volunteers.listing(actor, page, status=status, expiring_by=expiring_by)


@dataclass(frozen=True)
class VolunteerSheet:
    """A coordinator's spreadsheet as read: how many rows, each valid row's profile by line, and each problem
    ({"line", "field", "detail"}) of the others."""

    rows: int
    valid: list[tuple[int, dict[str, Any]]]
    problems: list[dict[str, Any]]


def import_volunteers(uow, actor: Actor, sheet: VolunteerSheet, skip_invalid: bool = False) -> dict[str, Any]:
    """Add a spreadsheet's volunteers: all of them, or none while any row is bad unless `skip_invalid`. A phone
    already registered, or twice in the sheet, is a bad row. Returns counts and each bad row's problems."""
    problems = list(sheet.problems)
    known = uow.volunteers.phones_taken(profile["phone"] for _, profile in sheet.valid)
    seen: dict[str, int] = {}
    good = []
    for line, profile in sheet.valid:
        phone = profile["phone"]
        try:
            profile = _known_checks(uow, actor.community, profile)
        except Invalid as err:
            problems += [{"line": line, "field": f"{profile['checks'][n]['check']}_done", "detail": why["check"][0]}
                         for n, why in err.messages["checks"].items()]
            continue
        if phone in known:
            problems.append({"line": line, "field": "phone", "detail": "A volunteer with this phone is registered."})
        elif phone in seen:
            problems.append({"line": line, "field": "phone", "detail": f"The same phone as line {seen[phone]}."})
        else:
            seen[phone] = line
            good.append(profile)
    problems.sort(key=lambda problem: problem["line"])
    if problems and not skip_invalid:
        return {"imported": 0, "rows": sheet.rows, "errors": problems}
    for profile in good:
        _register(uow, actor.community, profile)
    uow.commit()
    return {"imported": len(good), "rows": sheet.rows, "errors": problems}


@dataclass(frozen=True)
class Roster:
    """A community's volunteers, their tasks this month, and the checks that have run out or soon will."""

    volunteers: list[Volunteer]
    tasks: Counter
    attention: list[tuple[Volunteer, VolunteerCheck, str]]  # with "expired" or "expiring", soonest first


def roster(uow, actor: Actor, today: date, status: str | None = None) -> Roster:
    """The actor's communities' volunteers by name (with a status), with the checks needing attention first."""
    volunteers = uow.volunteers.roster(actor, status)
    month = datetime.combine(today.replace(day=1), time.min, tzinfo=community(actor.community).zone)
    tasks = uow.offers.tasks_since([v.id for v in volunteers], month)
    attention = sorted(((v, c, c.state(today)) for v in volunteers for c in v.checks if c.state(today) != "valid"),
                       key=lambda item: item[1].expires_on)
    return Roster(volunteers, tasks, attention)


def volunteer_tasks(uow, actor: Actor, volunteer_id: uuid.UUID) -> tuple[Volunteer, list[tuple[Offer, MatchRequest]]]:
    """A volunteer and the tasks they took, with their requests, latest first."""
    volunteer = _visible_volunteer(uow, actor, volunteer_id)
    return volunteer, uow.offers.tasks_of(volunteer.id)


ASSIGNED_SHOWN = 500  # the board shows at most 200 requests; this is every task a community holds at once


def assigned(uow, actor: Actor) -> list[tuple[uuid.UUID, uuid.UUID, str, str]]:
    """Who holds each of the actor's communities' requests now, as (request id, volunteer id, name, phone), latest
    first."""
    return uow.offers.assigned(actor, ASSIGNED_SHOWN)


# --- how a request is matched, for coordinators --------------------------------------------------------------

def _visible_request(request: MatchRequest | None) -> MatchRequest:
    """The request the actor's scope found; NotFound when it found none."""
    if request is None:
        raise NotFound("Matching has not heard of this request.")
    return request


def _report(uow, request: MatchRequest, policy: Policy, now: datetime, rank: bool = True) -> dict[str, Any]:
    """The request's candidates in order with their reasons, what ruled the others out, and its offers; without
    `rank`, the candidates only while someone could still be asked (the community is not ranked for a request
    that is matched or has ended)."""
    if rank or request.status in ("open", "unmatched"):
        candidates, excluded = candidates_for(uow, request, policy, now, everyone=True)
    else:
        candidates, excluded = [], Counter()
    rules = uow.checks.rules(request.community)
    return {
        "request_id": request.request_id, "status": request.status, "round": request.round,
        "unmatched_reason": request.unmatched_reason,
        "candidates": [{"rank": n, "volunteer_id": c.volunteer.id, "name": c.volunteer.name,
                        "distance_km": round(c.distance_km, 2), "score": c.score, "reasons": list(c.reasons)}
                       for n, c in enumerate(candidates, start=1)],
        "excluded": {rule_text(rule, rules): n for rule, n in excluded.most_common()},
        "explanation": explain(excluded, rules) if excluded else "",
        "offers": list(request.offers),
    }


def explain_match(uow, actor: Actor, request_id: uuid.UUID, policy: Policy, now: datetime,
                  rank: bool = True) -> dict[str, Any]:
    """Who could be asked for a request, in what order and why, and which rule ruled out how many (`rank` False:
    only while someone could still be asked, as a request's page shows it)."""
    return _report(uow, _visible_request(uow.requests.get(request_id, actor)), policy, now, rank)


def assign(uow, actor: Actor, request_id: uuid.UUID, volunteer_id: uuid.UUID, policy: Policy,
           now: datetime) -> dict[str, Any]:
    """Give the task to a volunteer a coordinator chose (who must be eligible, or have been asked already); open
    offers are withdrawn."""
    request = _visible_request(uow.requests.lock(request_id, actor))
    if request.status not in ("open", "unmatched"):
        raise Conflict(f"A {request.status} request cannot be assigned.")
    volunteer = _visible_volunteer(uow, actor, volunteer_id)
    candidates, _ = candidates_for(uow, request, policy, now, everyone=True)
    if volunteer.id not in {c.volunteer.id for c in candidates} and volunteer.id not in {
            o.volunteer_id for o in request.offers}:
        raise Conflict("That volunteer is not eligible for this request; see GET /matches/<id>.")
    offer = next((o for o in request.current_offers() if o.volunteer_id == volunteer.id and o.status == "open"),
                 None) or make_offers(uow, request, [(volunteer, 0.0)], now)[0]
    request.status = "open"
    _accept(uow, request, offer, now, by="coordinator")
    report = _report(uow, request, policy, now)
    uow.commit()
    return report


def complete_for_volunteer(uow, actor: Actor, request_id: uuid.UUID, hours: float | None, policy: Policy,
                           now: datetime) -> None:
    """A coordinator records that the volunteer holding the task did it (they phoned in rather than texting DONE),
    with the hours they gave."""
    request = _visible_request(uow.requests.lock(request_id, actor))
    offer = next((o for o in request.current_offers() if o.status == "accepted"), None)
    if request.status != "matched" or offer is None:
        raise Conflict(f"Only a matched task can be marked done; this request is {request.status}.")
    if request.befriending_rhythm:
        _log_visit(uow, request, offer, hours, now)
    else:
        _complete(uow, request, offer, hours, policy, now)
    uow.commit()


def rerun(uow, actor: Actor, request_id: uuid.UUID, policy: Policy, now: datetime) -> dict[str, Any]:
    """Match an unmatched request again, from the first round."""
    request = _visible_request(uow.requests.lock(request_id, actor))
    if request.status != "unmatched":
        raise Conflict(f"Only an unmatched request can be matched again; this one is {request.status}.")
    request.start_again()
    _offer_next(uow, request, policy, now)
    report = _report(uow, request, policy, now)
    uow.commit()
    return report


# --- erasure and subject access ---------------------------------------------------------------------------------

def forget_person(uow, erased: PersonErased) -> None:
    """A person was erased: matching holds no name, phone, address or notes of anyone it helps, only a pseudonym
    that links their requests (so the volunteer who helped before is asked first); that link goes. Each request is
    locked as every change to a request is. In the handler's unit of work."""
    for request_id in erased.request_ids:
        request = uow.requests.lock(request_id, SYSTEM)
        if request is not None and request.community == erased.community:
            request.person_ref = ""


def held_about(uow, request_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """What matching holds about these requests (a subject access export): its record of each request, and each
    offer of it (the volunteers by id: who they are is theirs)."""
    with uow:
        held = []
        for request_id in request_ids:
            request = uow.requests.get(request_id, SYSTEM)
            if request is None:
                continue
            row = {name: value for name, value in vars(request).items() if not name.startswith("_")
                   and name != "offers"}
            row["offers"] = [{name: value for name, value in vars(offer).items() if not name.startswith("_")}
                             for offer in request.offers]
            held.append(row)
        return held


# --- people applying to volunteer, and the coordinators' pipeline ------------------------------------------------

HOUR = timedelta(hours=1)


def apply(uow, community_slug: str, details: dict[str, Any], address: str, now: datetime) -> Applicant:
    """Take an application from the community's public page (validated `details`) and ask notify to acknowledge it
    by SMS, in the community's language; TooManyApplications (nothing stored) when the address (a keyed hash of it)
    sent as many as an hour allows."""
    if uow.applicants.recent_from(address, now - HOUR) >= APPLICATIONS_PER_HOUR:
        raise TooManyApplications("Too many applications have come from this connection in the last hour. Please "
                                  "try again later, or call your local Compassionate Communities team.")
    place = community(community_slug)
    applicant = Applicant(community=place.slug, name=details["name"], phone=details["phone"],
                          postcode=details["postcode"], kinds=list(details["kinds"]), language=place.language,
                          applied_at=now, stage_since=now)
    uow.applicants.add(applicant)
    uow.applicants.taken_from(address, now, now - HOUR)
    uow.publish(ApplicantApplied(applicant_id=applicant.id, community=applicant.community, phone=applicant.phone,
                                 language=applicant.language))
    uow.commit()
    return applicant


def applicants(uow, actor: Actor, stage: str | None = None) -> list[Applicant]:
    """The actor's community's applicants (at a stage), longest waiting first."""
    return uow.applicants.listing(actor, stage)


def applicant(uow, actor: Actor, applicant_id: uuid.UUID) -> Applicant:
    """One applicant of the actor's communities, with their stages; NotFound otherwise."""
    found = uow.applicants.get(applicant_id, actor)
    if found is None:
        raise NotFound("No such applicant.")
    return found


APPROVED_PROFILE = {"max_distance_km": 10.0, "weekly_cap": 3}  # an approved applicant's until a coordinator edits


def move_applicant(uow, actor: Actor, applicant_id: uuid.UUID, stage: str, now: datetime,
                   reason: str | None = None) -> Applicant:
    """Move an applicant on a stage, or out of the pipeline with a reason, recording who did it and when. Approved,
    they become an active volunteer with what they gave (name, phone, postcode, the skills their kinds of help need,
    the community's language); checks are recorded on the volunteer as for anyone. Conflict for a move out of order
    or a phone a volunteer has already; ValueError for a withdrawal or decline without a reason."""
    found = uow.applicants.get(applicant_id, actor, lock=True)
    if found is None:
        raise NotFound("No such applicant.")
    if stage == "approved" and found.stage == "training":
        if uow.volunteers.phones_taken([found.phone]):
            raise Conflict("A volunteer with this phone number is already registered.")
        if not found.skills():
            raise Conflict("None of the kinds of help they chose is offered to volunteers; decline with a reason.")
    found.move(stage, now, actor.subject, actor.role, reason)
    if stage == "approved":
        volunteer = _register(uow, found.community, {
            "name": found.name, "phone": found.phone, "postcode": found.postcode, "skills": found.skills(),
            "languages": [found.language], "checks": [
                _granted(uow.checks.rules(found.community), kept["check"], date.fromisoformat(kept["done_on"]))
                for kept in found.kept_checks], **APPROVED_PROFILE})
        uow.flush()  # the volunteer is stored before the applicant names them
        found.volunteer_id = volunteer.id
    uow.commit()
    return found


# --- training sessions: scheduled, invited to by SMS, answered YES or NO, attended ---------------------------------
# Lock order: the session's row first (`uow.training.get(..., lock=True)`: every answer and attendance holds it, so
# capacity is judged one answer at a time), then the volunteer or applicant a check is granted to.

def schedule_session(uow, actor: Actor, details: dict[str, Any], now: datetime) -> TrainingSession:
    """Schedule a session in the actor's community (validated `details`); a public one gets a code of its own,
    which anyone may text (YES <code>) to sign up. Invalid when it grants a check the community does not have (or
    has retired)."""
    if details.get("grants") and details["grants"] not in (active := uow.checks.rules(actor.community).active()):
        raise Invalid({"grants": [f"Not a check of this community: choose from {', '.join(active)}."]})
    training = TrainingSession(community=actor.community, created_at=now, **details)
    if training.public:
        training.code = _free_code(uow)
    uow.training.add(training)
    uow.commit()
    return training


def training_sessions(uow, actor: Actor) -> list[TrainingSession]:
    """The actor's communities' sessions, soonest first."""
    return uow.training.listing(actor)


def training_session(uow, actor: Actor, session_id: uuid.UUID, lock: bool = False) -> TrainingSession:
    """One session of the actor's communities; NotFound otherwise."""
    found = uow.training.get(session_id, actor, lock=lock)
    if found is None:
        raise NotFound("No such training session.")
    return found


def invitable(uow, actor: Actor, training: TrainingSession) -> tuple[list[Applicant], list[Volunteer]]:
    """Who a session may invite and has not: its community's applicants at checks or training, and its active
    volunteers (a public session invites neither: people sign up, or are added by phone)."""
    if training.public:
        return [], []
    phones = {i.phone for i in training.invitations}
    scope = Actor(actor.subject, actor.role, (training.community,))
    applicants_ = [a for a in uow.applicants.listing(scope) if a.stage in INVITED_STAGES and a.phone not in phones]
    volunteers = [v for v in uow.volunteers.roster(scope, "active") if v.phone not in phones]
    return applicants_, volunteers


def invite(uow, actor: Actor, session_id: uuid.UUID, now: datetime, applicant_ids: list[uuid.UUID] = (),
           volunteer_ids: list[uuid.UUID] = (), people: list[dict[str, Any]] = ()) -> list[Invitation]:
    """Invite applicants (at checks or training) and volunteers of the session's community, each texted an
    invitation with a code of its own; or, to a public session, add members of the public (a phone, and a name if
    given) as booked. Someone invited already is left as they are. NotFound for an applicant or volunteer not in
    the community; Conflict for an applicant at another stage, or people added to a session that is not public."""
    training = training_session(uow, actor, session_id, lock=True)
    scope = Actor(actor.subject, actor.role, (training.community,))
    made, taken = [], uow.offers.codes_in_use()
    for applicant_id in applicant_ids:
        found = uow.applicants.get(applicant_id, scope)
        if found is None:
            raise NotFound("No such applicant.")
        if found.stage not in INVITED_STAGES:
            raise Conflict("Only applicants at checks or training are invited to training.")
        made.append(_invite(uow, training, found.phone, now, taken, applicant_id=found.id, name=found.name,
                            language=found.language))
    for volunteer_id in volunteer_ids:
        volunteer = _visible_volunteer(uow, scope, volunteer_id)
        made.append(_invite(uow, training, volunteer.phone, now, taken, volunteer_id=volunteer.id,
                            name=volunteer.name, language=volunteer.first_language or "en"))
    if people and not training.public:
        raise Conflict("Members of the public are added to public sessions only.")
    for person in people:
        invitation = _invite(uow, training, person["phone"], now, taken, name=person.get("name"),
                             language=community(training.community).language, text=False)
        if invitation is not None:
            training.answer(invitation, True, now)
            made.append(invitation)
    uow.commit()
    return [i for i in made if i is not None]


def _invite(uow, training: TrainingSession, phone: str, now: datetime, taken: set[str], text: bool = True,
            **who: Any) -> Invitation | None:
    """Invite one phone (None if it was invited already), with a new code, and have notify text them."""
    if any(i.phone == phone for i in training.invitations):
        return None
    invitation = training.invite(phone, _free_code(uow, taken), now, **who)
    if text:
        uow.publish(TrainingInvited(invitation_id=invitation.id, session_id=training.id, community=training.community,
                                    phone=phone, language=invitation.language, code=invitation.code,
                                    topic=training.topic, starts_at=training.starts_at, where=training.where()))
    return invitation


def _answer_invitation(uow, volunteer: Volunteer | None, sms: SmsReceived, now: datetime,
                       correlation_id: str | None) -> bool:
    """A YES or NO about a training invitation: the one it names (or the only one open, when it names none), or a
    YES with a public session's code (signing up). Ambiguous (an invitation and an offer, or two invitations, open
    and no code), it asks which. False when it is about no invitation: an offer's answer, handled as before."""
    wanted = INVITATION_ANSWERS[sms.keyword]
    invitations = uow.training.answerable(sms.from_phone, wanted, sms.code)
    public = uow.training.public_by_code(sms.code) if sms.code and not invitations else None
    if not invitations and (public is None or sms.keyword != "YES"):
        return False
    offers = uow.offers.of_volunteer(volunteer.id, ANSWERS[sms.keyword], sms.code) if volunteer else []
    if len(invitations) + len(offers) > 1:
        _unresolved(uow, sms, correlation_id, "several_open", volunteer,
                    [o.code for o in offers] + [i.code for i in invitations])
        return True
    training = uow.training.get(public.id if public else invitations[0].session_id, SYSTEM, lock=True)
    if public is not None:  # signing up to a public session by its code
        language = (volunteer.first_language if volunteer else None) or community(training.community).language
        invitation = next((i for i in training.invitations if i.phone == sms.from_phone), None) or _invite(
            uow, training, sms.from_phone, now, uow.offers.codes_in_use(), text=False,
            name=volunteer.name if volunteer else None, language=language)
    else:
        invitation = next(i for i in training.invitations if i.id == invitations[0].id)
    if invitation.status not in wanted or invitation.attended_on is not None:
        return True  # answered another way while we waited for the session's lock
    answer = training.answer(invitation, sms.keyword == "YES", now)
    if answer != "unchanged":
        uow.publish(TrainingAnswered(
            invitation_id=invitation.id, session_id=training.id, community=training.community, phone=sms.from_phone,
            language=invitation.language, message_sid=sms.message_sid, answer=answer, code=invitation.code,
            topic=training.topic, starts_at=training.starts_at, where=training.where()),
            correlation_id=correlation_id)
    return True


def _granted(rules: CheckRules, check: str, done_on: date) -> dict[str, Any]:
    """A check granted by training, as a volunteer's profile records it: it expires as the community's check type
    says (`check_expires_on`)."""
    return {"check": check, "done_on": done_on, "expires_on": rules.expires_on(check, done_on)}


def record_attendance(uow, actor: Actor, session_id: uuid.UUID, invitation_ids: list[uuid.UUID], now: datetime,
                      secret_key: str) -> TrainingSession:
    """Record who came (on the session's day, in its community): each is counted by metrics as a person accessing
    education (a keyed digest of their phone), and given the check the session grants: a volunteer at once, as
    their page records a check; an applicant when approved (kept until then). Recorded twice, nothing happens
    twice. NotFound for an invitation not of this session; Conflict before the session has begun."""
    training = training_session(uow, actor, session_id, lock=True)
    by_id = {i.id: i for i in training.invitations}
    if any(i not in by_id for i in invitation_ids):
        raise NotFound("No such invitation to this session.")
    if training.starts_at > now:
        raise Conflict("Attendance is recorded once the session has begun.")
    day = training.starts_at.astimezone(community(training.community).zone).date()
    for invitation_id in invitation_ids:
        invitation = by_id[invitation_id]
        if not training.attended(invitation, day):
            continue
        if training.grants:
            _grant(uow, invitation, training.grants, day, uow.checks.rules(training.community))
        uow.publish(TrainingAttended(invitation_id=invitation.id, session_id=training.id, community=training.community,
                                     public=training.public, attendee=attendee_digest(invitation.phone, secret_key),
                                     attended_on=day, granted=training.grants))
    uow.commit()
    return training


def _grant(uow, invitation: Invitation, check: str, day: date, rules: CheckRules) -> None:
    """Give the check a session grants: to the volunteer (their applicant record's, once approved), else kept on
    the applicant for their approval."""
    volunteer_id = invitation.volunteer_id
    found = uow.applicants.get(invitation.applicant_id, SYSTEM, lock=True) if invitation.applicant_id else None
    if found is not None and found.volunteer_id is not None:
        volunteer_id = found.volunteer_id
    if volunteer_id is not None:
        uow.volunteers.get(volunteer_id, SYSTEM).update({"checks": [_granted(rules, check, day)]})
    elif found is not None:
        found.kept_checks = [*(k for k in found.kept_checks if k["check"] != check),
                             {"check": check, "done_on": day.isoformat()}]
# --- checks and training as data: a community's administrators define them -----------------------------------

@dataclass(frozen=True)
class CheckRulesView:
    """A community's check types and requirements as matching applies them now, and the latest changes to them."""

    community: str
    rules: CheckRules
    changes: list[CheckRuleChange]


def check_rules(uow, actor: Actor) -> CheckRulesView:
    """The actor's community's check types (retired ones too), which kinds of help need which, and who changed what."""
    return CheckRulesView(actor.community, uow.checks.rules(actor.community), uow.checks.changes(actor.community))


def _audit(uow, actor: Actor, subject: str, before: dict[str, Any] | None, after: dict[str, Any],
           now: datetime) -> None:
    """Record a change to the community's rules: who, when, before and after."""
    uow.checks.add(CheckRuleChange(community=actor.community, subject=subject, before=before, after=after, at=now,
                                   actor=actor.subject, role=actor.role))


def add_check_type(uow, actor: Actor, data: dict[str, Any], now: datetime) -> CheckType:
    """Add a check or training to the actor's community (a validated `key`, `name`, `evidence`, `lasts_months`):
    it can be recorded for volunteers and required for kinds of help from now on. Invalid for a key it has."""
    community = actor.community
    uow.checks.changing(community)
    if data["key"] in uow.checks.rules(community).types:
        raise Invalid({"key": ["This community has a check with this key already: choose another, or change it."]})
    if problems := check_type_problems(data["name"], data.get("lasts_months")):
        raise Invalid({name: [why] for name, why in problems.items()})
    added = CheckType(community=community, key=data["key"], name=data["name"].strip(),
                      evidence=(data.get("evidence") or "").strip(), lasts_months=data.get("lasts_months"))
    uow.checks.add(added)
    _audit(uow, actor, f"check_type:{added.key}", None, added.facts(), now)
    uow.commit()
    return added


def change_check_type(uow, actor: Actor, key: str, changes: dict[str, Any], now: datetime) -> CheckType:
    """Rename a check of the actor's community, change its evidence or how long it lasts, or retire it (or bring it
    back): only the fields given. It applies from now on: checks recorded before keep their dates, offers made
    stay. NotFound for a check the community does not have."""
    community = actor.community
    uow.checks.changing(community)
    current = uow.checks.rules(community).types.get(key)
    if current is None:
        raise NotFound("This community has no such check.")
    if problems := check_type_problems(changes.get("name"), changes.get("lasts_months")):
        raise Invalid({name: [why] for name, why in problems.items()})
    before = current.facts()
    own = uow.checks.own_type(community, key)
    if own is None:  # a default (the taxonomy's or communities.json's) the community now words its own way
        own = CheckType(community=community, key=key, **before)
        uow.checks.add(own)
    for name in ("name", "evidence", "lasts_months", "retired"):
        if name in changes:
            value = changes[name]
            setattr(own, name, value.strip() if isinstance(value, str) else value)
    if own.facts() != before:
        _audit(uow, actor, f"check_type:{key}", before, own.facts(), now)
        uow.commit()
    return own


def set_requirements(uow, actor: Actor, wanted: dict[str, list[str]], now: datetime) -> dict[str, tuple[str, ...]]:
    """Set which checks kinds of help need in the actor's community (each kind given: its checks), from now on:
    volunteers without one in date are not asked for it (offers already made stay); each kind changed is audited.
    NotFound for a kind matching never offers; Invalid (naming `requires.<kind>`) for a check the community does
    not have or has retired, and then nothing changes. The checks each kind given needs now."""
    if unknown_kinds := [kind for kind in wanted if kind not in KINDS or not KINDS[kind].offered]:
        raise NotFound(f"No such kind of help: {', '.join(unknown_kinds)}.")
    community = actor.community
    uow.checks.changing(community)
    rules = uow.checks.rules(community)
    active = rules.active()
    problems = {f"requires.{kind}": [f"{', '.join(unknown)}: not a check of this community. "
                                     f"Choose from {', '.join(active)}."]
                for kind, checks in wanted.items() if (unknown := [c for c in checks if c not in active])}
    if problems:
        raise Invalid(problems)
    now_needed = {}
    for kind, checks in wanted.items():
        before = rules.needed(kind)
        now_needed[kind] = after = tuple(sorted(set(checks), key=list(rules.types).index))
        if after == before:
            continue
        own = uow.checks.own_requirement(community, kind)
        if own is None:
            uow.checks.add(KindRequirement(community=community, kind=kind, checks=list(after)))
        else:
            own.checks = list(after)
        _audit(uow, actor, f"requirement:{kind}", {"checks": list(before)}, {"checks": list(after)}, now)
    uow.commit()
    return now_needed
