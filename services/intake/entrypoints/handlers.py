"""What intake does with matching's events (keep each request's status and timeline current, and when its offers
time out; a volunteer's concern, opened in the safeguarding log), and with notify's word that an offer's texts wait
for the quiet hours, or that SMS about a request wait in its inbox; survey answers and STOPs (surveys by SMS)."""

from __future__ import annotations

from services.intake import service_layer
from shared.contracts import Event
from shared.contracts.matching import (ApplicantsWaiting, BefriendingEnded, BefriendingStarted, BefriendingVisitLogged,
                                       BefriendingVisitOverdue, ConcernRaised, OfferAccepted, OfferAnswerDue,
                                       OfferMade, OfferWithdrawn, RequestMatched, RequestUnmatched, TaskCompleted,
                                       TaskGivenBack, TaskVolunteerOptedOut)
from shared.contracts.notify import ContactOptedOut, SmsHeld, SmsWaiting, SurveyAnswered


def follow_matching(uow, event: Event) -> None:
    """Note what matching did to a request, and move its status on."""
    service_layer.follow_matching(uow, event)


def answers_due(uow, event: Event) -> None:
    """Keep when the request's latest offers time out, so the board can say they are about to."""
    service_layer.answers_due(uow, event)


def messages_waiting(uow, event: Event) -> None:
    """Keep how many SMS about the request wait in notify's inbox, so the board puts it first while any do."""
    service_layer.messages_waiting(uow, event)


def concern_raised(uow, event: Event) -> None:
    """Open a volunteer's concern in the safeguarding log, and put its request at the top of the board."""
    service_layer.open_concern(uow, event)


def applicants_waiting(uow, event: Event) -> None:
    """Keep how many applicants to volunteer wait too long, so the board reminds the coordinators."""
    service_layer.applicants_waiting(uow, event)


def offer_texts_held(uow, event: Event) -> None:
    """Say on the timeline when an offer's texts will go, so nobody thinks the volunteers have been asked yet."""
    service_layer.offer_texts_held(uow, event)


def survey_answered(uow, event: Event) -> None:
    """Keep a survey answer, count it (tied to no one), and ask the next question."""
    service_layer.record_survey_answer(uow, event)


def contact_opted_out(uow, event: Event) -> None:
    """A phone replied STOP: its surveys end."""
    service_layer.stop_surveys_to(uow, event)


HANDLERS = {**{event.TYPE: follow_matching for event in (OfferMade, OfferAccepted, OfferWithdrawn, RequestMatched,
                                                         RequestUnmatched, TaskCompleted, TaskGivenBack,
                                                         TaskVolunteerOptedOut, BefriendingStarted,
                                                         BefriendingVisitOverdue, BefriendingVisitLogged,
                                                         BefriendingEnded)},
            OfferAnswerDue.TYPE: answers_due, SmsHeld.TYPE: offer_texts_held, SmsWaiting.TYPE: messages_waiting,
            ConcernRaised.TYPE: concern_raised, ApplicantsWaiting.TYPE: applicants_waiting,
            SurveyAnswered.TYPE: survey_answered, ContactOptedOut.TYPE: contact_opted_out}
