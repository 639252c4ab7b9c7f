"""Notify's use cases: queue what the other services' events call for, hear the SMS phones send, send what is due
(each message at most once), record what the provider says became of it, and the conversations coordinators read.

Each takes a unit of work and the settings (and the acting user, the gateway or the time where it needs them).
The queueing use cases run in the caller's unit of work (the bus handler's, which records the event as handled
in the same transaction); the others open and commit their own.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from services.notify import domain
from services.notify.domain import InboundMessage, InboundSms, OutgoingMessage, SendFailed
from services.notify.messages import (asks_to_talk, away_dates_text, parse_reply, parse_survey_answer, render,
                                      wellbeing_score)
from shared import tracing
from shared.auth import Actor
from shared.contracts.intake import PersonDeathShared, PersonErased, SurveyQuestion, TaskDetailsShared
from shared.contracts.matching import (ApplicantApplied, BefriendingEnded, BefriendingVisitOverdue, CheckExpiring,
                                       OfferAccepted, OfferMade, OfferWithdrawn, ReplyAnswered,
                                       ReplyUnresolved, TrainingAnswered, TrainingInvited, WellbeingPrompted)
from shared.contracts.notify import (ContactInvalid, ContactOptedIn, ContactOptedOut, SmsFailed, SmsHeld, SmsReceived,
                                     SmsSent, SmsWaiting, SurveyAnswered)
from shared.telemetry import SMS

if TYPE_CHECKING:
    import threading

    from services.notify.adapters import NotifyUnitOfWork, SmsGateway
    from services.notify.bootstrap import NotifySettings

log = logging.getLogger(__name__)


# --- queueing what the other services' events call for --------------------------------------------------------------

def _queue(uow: NotifyUnitOfWork, settings: NotifySettings, now: datetime, *, key: str, purpose: str, to: str,
           body: str, correlation_id: str, community: str | None = None, urgent: bool = False,
           not_before: datetime | None = None, about: uuid.UUID | None = None) -> OutgoingMessage | None:
    """Queue an SMS for the sender, once per key, from the community's number; non-urgent ones wait until the
    community's quiet hours end. The message queued, or None when its key was queued before."""
    if uow.messages.has_key(key):
        return None
    place = settings.community(community)
    message = OutgoingMessage(
        key=key, purpose=purpose, to_phone=to, body=body, correlation_id=correlation_id,
        from_phone=place.sms_from if place else None, community=place.slug if place else None,
        traceparent=tracing.current_context().get("traceparent"), request_id=about,
        next_attempt_at=domain.send_time(now, place, urgent=urgent, not_before=not_before,
                                         quiet_hours=settings.quiet_hours))
    uow.messages.add(message)
    if place is not None and message.next_attempt_at is not None and message.next_attempt_at > max(
            not_before or now, now):  # later than it was asked for: the quiet hours hold it
        uow.messages.held(message, message.next_attempt_at.astimezone(place.zone))
    return message


def _cancel_waiting(uow: NotifyUnitOfWork, key: str, why: str) -> OutgoingMessage | None:
    """Cancel the message with this key if it has not gone yet (read afresh and locked, so a sender claiming it at
    this moment is waited for); the message, whatever became of it, or None if none was queued."""
    message = uow.messages.with_key(key, lock=True)
    if message is not None and message.status == "queued":
        message.cancel(domain.NOT_SENT[why])
    return message


def queue_offer(uow: NotifyUnitOfWork, offer: OfferMade, correlation_id: str, now: datetime,
                settings: NotifySettings) -> None:
    """Text a volunteer an offer (the kind of help, district, window and code only), in their language; one whose
    withdrawal overtook it is kept cancelled, never sent."""
    language = uow.contacts.of(offer.phone).remember_language(offer.language)
    body = domain.offer_body(offer, settings.community(offer.community), language)
    message = _queue(uow, settings, now, key=domain.offer_key(offer.offer_id), purpose="offer", to=offer.phone,
                     body=body, correlation_id=correlation_id, community=offer.community,
                     urgent=offer.urgency == "urgent", about=offer.request_id)
    if message is not None and uow.messages.has_key(domain.withdrawn_key(offer.offer_id)):
        message.cancel(domain.NOT_SENT["withdrawn"])
    elif message is not None and message.next_attempt_at is not None and message.next_attempt_at > now:
        uow.publish(SmsHeld(request_id=offer.request_id, offer_id=offer.offer_id, until=message.next_attempt_at),
                    correlation_id=correlation_id)


def task_accepted(uow: NotifyUnitOfWork, accepted: OfferAccepted, correlation_id: str, now: datetime,
                  settings: NotifySettings) -> None:
    """A volunteer has the task: the offer's SMS, if it has not gone (a coordinator assigned them while it waited
    out the quiet hours), no longer asks anything and is cancelled; the task's reminders are scheduled."""
    _cancel_waiting(uow, domain.offer_key(accepted.offer_id), "accepted")
    queue_reminders(uow, accepted, correlation_id, now, settings)


def queue_reminders(uow: NotifyUnitOfWork, accepted: OfferAccepted, correlation_id: str, now: datetime,
                    settings: NotifySettings) -> None:
    """Schedule the reminders of an accepted task with a fixed time: the day before, two hours before, and a
    prompt for DONE afterwards (the details themselves come from intake). None for a task withdrawn already
    (its withdrawal overtook its acceptance)."""
    if not (accepted.window_start and accepted.window_end) or uow.messages.has_key(
            domain.withdrawn_key(accepted.offer_id)):
        return
    language = uow.contacts.of(accepted.phone).remember_language(accepted.language)
    place = settings.community(accepted.community)
    when = domain.when_text(accepted, place, language)
    for name, at in domain.reminders_due(accepted.window_start, accepted.window_end, now):
        body = domain.reminder_body(name, accepted.code, when, place, language)
        _queue(uow, settings, now, key=f"{name}:{accepted.offer_id}", purpose="reminder", to=accepted.phone,
               body=body, correlation_id=correlation_id, community=accepted.community, not_before=at,
               about=accepted.request_id)


def queue_details(uow: NotifyUnitOfWork, shared: TaskDetailsShared, correlation_id: str, now: datetime,
                  settings: NotifySettings) -> None:
    """Tell the volunteer who accepted what they need, at once (it answers their own YES), as the offer's community
    (the event names it; an older one without it is the community the offer was texted for)."""
    language = domain.language_for(uow.contacts.get(shared.phone), shared.language)
    community = shared.community or _community_of_offer(uow, shared.offer_id)
    body = domain.details_body(shared, settings.community(community), language)
    _queue(uow, settings, now, key=f"accepted:{shared.offer_id}", purpose="confirmation", to=shared.phone,
           body=body, correlation_id=correlation_id, community=community, urgent=True, about=shared.request_id)


def _community_of_offer(uow: NotifyUnitOfWork, offer_id: uuid.UUID) -> str | None:
    """The community an offer's SMS was queued for, if it was."""
    offer = uow.messages.with_key(domain.offer_key(offer_id))
    return offer.community if offer is not None else None


def cancel_reminders(uow: NotifyUnitOfWork, offer_id: uuid.UUID) -> None:
    """Drop the reminders still waiting for a task that is no longer the volunteer's, or is done."""
    for message in uow.messages.queued_with_keys(domain.reminder_keys(offer_id)):
        message.cancel(domain.NOT_SENT["task_ended"])


def person_died(uow: NotifyUnitOfWork, shared: PersonDeathShared, correlation_id: str, now: datetime,
                settings: NotifySettings) -> None:
    """A person died: every SMS still waiting about any of their requests is cancelled (offers, reminders, one held
    for the quiet hours), and each volunteer who had one of their tasks is told, by the person's first name, in
    their own language and the community's wording, after its quiet hours. Nothing else is texted about them."""
    for message in uow.messages.waiting_about(shared.request_ids):
        message.cancel(domain.NOT_SENT["died"])
    place = settings.community(shared.community)
    for phone, request_id in uow.messages.helpers_of(shared.request_ids).items():
        language = domain.language_for(uow.contacts.get(phone), None)
        _queue(uow, settings, now, key=f"died:{request_id}:{phone}", purpose="condolence", to=phone,
               body=domain.died_body(shared.first_name, place, language), correlation_id=correlation_id,
               community=shared.community, about=request_id)


def queue_withdrawn(uow: NotifyUnitOfWork, withdrawn: OfferWithdrawn, correlation_id: str, now: datetime,
                    settings: NotifySettings) -> None:
    """An offer withdrawn: its SMS, if it has not gone, is cancelled, and so are its task's reminders. A volunteer
    whose offer SMS went is told it is no longer open, so a late YES is not a surprise: in the language the event
    gives, from the offer's community's number, after its quiet hours, and never before the offer itself (the
    sender waits for it). Where no text is due (the offer never went, or they opted out) it is kept cancelled,
    so an offer whose withdrawal overtook it is never sent either."""
    cancel_reminders(uow, withdrawn.offer_id)
    offer = _cancel_waiting(uow, domain.offer_key(withdrawn.offer_id), "withdrawn")
    language = domain.language_for(uow.contacts.get(withdrawn.phone), withdrawn.language)
    body = domain.withdrawn_body(withdrawn, settings.community(withdrawn.community), language)
    message = _queue(uow, settings, now, key=domain.withdrawn_key(withdrawn.offer_id), purpose="withdrawn",
                     to=withdrawn.phone, body=body, correlation_id=correlation_id, community=withdrawn.community,
                     about=withdrawn.request_id)
    if message is None:
        return
    if withdrawn.reason == "opted_out":
        message.cancel(domain.NOT_SENT["opted_out"])
    elif withdrawn.reason == "died":  # the volunteers who helped are told otherwise (person_died)
        message.cancel(domain.NOT_SENT["died"])
    elif domain.closed_text_fate(offer) == "cancel":
        message.cancel(domain.NOT_SENT["never_offered"])


def queue_answer(uow: NotifyUnitOfWork, unresolved: ReplyUnresolved, event_id: uuid.UUID, correlation_id: str,
                 now: datetime, settings: NotifySettings) -> None:
    """Answer an SMS that did nothing, at once, saying why and what to send instead: from the number it was sent to,
    as that number's community."""
    language = domain.language_for(uow.contacts.get(unresolved.phone), unresolved.language)
    texted = uow.inbound.latest_from(unresolved.phone)
    community = domain.community_of_number(texted.to_phone if texted else None, settings.communities)
    if texted is not None:  # a coordinator sees what could not be acted on, and why
        _needs_coordinator(uow, texted, unresolved.reason, community, now)
    _queue(uow, settings, now, key=f"answer:{event_id}", purpose="answer", to=unresolved.phone,
           body=domain.unresolved_body(unresolved, language), correlation_id=correlation_id, community=community,
           urgent=True)


def queue_own_view(uow: NotifyUnitOfWork, answered: ReplyAnswered, correlation_id: str, now: datetime,
                   settings: NotifySettings) -> None:
    """Text a volunteer matching's answer to their MY, AWAY, HOURS or CONCERN, at once, in their language, from the
    number they texted (else their community's): once per text they sent, however often the answer is delivered. A
    concern matching could not tie to one of their tasks waits in the coordinators' inbox too."""
    language = domain.language_for(uow.contacts.get(answered.phone), answered.language)
    texted = uow.inbound.get(answered.message_sid)
    community = domain.community_of_number(texted.to_phone if texted else None, settings.communities) \
        or answered.community
    dates = away_dates_text(texted.body) if texted is not None else ""
    body = domain.answered_body(answered, settings.community(community), language, dates)
    if answered.answer in domain.CONCERN_UNPLACED and texted is not None:  # a worry no task of theirs could take
        _needs_coordinator(uow, texted, "concern_unplaced", community, now)
    if answered.answer == "wellbeing_low" and texted is not None:  # a low check-in score: a coordinator calls them
        _needs_coordinator(uow, texted, "wellbeing_low", community, now)
    _queue(uow, settings, now, key=f"view:{answered.message_sid}", purpose="answer", to=answered.phone, body=body,
           correlation_id=correlation_id, community=community, urgent=True)


def queue_acknowledgement(uow: NotifyUnitOfWork, applied: ApplicantApplied, correlation_id: str, now: datetime,
                          settings: NotifySettings) -> None:
    """Thank someone who applied to volunteer, by SMS in their community's language, from its number, once however
    often the event is delivered."""
    language = domain.language_for(uow.contacts.get(applied.phone), applied.language)
    place = settings.community(applied.community)
    _queue(uow, settings, now, key=f"applied:{applied.applicant_id}", purpose="acknowledgement", to=applied.phone,
           body=domain.applied_body(place, language), correlation_id=correlation_id, community=applied.community)


def queue_invitation(uow: NotifyUnitOfWork, invited: TrainingInvited, correlation_id: str, now: datetime,
                     settings: NotifySettings) -> None:
    """Text an invitation to a training session (topic, day, place and its code; nothing else), in the person's
    language, from the community's number, after its quiet hours; once however often the event is delivered."""
    language = domain.language_for(uow.contacts.get(invited.phone), invited.language)
    place = settings.community(invited.community)
    _queue(uow, settings, now, key=f"training:{invited.invitation_id}", purpose="invitation", to=invited.phone,
           body=domain.invitation_body(invited, place, language), correlation_id=correlation_id,
           community=invited.community)


def queue_training_answer(uow: NotifyUnitOfWork, answered: TrainingAnswered, correlation_id: str, now: datetime,
                          settings: NotifySettings) -> None:
    """Answer a YES or NO to a training invitation at once: booked, full (on the waiting list), or noted; once per
    text they sent."""
    language = domain.language_for(uow.contacts.get(answered.phone), answered.language)
    place = settings.community(answered.community)
    _queue(uow, settings, now, key=f"training_answer:{answered.message_sid}", purpose="answer", to=answered.phone,
           body=domain.training_answer_body(answered, place, language), correlation_id=correlation_id,
           community=answered.community, urgent=True)


def queue_expiry_reminder(uow: NotifyUnitOfWork, expiring: CheckExpiring, correlation_id: str, now: datetime,
                          settings: NotifySettings) -> None:
    """Remind a volunteer that a check or training runs out soon."""
    language = domain.language_for(uow.contacts.get(expiring.phone))
    _queue(uow, settings, now, key=f"expiring:{expiring.volunteer_id}:{expiring.check}:{expiring.expires_on}",
           purpose="reminder", to=expiring.phone, body=domain.expiring_body(expiring, language),
           correlation_id=correlation_id, community=expiring.community)


def queue_wellbeing_prompt(uow: NotifyUnitOfWork, prompted: WellbeingPrompted, correlation_id: str, now: datetime,
                           settings: NotifySettings) -> None:
    """Ask a volunteer how they are finding volunteering (1 to 5, or TALK), in their language, from their
    community's number, after its quiet hours: once per check-in however often the event is delivered. A number that
    opted out (STOP) is not texted (the sender fails it)."""
    language = domain.language_for(uow.contacts.get(prompted.phone), prompted.language)
    place = settings.community(prompted.community)
    _queue(uow, settings, now, key=f"wellbeing:{prompted.checkin_id}", purpose="wellbeing", to=prompted.phone,
           body=render("wellbeing", language, domain.wording(place)), correlation_id=correlation_id,
           community=prompted.community)


def queue_visit_overdue(uow: NotifyUnitOfWork, overdue: BefriendingVisitOverdue, correlation_id: str, now: datetime,
                        settings: NotifySettings) -> None:
    """Remind a befriending volunteer, gently and once per overdue spell, that no visit was logged lately."""
    language = domain.language_for(uow.contacts.get(overdue.phone), overdue.language)
    _queue(uow, settings, now, key=f"visit_overdue:{overdue.match_id}:{overdue.since}", purpose="reminder",
           to=overdue.phone, body=domain.visit_overdue_body(overdue, settings.community(overdue.community), language),
           correlation_id=correlation_id, community=overdue.community, about=overdue.request_id)


def queue_befriending_thanks(uow: NotifyUnitOfWork, ended: BefriendingEnded, correlation_id: str, now: datetime,
                             settings: NotifySettings) -> None:
    """Thank the volunteer of a befriending match that ended (once), and drop anything still waiting for it."""
    cancel_reminders(uow, ended.offer_id)
    language = domain.language_for(uow.contacts.get(ended.phone), ended.language)
    _queue(uow, settings, now, key=f"befriending_ended:{ended.match_id}", purpose="confirmation", to=ended.phone,
           body=domain.befriending_thanks_body(ended, settings.community(ended.community), language),
           correlation_id=correlation_id, community=ended.community, about=ended.request_id)


def queue_survey_question(uow: NotifyUnitOfWork, question: SurveyQuestion, correlation_id: str, now: datetime,
                          settings: NotifySettings) -> None:
    """Queue a survey question (held for the quiet hours like any routine text), remember it is out so the reply is
    read as its answer, and queue the survey's one reminder (`reminder_hours` later, cancelled by an answer). Not
    to a phone that replied STOP: intake heard of that, and stops its surveys."""
    contact = uow.contacts.of(question.phone)
    if contact.opted_out_at is not None:
        return
    language = contact.remember_language(question.language)
    if not uow.survey_asks.add(domain.SurveyAsk(phone=question.phone, survey_id=question.survey_id,
                                                question_id=question.question_id, number=question.number,
                                                of=question.of, asked_at=now, language=language)):
        return
    place = settings.community(question.community)
    _queue(uow, settings, now, key=f"survey:{question.survey_id}:{question.question_id}", purpose="survey",
           to=question.phone, body=question.text, correlation_id=correlation_id, community=question.community,
           about=question.request_id)
    if question.reminder_hours:
        _queue(uow, settings, now, key=f"survey-reminder:{question.survey_id}", purpose="survey_reminder",
               to=question.phone, body=render("survey_reminder", language, place.sms_templates if place else None)
               + " " + question.text,
               correlation_id=correlation_id, community=question.community, about=question.request_id,
               not_before=now + timedelta(hours=question.reminder_hours))


def _survey_reply(uow: NotifyUnitOfWork, sms: InboundSms, now: datetime, stop: bool) -> str | None:
    """A reply from a phone with a survey question out: its answer (`survey.answered`, for intake), or, for STOP,
    the end of the survey. Returns the answer to text back ("" when none is due), or None when no survey question
    is out to that phone (the reply is then read as it always was)."""
    asks = uow.survey_asks.open_to(sms.sender)
    if not asks:
        return None
    ask = asks[0]
    if stop:
        for each in asks:
            each.closed_at = now
            _cancel_waiting(uow, each.reminder_key, "opted_out")
        return ""
    value = parse_survey_answer(sms.body)
    if value is None:
        return render("survey_unclear", ask.language)
    ask.answered_at = now
    _cancel_waiting(uow, ask.reminder_key, "answered")
    uow.publish(SurveyAnswered(survey_id=ask.survey_id, question_id=ask.question_id, answer=value,
                               message_sid=sms.message_sid, at=now))
    return render("survey_thanks", ask.language) if ask.number == ask.of else ""


# --- what phones send us, and what the provider says of what we sent ------------------------------------------------

def _needs_coordinator(uow: NotifyUnitOfWork, message: InboundMessage, reason: str, community: str | None,
                       now: datetime) -> None:
    """Put a message in the coordinators' inbox, about the request the community last texted that phone about (if
    any), and tell intake how many about that request now wait (`sms.waiting`), so its board puts it first."""
    message.needs(reason, uow.messages.last_request_texted(message.from_phone, community))
    _count_waiting(uow, message.request_id, now)


def _count_waiting(uow: NotifyUnitOfWork, request_id: uuid.UUID | None, now: datetime) -> None:
    """Say how many messages about the request wait in the inbox (none when it is about no request)."""
    if request_id is not None:
        uow.publish(SmsWaiting(request_id=request_id, waiting=uow.inbound.waiting_about(request_id), as_of=now))


def receive_sms(uow: NotifyUnitOfWork, sms: InboundSms, now: datetime,
                settings: NotifySettings | None = None) -> str | None:
    """Record an SMS a phone sent, once per MessageSid, act on opt-out and opt-in keywords, and pass it on as
    `sms.received`; one for a person to read waits in the inbox, about the request the number it texted last texted
    that phone about (`settings` name the communities' numbers). Returns the answer to send straight back, if any,
    kept in the conversation as sent (it goes in the webhook's answer, not by the sender)."""
    reply = parse_reply(sms.body, now.date())
    with uow:
        if uow.inbound.get(sms.message_sid) is not None:
            return None  # the provider retried a webhook we already have
        contact = uow.contacts.of(sms.sender)
        was_opted_out = contact.opted_out_at is not None
        if reply.keyword == "STOP" and contact.opt_out(now):
            uow.publish(ContactOptedOut(phone=sms.sender, at=now, source="keyword"))
        elif reply.keyword == "START" and contact.opt_in(now):
            uow.publish(ContactOptedIn(phone=sms.sender, at=now, source="keyword"))
        # "yes 482" must not say yes to anything; an AWAY whose dates we could not read is matching's to answer
        keyword = reply.keyword if reply.problem is None or reply.keyword == "AWAY" else None
        # "4" (or "4/5", "five") answers a wellbeing check-in only while one we sent them is recent; else it is
        # read as before (and a coordinator reads it)
        score = wellbeing_score(sms.body) if keyword is None else None
        if score is not None and uow.messages.asked_wellbeing(sms.sender, now - domain.CHECK_IN_ANSWER_WINDOW):
            keyword = "WELLBEING"
        else:
            score = None
        # Surveys by SMS: a reply that is no volunteer's command, from a phone with a survey question out, is its
        # answer (or, not understood, asked again), for intake alone: not the volunteers' "not understood", not the
        # inbox. STOP ends the survey as well as the texts.
        survey = _survey_reply(uow, sms, now, keyword == "STOP") if keyword in (None, "STOP") else None
        if survey is not None and keyword is None:
            uow.inbound.add(InboundMessage(message_sid=sms.message_sid, from_phone=sms.sender, to_phone=sms.to,
                                           body=sms.body, keyword="ANSWER", received_at=now))
            answer = survey or None
            if answer is not None:
                uow.messages.add(OutgoingMessage(
                    key=f"answer:{sms.message_sid}", purpose="answer", to_phone=sms.sender, body=answer,
                    correlation_id=sms.message_sid, from_phone=sms.to, status="sent", sent_at=now,
                    community=domain.community_of_number(sms.to, settings.communities if settings else {})))
            uow.commit()
            SMS.labels("received").inc()
            return answer
        received = InboundMessage(message_sid=sms.message_sid, from_phone=sms.sender, to_phone=sms.to,
                                  body=sms.body, keyword=keyword, code=reply.code, received_at=now)
        uow.inbound.add(received)
        talk = keyword is None and asks_to_talk(sms.body)  # a volunteer would like a coordinator to call
        if keyword is None:  # "Sorry, I'm away that week" is for a person to read
            _needs_coordinator(uow, received, "debrief" if talk else "not_understood",
                               domain.community_of_number(sms.to, settings.communities if settings else {}), now)
        uow.publish(SmsReceived(message_sid=sms.message_sid, from_phone=sms.sender, to_phone=sms.to, body=sms.body,
                                keyword="TALK" if talk else keyword, code=reply.code, hours=reply.hours,
                                away_from=reply.away_from, away_until=reply.away_until,
                                text=reply.text if keyword == "CONCERN" else None, score=score))
        if keyword == "WELLBEING":
            answer = None  # matching thanks them (reply.answered), and asks a coordinator to call after a low score
        elif talk and not was_opted_out:
            answer = render("talk", contact.language)
        else:
            answer = domain.answer_to(reply, contact.language, was_opted_out, uow.messages.texted_before(sms.sender))
        if answer is not None:
            community = domain.community_of_number(sms.to, settings.communities if settings else {})
            uow.messages.add(OutgoingMessage(
                key=f"answer:{sms.message_sid}", purpose="answer", to_phone=sms.sender, body=answer,
                correlation_id=sms.message_sid, from_phone=sms.to, community=community, status="sent", sent_at=now))
        uow.commit()
    SMS.labels("received").inc()
    return answer


def record_status(uow: NotifyUnitOfWork, provider_sid: str, status: str, error_code: str | None,
                  now: datetime) -> None:
    """Record what the provider says became of a message we sent. An offer's SMS that could not be delivered
    counts as declined at once (`sms.failed`), so the cascade moves on without waiting for the offer to time out.
    A status for a message not ours, one we do not track, a duplicate or one out of order changes nothing."""
    with uow:
        message = uow.messages.by_provider_sid(provider_sid)
        if message is None or not message.advance(status, now, error_code):
            return
        if status in ("undelivered", "failed"):
            uow.publish(SmsFailed(message_id=message.id, purpose=message.purpose, reason=message.error,
                                  offer_id=message.offer_id), correlation_id=message.correlation_id)
        uow.commit()
    if status == "delivered":
        SMS.labels("delivered").inc()
    elif status in ("undelivered", "failed"):
        SMS.labels("undelivered").inc()


# --- sending ---------------------------------------------------------------------------------------------------------

def _failed(uow: NotifyUnitOfWork, message: OutgoingMessage, reason: str) -> None:
    """The message will not go: say so, so an offer's cascade moves on."""
    message.fail(reason)
    uow.publish(SmsFailed(message_id=message.id, purpose=message.purpose, reason=reason, offer_id=message.offer_id),
                correlation_id=message.correlation_id)
    SMS.labels("failed").inc()


def settle_unconfirmed(uow: NotifyUnitOfWork, now: datetime) -> int:
    """Count a message a stopped sender left `sending` as sent, without a SID, and never send it again.

    The provider may well have it (the gateway call is what takes time), so `sms.sent` starts an offer's clock:
    the volunteer can still answer it, and if it never went the offer times out and the cascade moves on."""
    with uow:
        stuck = uow.messages.left_sending(now)
        for message in stuck:
            log.warning("SMS %s was left sending; counted as sent, not sent again", message.id)
            message.settle_unconfirmed(now)
            uow.publish(SmsSent(message_id=message.id, purpose=message.purpose, provider_sid=None,
                                offer_id=message.offer_id), correlation_id=message.correlation_id)
        uow.commit()
    return len(stuck)


def _claim(uow: NotifyUnitOfWork, now: datetime) -> OutgoingMessage | None:
    """Take the oldest message that is due, and mark it `sending` (committed) before the gateway is called; one
    for a number that opted out or cannot take SMS fails at once, so an offer's cascade moves on. A "that offer is
    closed" text goes only after the offer it closes went: it waits while that offer is being sent, and is
    cancelled if it never went."""
    while True:
        with uow:
            message = uow.messages.next_due(now)
            if message is None:
                return None
            closes = domain.closed_offer_key(message)
            offer = uow.messages.with_key(closes) if closes else None
            action, why = domain.before_sending(message, uow.contacts.get(message.to_phone), offer)
            if action == "send":
                message.claim(now)
            elif action == "fail":
                _failed(uow, message, why)
            elif action == "cancel":
                message.cancel(why)
            else:
                message.postpone(now + domain.WAIT_FOR_OFFER)
            uow.commit()
        if action == "send":
            return message


def _record_failure(uow: NotifyUnitOfWork, message_id: uuid.UUID, failure: SendFailed, now: datetime,
                    settings: NotifySettings) -> None:
    """After a send failed: retry later (with back-off, a bounded number of times) or fail the message; a number
    that opted out or cannot take SMS is recorded as such, with an event for matching and the coordinator."""
    with uow:
        message = uow.messages.get(message_id)
        if failure.outcome == "retry" and message.retry_later(now, settings.retry, failure.reason):
            SMS.labels("retried").inc()
        else:
            if failure.outcome == "opted_out":
                uow.contacts.of(message.to_phone).opt_out(now)
                uow.publish(ContactOptedOut(phone=message.to_phone, at=now, source="provider"))
            elif failure.outcome == "invalid":
                uow.contacts.of(message.to_phone).mark_invalid(now, failure.reason)
                uow.publish(ContactInvalid(phone=message.to_phone, at=now, reason=failure.reason))
            _failed(uow, message, {"opted_out": "opted_out", "invalid": "invalid_number"}.get(failure.outcome,
                                                                                              failure.reason))
        uow.commit()


def send_due(uow: NotifyUnitOfWork, gateway: SmsGateway, now: datetime, settings: NotifySettings,
             limit: int = 20, *, settle: bool = True, stop: threading.Event | None = None) -> int:
    """Send the messages that are due at `now`, each at most once; returns how many went. With `settle`, first
    count those a stopped sender left `sending` as sent (`settle_unconfirmed`). Once `stop` is set, claims no more
    (one claimed then would be left `sending` by the stopping worker).

    Each is claimed (committed as `sending`) before the gateway is called. A send that fails for a while (429,
    5xx, the network) is queued again after a back-off, up to a limit; then, or for any other refusal, the message
    fails and `sms.failed` says so. A number that opted out (21610) or cannot take SMS (21211, 21614) is recorded
    so, and nothing more is sent to it."""
    if settle:
        settle_unconfirmed(uow, now)
    sent = 0
    for _ in range(limit):
        if stop is not None and stop.is_set():
            break
        message = _claim(uow, now)
        if message is None:
            break
        # Part of the trace that queued it; what it publishes (sms.sent) continues from here.
        with tracing.span_from({"traceparent": message.traceparent}, "sms send", tracing.SpanKind.CLIENT,
                               {"ccs.sms.purpose": message.purpose, "ccs.sms.message_id": str(message.id)}) as span:
            try:
                sid = gateway.send(message.to_phone, message.body, message.from_phone)
            except Exception as exc:
                failure = exc if isinstance(exc, SendFailed) else SendFailed("failed", type(exc).__name__)
                log.warning("sending SMS %s failed (attempt %d): %s", message.id, message.attempts, failure.reason)
                span.set_status(tracing.Status(tracing.StatusCode.ERROR, failure.outcome))
                _record_failure(uow, message.id, failure, now, settings)
                continue
            with uow:
                row = uow.messages.get(message.id)
                row.sent(sid, now)
                uow.publish(SmsSent(message_id=row.id, purpose=row.purpose, provider_sid=sid, offer_id=row.offer_id),
                            correlation_id=row.correlation_id)
                uow.commit()
        SMS.labels("sent").inc()
        sent += 1
    return sent


def seconds_until_due(uow: NotifyUnitOfWork, now: datetime) -> float | None:
    """How long until the sender next has something to do (a held message falls due, a retry's back-off ends);
    None when nothing waits for a time."""
    with uow:
        due = uow.messages.next_due_at()
    return None if due is None else max((due - now).total_seconds(), 0.0)


# --- what coordinators read ------------------------------------------------------------------------------------------

def list_messages(uow: NotifyUnitOfWork, actor: Actor, to_phone: str | None, pagination_parameters,
                  settings: NotifySettings) -> list[OutgoingMessage]:
    """One page of the messages the actor's communities sent (to one phone, if given), newest first."""
    with uow:
        return uow.messages.newest_first(_scope(actor, settings), to_phone, pagination_parameters)


def _scope(actor: Actor, settings: NotifySettings) -> domain.Scope:
    """Whose conversations the actor reads."""
    return domain.Scope.of(actor.communities, settings.communities)


CONVERSATIONS_SHOWN = 500


def conversations(uow: NotifyUnitOfWork, actor: Actor, settings: NotifySettings) -> tuple[list[dict[str, Any]], int]:
    """Every number the actor's communities text or hear from, newest first, with its last message and flags
    (the latest CONVERSATIONS_SHOWN); and how many numbers there are."""
    scope = _scope(actor, settings)
    with uow:
        sent, received = uow.conversations.latest_sent(scope), uow.conversations.latest_received(scope)
        texted, contacts = uow.conversations.texted(scope), uow.conversations.contacts(scope)
    rows = [{"phone": phone, "last": domain.last_entry(sent.get(phone), received.get(phone)),
             "contact": contacts.get(phone), "unknown": phone in received and phone not in texted}
            for phone in set(sent) | set(received)]
    rows.sort(key=lambda r: r["last"].at, reverse=True)
    return rows[:CONVERSATIONS_SHOWN], len(rows)


def conversation(uow: NotifyUnitOfWork, actor: Actor, phone: str, settings: NotifySettings) -> dict[str, Any]:
    """Every message the actor's communities sent to and received from one number, in time order, with its contact
    and whether it is an unknown sender; NotInScope when the actor's communities never texted or heard from it."""
    scope = _scope(actor, settings)
    with uow:
        if not uow.conversations.in_scope(scope, phone):
            raise domain.NotInScope(phone)
        outgoing, inbound, contact = uow.conversations.with_phone(scope, phone)
    return {"thread": domain.thread(outgoing, inbound), "contact": contact,
            "unknown": domain.is_unknown(outgoing, inbound)}


INBOX_SHOWN = 200


def inbox(uow: NotifyUnitOfWork, actor: Actor, settings: NotifySettings) -> list[InboundMessage]:
    """The SMS to the actor's communities that nobody could act on (free text, an unknown number, a reply that
    fitted no offer), oldest first, until a coordinator has dealt with each."""
    with uow:
        return uow.conversations.inbox(_scope(actor, settings), INBOX_SHOWN)


def deal_with(uow: NotifyUnitOfWork, actor: Actor, message_sid: str, settings: NotifySettings, now: datetime) -> None:
    """A coordinator has read a message in the inbox and acted on it; NotInScope if it is not their community's."""
    with uow:
        message = uow.conversations.received(_scope(actor, settings), message_sid)
        if message is None:
            raise domain.NotInScope(message_sid)
        if message.dealt_with(actor.subject, now):
            _count_waiting(uow, message.request_id, now)
            uow.commit()


def simulator_phones(uow: NotifyUnitOfWork, actor: Actor, settings: NotifySettings) -> list[dict[str, Any]]:
    """One card per in-scope phone that received messages: what it received and sent, the number it was texted
    from (to reply to), newest phone first."""
    with uow:
        received, sent = uow.conversations.received_by_phones(_scope(actor, settings), domain.RECEIVED)
    cards = []
    for number in {m.to_phone for m in received}:
        entries = domain.thread([m for m in received if m.to_phone == number],
                                [m for m in sent if m.from_phone == number])
        ours = next((e.message.from_phone for e in reversed(entries) if e.direction == "out" and e.message.from_phone),
                    None)
        cards.append({"phone": number, "thread": entries, "to": ours})
    return sorted(cards, key=lambda c: c["thread"][-1].at, reverse=True)


def text_as_phone(uow: NotifyUnitOfWork, phone, sender: str, to: str | None, body: str, actor: Actor,
                  settings: NotifySettings) -> dict[str, Any]:
    """Text the system as a phone would (the simulator), to `to` (one of the actor's communities' numbers) or the
    actor's community's number; what came of it: the answer sent straight back, or why it failed. NotInScope
    (naming "to" or "phone") for another community's number, or a phone only other communities text or hear
    from: nobody acts as another community's volunteer."""
    scope = _scope(actor, settings)
    to = to or settings.communities[actor.community].sms_from
    if to not in scope.ours:
        raise domain.NotInScope("to")
    with uow:
        theirs = (not uow.conversations.in_scope(scope, sender)
                  and uow.conversations.in_scope(domain.Scope.of(settings.communities, settings.communities), sender))
    if theirs:
        raise domain.NotInScope("phone")
    return {"phone": sender, "body": body, **phone.text(sender, to, body)}


# --- retention and erasure --------------------------------------------------------------------------------------

RETENTION_BATCH = 500  # SMS claimed by one transaction of the nightly job


def _blank_all(unit_of_work, blank, where, batch: int) -> int:
    """Blank in batches, each claimed and committed in a transaction of its own, until none is left; how many."""
    done = 0
    while True:
        with unit_of_work() as uow:
            blanked = blank(uow)(where(uow), batch)
            uow.commit()
        done += blanked
        if blanked < batch:
            return done


def apply_retention(unit_of_work, now: datetime, communities: dict, batch: int = RETENTION_BATCH,
                    ) -> dict[str, dict[str, int]]:
    """The nightly retention job: blank the text of every SMS sent or received longer ago than its community's
    `sms_body_days` (a text to a number that is no community's, after the default period), keeping the record that
    it was. Two runs at once blank each once; a second run finds nothing to do. Records the run; the counts."""
    from shared.communities import Retention

    counts: dict[str, dict[str, int]] = {}
    numbers = [place.sms_from for place in communities.values()]
    for slug, place in communities.items():
        before = now - timedelta(days=place.keeps.sms_body_days)
        counts[slug] = {
            "sent_blanked": _blank_all(unit_of_work, lambda uow: uow.retention.blank_sent,
                                       lambda uow: uow.retention.sent_older_than(slug, before), batch),
            "received_blanked": _blank_all(unit_of_work, lambda uow: uow.retention.blank_received,
                                           lambda uow: uow.retention.received_older_than(place.sms_from, before),
                                           batch)}
    before = now - timedelta(days=Retention().sms_body_days)
    counts["other_numbers"] = {"received_blanked": _blank_all(
        unit_of_work, lambda uow: uow.retention.blank_received,
        lambda uow: uow.retention.received_older_than(None, before, numbers), batch)}
    with unit_of_work() as uow:
        uow.retention.record("nightly", now, counts)
        uow.commit()
    return counts


def retention_due(uow: NotifyUnitOfWork, day) -> bool:
    """Whether the nightly job has yet to run for `day`."""
    with uow:
        return not uow.retention.ran_on("nightly", day)


def erase_about(uow: NotifyUnitOfWork, erased: PersonErased, now: datetime) -> None:
    """A person was erased: blank the text of every SMS about their requests, sent or received (the records that
    they were stay), and record it (which requests, how many texts). In the handler's unit of work."""
    sent = uow.retention.blank_sent(uow.retention.sent_about(erased.community, erased.request_ids), limit=100_000)
    received = uow.retention.blank_received(uow.retention.received_about(erased.request_ids), limit=100_000)
    uow.retention.record("erasure", now, {erased.community: {"sent_blanked": sent, "received_blanked": received}},
                         erased.request_ids)


def held_about(uow: NotifyUnitOfWork, request_ids: list[uuid.UUID]) -> dict[str, Any]:
    """Every SMS about these requests, sent and received (a subject access export)."""
    with uow:
        return uow.retention.held_about(request_ids)
